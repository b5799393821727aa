use super::int8::Int8Mlp;
use crate::format::{FormatError, ModelFile, SectionId};
use crate::kernels::gather::FieldPlan;
use crate::kernels::gemm::PackedMatrix;
use crate::kernels::qgemm::Int8Path;
use crate::kernels::rows::TableRows;
use crate::kernels::self_check;
use crate::kernels::{ISA_ENV, Isa, IsaError, IsaSource};
use crate::spec::{MlpPrecision, ModelSpec, Output};
use std::path::Path;

/// How to open a model.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Instruction set for the kernels; `None` picks the best this CPU has, or the one the
    /// `DEEPFM_ISA` environment variable names (see [`Isa::detect`]), and opening fails with
    /// [`FormatError::Isa`] if the variable names one the CPU lacks. An [`Isa`] given here is a
    /// token of one the CPU has (`Isa::new(kind, IsaSource::OpenOptions)?` refuses the others).
    pub isa: Option<Isa>,
    /// Also check the checksums of the embedding table and first-order weights (reads the whole
    /// file; see [`ModelFile::verify`]).
    pub verify: bool,
    /// Arithmetic of the hidden layers; `None` scores as the file's spec says
    /// ([`ModelSpec::mlp`]). `Some(MlpPrecision::Int8)` quantizes an f32 model's layers at open
    /// (what `deepfm quantize --mlp int8` records in a file), `Some(MlpPrecision::F32)` scores
    /// an int8 file exactly.
    pub mlp: Option<MlpPrecision>,
}

/// An open model: the validated map plus weights packed for the kernels. Immutable, `Send +
/// Sync`: share one between all scoring threads (in an `Arc`), each with its own
/// [`crate::Scratch`].
///
/// The embedding table is read through the map, so the file must not be truncated or
/// rewritten in place while a `Model` is open: replace a model by writing a new file and
/// renaming it over the old one (what [`crate::ModelWriter`] does); open maps keep the old file.
#[derive(Debug)]
pub struct Model {
    file: ModelFile,
    isa: Isa,
    pub(crate) fields: Vec<FieldPlan>,
    /// Hidden layers, packed for the GEMM/GEMV kernels.
    pub(crate) layers: Vec<PackedMatrix>,
    /// The same layers quantized, when the MLP is scored in int8 (then `layers` is empty).
    pub(crate) int8: Option<Int8Mlp>,
    /// The output unit's weights (`[last]`) and bias: one dot product per row.
    pub(crate) out_weight: Vec<f32>,
    pub(crate) out_bias: f32,
    pub(crate) bias: f32,
    pub(crate) dim: usize,
    /// Width of a row of the MLP input (embedded fields × D + dense fields).
    pub(crate) input_width: usize,
    /// Fields with an embedding: the FM term runs over the first `embedded_fields × D` values
    /// of an input row.
    pub(crate) embedded_fields: usize,
    pub(crate) output: Output,
    pub(crate) clamp: Option<[f32; 2]>,
}

impl Model {
    /// Opens and validates a model file with the best kernels for this CPU.
    /// Cost: reads the header, spec and MLP weights; never the embedding table.
    pub fn open(path: impl AsRef<Path>) -> Result<Model, FormatError> {
        Model::open_with(path, &OpenOptions::default())
    }

    /// Opens with explicit options.
    pub fn open_with(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Model, FormatError> {
        let file = ModelFile::open(path)?;
        if options.verify {
            file.verify()?;
        }
        let mut model = Model::from_file(file, options.isa)?;
        if let Some(mlp) = options.mlp
            && mlp != model.mlp_precision()
        {
            let mut spec = model.spec().clone();
            spec.mlp = mlp;
            spec.validate()?;
            model.set_mlp(mlp)?;
        }
        Ok(model)
    }

    /// Builds the scoring plan over an already validated file, on `isa` (`None`: see
    /// [`OpenOptions::isa`]).
    ///
    /// # Errors
    /// [`FormatError::Isa`] if `isa` is `None` and [`Isa::detect`] refuses the `DEEPFM_ISA`
    /// environment variable.
    pub fn from_file(file: ModelFile, isa: Option<Isa>) -> Result<Model, FormatError> {
        // The kernels check themselves first (`kernels::self_check`): detected ones step down
        // if they disagree, named ones are an error.
        let named = match isa {
            Some(_) => Some(IsaSource::OpenOptions),
            None => std::env::var_os(ISA_ENV).map(|_| IsaSource::Env),
        };
        let isa = match isa {
            Some(isa) => isa,
            None => Isa::detect()?,
        };
        let isa = match named {
            Some(requested_by) => {
                self_check::passes(isa).map_err(|reason| IsaError::SelfCheck {
                    isa: isa.kind(),
                    requested_by,
                    reason,
                })?;
                isa
            }
            None => {
                let (isa, warnings) = self_check::checked(isa);
                for warning in warnings {
                    eprintln!("{warning}");
                }
                isa
            }
        };
        let spec = file.spec().clone();
        let fields = FieldPlan::of(&spec);
        let section = |id: SectionId| file.f32s(id).expect("validated files have every section");
        let mut model = Model {
            isa,
            bias: section(SectionId::Bias)[0],
            dim: spec.embedding_dim,
            input_width: spec.mlp_input_width(),
            embedded_fields: spec.embedded_fields(),
            output: spec.output,
            clamp: spec.clamp,
            fields,
            layers: Vec::new(),
            int8: None,
            out_weight: section(SectionId::OutWeight).to_vec(),
            out_bias: section(SectionId::OutBias)[0],
            file,
        };
        model.set_mlp(spec.mlp)?;
        Ok(model)
    }

    /// Packs the hidden layers for `mlp`'s kernels (from the file's f32 weights), for a spec
    /// that is valid with `mlp`.
    ///
    /// # Errors
    /// [`FormatError::Isa`] if `mlp` is int8 and [`Int8Path::detect`] refuses `DEEPFM_INT8`.
    fn set_mlp(&mut self, mlp: MlpPrecision) -> Result<(), FormatError> {
        let spec = self.file.spec();
        let hidden = spec.hidden.len();
        let shapes = spec.layer_shapes();
        let layers = shapes[..hidden].iter().enumerate().map(|(i, &shape)| {
            let (w, b) = SectionId::layer(i, hidden);
            let section = |id| {
                self.file
                    .f32s(id)
                    .expect("validated files have every section")
            };
            (section(w), section(b), shape)
        });
        (self.layers, self.int8) = match mlp {
            MlpPrecision::F32 => {
                let packed =
                    layers.map(|(w, b, (input, output))| PackedMatrix::pack(w, b, output, input));
                (packed.collect(), None)
            }
            MlpPrecision::Int8 => {
                let path = Int8Path::detect(self.isa)?;
                let int8 = Int8Mlp::new(path, layers, &self.fields, self.table(), self.dim);
                (Vec::new(), Some(int8))
            }
        };
        Ok(())
    }

    /// The arithmetic of the hidden layers as opened.
    pub fn mlp_precision(&self) -> MlpPrecision {
        match self.int8 {
            Some(_) => MlpPrecision::Int8,
            None => MlpPrecision::F32,
        }
    }

    /// The int8 kernels the hidden layers run on, for an int8 MLP.
    pub fn int8_path(&self) -> Option<Int8Path> {
        self.int8.as_ref().map(|m| m.path)
    }

    /// The model's spec.
    pub fn spec(&self) -> &ModelSpec {
        self.file.spec()
    }

    /// The validated file behind the model.
    pub fn file(&self) -> &ModelFile {
        &self.file
    }

    /// Checks that the file under the map was not rewritten in place since it was opened (see
    /// [`ModelFile::check_unchanged`]).
    pub fn check_unchanged(&self) -> Result<(), FormatError> {
        self.file.check_unchanged()
    }

    /// The instruction set the kernels run on.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The stacked embedding table, `rows × D`, zero-copy from the map, when it is stored as
    /// f32 (`None` for an `f16`, `bf16` or `int8` table: [`Model::embedding_row`] reads any).
    pub fn embedding(&self) -> Option<&[f32]> {
        self.file.f32s(SectionId::Embedding)
    }

    /// Row `r` of the embedding table as f32 (decoded from the file's row format).
    ///
    /// # Panics
    /// If `r` is not a row of the table or `dst` is not `D` long.
    pub fn embedding_row(&self, r: usize, dst: &mut [f32]) {
        assert_eq!(dst.len(), self.dim, "a row is D values");
        self.table().load(r, dst);
    }

    /// The embedding table in its row format, for the gather.
    pub(crate) fn table(&self) -> TableRows<'_> {
        let bytes = self
            .file
            .bytes(SectionId::Embedding)
            .expect("validated files have every section");
        TableRows::new(self.spec().table, bytes, self.dim)
            .expect("validated tables hold whole, aligned rows")
    }

    /// First-order weights, one per row, zero-copy from the map.
    pub fn linear(&self) -> &[f32] {
        self.file
            .f32s(SectionId::Linear)
            .expect("validated files have every section")
    }

    /// Widest hidden layer (0 with none).
    pub(crate) fn max_hidden_width(&self) -> usize {
        self.spec().hidden.iter().copied().max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn model_is_send_and_sync() {
        fn shared<T: Send + Sync>() {}
        shared::<super::Model>();
    }
}
