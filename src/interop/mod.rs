//! Import from and export to safetensors, so that a model trained elsewhere can be served,
//! and ours read by anything.
//!
//! Two ways in:
//! - [`import_from`]: a DeepFM trained by DeepCTR-Torch, FuxiCTR or CoreRec, from its own
//!   `state_dict` (saved with `safetensors.torch.save_file`) and the framework's description
//!   of its features, as the scripts in `tools/export/` write them. Batch norm is folded into
//!   the layers before it, tables are stacked, and anything the framework does that this crate
//!   cannot score exactly is refused with [`InteropError::Unsupported`], never approximated.
//! - [`import`]: this crate's own tensor names plus a [`ModelSpec`] (what [`export`] writes):
//!   `embedding [R, D]`, `linear [R]`, `bias [1]`, `mlp.{i}.weight [out, in]`,
//!   `mlp.{i}.bias [out]`, `out.weight [1, last]`, `out.bias [1]`, all f32.

mod assemble;
mod corerec;
mod deepctr;
mod describe;
mod fuxictr;
mod recbole;
mod tensors;
mod tokens;
mod torchrec;

pub use tokens::{NumericTransform, TokenParser, Vocabularies, Vocabulary};

use crate::format::atomic::{AtomicFile, write_atomically};
use crate::format::{FormatError, ModelFile, ModelWriter, tensor_shapes};
use crate::spec::{ModelSpec, SpecError};
use memmap2::Mmap;
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;
use std::fs::File;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why an import or export failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum InteropError {
    /// Reading or writing the model file failed.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The spec is invalid.
    #[error("spec: {0}")]
    Spec(#[from] SpecError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// File concerned.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The safetensors file is malformed (or its header could not be built).
    #[error("safetensors: {0}")]
    Safetensors(#[from] safetensors::SafeTensorError),
    /// The safetensors header could not be written as JSON.
    #[error("safetensors header: {0}")]
    Header(#[source] serde_json::Error),
    /// A tensor the spec needs is missing.
    #[error("tensor {0} is missing")]
    MissingTensor(String),
    /// A tensor the spec does not use is present (refused rather than silently ignored).
    #[error("tensor {0} is not part of this spec's model")]
    UnexpectedTensor(String),
    /// A tensor has another element type than expected (F32 for weights).
    #[error("tensor {name} is {dtype}, expected {expected}")]
    Dtype {
        /// Tensor name.
        name: String,
        /// Its dtype.
        dtype: String,
        /// The dtype expected.
        expected: String,
    },
    /// A tensor's shape differs from what the spec (or the framework's description) implies.
    #[error("tensor {name} has shape {found:?}, expected {expected:?}")]
    Shape {
        /// Tensor name.
        name: String,
        /// Shape implied by the spec.
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// The framework's description of the model could not be read.
    #[error("{framework} description: {message}")]
    Description {
        /// The framework.
        framework: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The model uses something this crate cannot score exactly (another activation, a
    /// feature form it has no field kind for): refused rather than served approximately.
    #[error("{what}: {reason}")]
    Unsupported {
        /// The feature, tensor or setting at fault.
        what: String,
        /// Why it cannot be imported.
        reason: String,
    },
    /// A tensor holds values the import cannot take (a padding row that is not zero, batch
    /// norm with a negative variance, offsets that do not match the fields).
    #[error("tensor {name}: {reason}")]
    BadValue {
        /// Tensor name.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// A framework whose DeepFM models [`import_from`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Framework {
    /// DeepCTR-Torch 0.3 (`deepctr_torch.models.DeepFM`); description by
    /// `tools/export/deepctr_torch.py`.
    DeepCtrTorch,
    /// FuxiCTR 2.3 (`model_zoo/DeepFM`); description by `tools/export/fuxictr.py`.
    FuxiCtr,
    /// CoreRec 0.6 (`corerec.engines.deepfm.DeepFM`); description by `tools/export/corerec.py`.
    CoreRec,
    /// RecBole 1.2 (`recbole.model.context_aware_recommender.DeepFM`); description by
    /// `tools/export/recbole.py`.
    RecBole,
    /// A DeepFM head over torchrec 1.9 `EmbeddingBagCollection`s, trained sharded and gathered
    /// to one state dict; description as `tools/export/make_fixtures_torchrec.py` writes it.
    /// torchrec's own `DeepFM` is refused (see the module docs of `interop::torchrec`).
    Torchrec,
}

impl Framework {
    /// Every framework, in the order of [`Framework::NAMES`].
    pub const ALL: [Framework; 5] = [
        Framework::DeepCtrTorch,
        Framework::FuxiCtr,
        Framework::CoreRec,
        Framework::RecBole,
        Framework::Torchrec,
    ];
    /// The names [`Framework::from_name`] takes (and descriptions carry as `"framework"`).
    pub const NAMES: [&'static str; 5] =
        ["deepctr-torch", "fuxictr", "corerec", "recbole", "torchrec"];

    /// The framework's name, as in [`Framework::NAMES`].
    pub fn name(self) -> &'static str {
        let i = Framework::ALL
            .iter()
            .position(|&f| f == self)
            .expect("listed");
        Framework::NAMES[i]
    }

    /// The framework called `name` (one of [`Framework::NAMES`]).
    pub fn from_name(name: &str) -> Option<Framework> {
        let i = Framework::NAMES.iter().position(|&n| n == name)?;
        Some(Framework::ALL[i])
    }
}

/// Writes a model file at `out` from a DeepFM trained by `framework`: its `state_dict` as
/// safetensors at `weights` and the framework's description of the model (`description`,
/// JSON; see `tools/export/` and the module docs of each framework). Every tensor must be
/// used, of the dtype and shape the description implies; nothing is left at `out` on error.
pub fn import_from(
    framework: Framework,
    weights: &Path,
    description: &str,
    out: &Path,
) -> Result<PathBuf, InteropError> {
    let file = File::open(weights).map_err(io(weights))?;
    // SAFETY: the input must not be modified while it is imported (the same rule as for model
    // files); safetensors validates the header and all offsets against the map's length.
    let map = unsafe { Mmap::map(&file) }.map_err(io(weights))?;
    let tensors = tensors::Tensors::new(&map)?;
    // Parsed once: the framework's plan and the vocabularies and transforms below read it.
    let bad = |message: String| describe::error(framework.name(), message);
    let described: serde_json::Value =
        serde_json::from_str(description).map_err(|e| bad(e.to_string()))?;
    let mut plan = match framework {
        Framework::DeepCtrTorch => deepctr::plan(&tensors, &described)?,
        Framework::FuxiCtr => fuxictr::plan(&tensors, &described)?,
        Framework::CoreRec => corerec::plan(&tensors, &described)?,
        Framework::RecBole => recbole::plan(&tensors, &described)?,
        Framework::Torchrec => torchrec::plan(&tensors, &described)?,
    };
    if let Some(vocabularies) = described.get("vocabularies") {
        let vocabularies = Vocabularies::deserialize(vocabularies)
            .map_err(|e| bad(format!("vocabularies: {e}")))?;
        vocabularies.check(&plan.spec).map_err(bad)?;
        plan.metadata["vocabularies"] =
            serde_json::to_value(&vocabularies).expect("vocabularies serialize");
    }
    if let Some(numeric) = described.get("numeric") {
        let numeric = std::collections::BTreeMap::<String, NumericTransform>::deserialize(numeric)
            .map_err(|e| bad(format!("numeric: {e}")))?;
        tokens::check_numeric(&numeric, &plan.spec).map_err(bad)?;
        plan.metadata["numeric"] = serde_json::to_value(&numeric).expect("transforms serialize");
    }
    assemble::assemble(&tensors, &plan, out)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InteropError + '_ {
    move |source| InteropError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a model file at `out` from `weights` (safetensors) and `spec` (JSON text), streaming
/// each tensor through a small buffer. Every tensor must be present, f32, and of the shape the
/// spec implies; extra tensors are refused.
pub fn import(weights: &Path, spec_json: &str, out: &Path) -> Result<PathBuf, InteropError> {
    let spec = ModelSpec::from_json(spec_json)?;
    let file = File::open(weights).map_err(io(weights))?;
    // SAFETY: the input must not be modified while it is imported (the same rule as for model
    // files); safetensors validates the header and all offsets against the map's length.
    let map = unsafe { Mmap::map(&file) }.map_err(io(weights))?;
    let tensors = SafeTensors::deserialize(&map)?;
    let shapes = tensor_shapes(&spec);
    let expected: Vec<String> = shapes.iter().map(|s| s.id.name()).collect();
    if let Some(extra) = tensors
        .names()
        .into_iter()
        .find(|n| !expected.iter().any(|e| e == n))
    {
        return Err(InteropError::UnexpectedTensor(extra.to_string()));
    }
    let mut writer = ModelWriter::create(out, &spec)?;
    for (shape, name) in shapes.iter().zip(&expected) {
        let view = tensors
            .tensor(name)
            .map_err(|_| InteropError::MissingTensor(name.clone()))?;
        if view.dtype() != Dtype::F32 {
            return Err(InteropError::Dtype {
                name: name.clone(),
                dtype: view.dtype().to_string(),
                expected: Dtype::F32.to_string(),
            });
        }
        let want = torch_shape(shape.rank, shape.dims);
        if view.shape() != want.as_slice() {
            return Err(InteropError::Shape {
                name: name.clone(),
                expected: want,
                found: view.shape().to_vec(),
            });
        }
        // Tensor data in a safetensors file need not be 4-byte aligned: convert in chunks.
        let mut buf = Vec::with_capacity(1 << 16);
        for chunk in view.data().chunks(4 << 16) {
            buf.clear();
            buf.extend(
                chunk
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
            writer.write(shape.id, &buf)?;
        }
    }
    Ok(writer.finish()?)
}

fn torch_shape(rank: u32, dims: [u64; 2]) -> Vec<usize> {
    dims[..rank as usize].iter().map(|&d| d as usize).collect()
}

/// Writes `model`'s tensors to `weights` (safetensors, borrowed from the map: nothing copied
/// into memory) and its spec to `spec_out` (pretty JSON). Both are written to a temporary file,
/// synced, and renamed into place.
pub fn export(model: &ModelFile, weights: &Path, spec_out: &Path) -> Result<(), InteropError> {
    if model.spec().table != crate::TablePrecision::F32 {
        return Err(InteropError::Unsupported {
            what: format!("a {} embedding table", model.spec().table.name()),
            reason: "export writes f32 tensors; export the f32 model the table was quantized \
                     from (or `deepfm quantize --table f32` it first: the rows stay rounded)"
                .into(),
        });
    }
    // safetensors' own layout: tensors sorted by name (all are f32), contiguous, after an
    // 8-byte header length and the JSON header padded with spaces to a multiple of 8. The data
    // are streamed from the map rather than collected in memory.
    let mut sections: Vec<_> = model
        .sections()
        .iter()
        .map(|s| (s.shape.id.name(), s))
        .collect();
    sections.sort_by(|a, b| a.0.cmp(&b.0));
    let mut offset = 0usize;
    let infos = sections
        .iter()
        .map(|(name, s)| {
            let start = offset;
            offset += s.length as usize;
            let info = TensorInfo {
                dtype: Dtype::F32,
                shape: torch_shape(s.shape.rank, s.shape.dims),
                data_offsets: (start, offset),
            };
            (name.clone(), info)
        })
        .collect();
    let header = Metadata::new(None, infos)?;
    let mut header = serde_json::to_string(&header)
        .map_err(InteropError::Header)?
        .into_bytes();
    header.resize(header.len().next_multiple_of(8), b' ');
    let json = serde_json::to_string_pretty(model.spec()).expect("a spec always serializes");

    let mut out = AtomicFile::create(weights)?;
    out.append(&(header.len() as u64).to_le_bytes())?;
    out.append(&header)?;
    for (_, s) in &sections {
        let data = model
            .bytes(s.shape.id)
            .expect("every listed section exists");
        for chunk in data.chunks(1 << 20) {
            out.append(chunk)?;
        }
    }
    out.commit()?;
    write_atomically(spec_out, (json + "\n").as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{mixed_small, write_random_model};
    use safetensors::tensor::TensorView;

    /// The streamed export is byte for byte what safetensors itself serializes.
    #[test]
    fn export_matches_safetensors_serialize() {
        let dir = tempfile::tempdir().unwrap();
        let original = write_random_model(dir.path().join("a.dfm"), &mixed_small(), 5).unwrap();
        let model = ModelFile::open(&original).unwrap();
        let (weights, spec) = (dir.path().join("w.safetensors"), dir.path().join("s.json"));
        export(&model, &weights, &spec).unwrap();
        let views = model.sections().iter().map(|s| {
            let shape = torch_shape(s.shape.rank, s.shape.dims);
            let view = TensorView::new(Dtype::F32, shape, model.bytes(s.shape.id).unwrap());
            (s.shape.id.name(), view.unwrap())
        });
        let expected = safetensors::serialize(views, None).unwrap();
        assert_eq!(std::fs::read(&weights).unwrap(), expected);
    }

    #[test]
    fn export_then_import_is_byte_identical() {
        let dir = tempfile::tempdir().unwrap();
        let original = write_random_model(dir.path().join("a.dfm"), &mixed_small(), 3).unwrap();
        let model = ModelFile::open(&original).unwrap();
        let (weights, spec) = (dir.path().join("w.safetensors"), dir.path().join("s.json"));
        export(&model, &weights, &spec).unwrap();
        let spec_json = std::fs::read_to_string(&spec).unwrap();
        let copy = import(&weights, &spec_json, &dir.path().join("b.dfm")).unwrap();
        assert_eq!(
            std::fs::read(original).unwrap(),
            std::fs::read(copy).unwrap()
        );
    }

    #[test]
    fn import_refuses_wrong_shapes_and_extra_tensors() {
        let dir = tempfile::tempdir().unwrap();
        let original = write_random_model(dir.path().join("a.dfm"), &mixed_small(), 3).unwrap();
        let model = ModelFile::open(&original).unwrap();
        let (weights, spec) = (dir.path().join("w.safetensors"), dir.path().join("s.json"));
        export(&model, &weights, &spec).unwrap();
        let mut other = mixed_small();
        other.hidden[0] += 1;
        let err = import(&weights, &other.to_json(), &dir.path().join("c.dfm")).unwrap_err();
        assert!(matches!(err, InteropError::Shape { ref name, .. } if name == "mlp.0.weight"));
        other.hidden = vec![37];
        let err = import(&weights, &other.to_json(), &dir.path().join("c.dfm")).unwrap_err();
        assert!(matches!(err, InteropError::UnexpectedTensor(ref n) if n.starts_with("mlp.1")));
        assert!(!dir.path().join("c.dfm").exists());
    }

    /// Writes zero tensors of `spec`'s shapes to `file`, leaving out `skip` and storing `half`
    /// as f16.
    fn zero_tensors(dir: &Path, file: &str, skip: &str, half: &str) -> PathBuf {
        let buffers: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = tensor_shapes(&mixed_small())
            .iter()
            .filter(|s| s.id.name() != skip)
            .map(|s| {
                let shape = torch_shape(s.rank, s.dims);
                let (dtype, size) = if s.id.name() == half {
                    (Dtype::F16, 2)
                } else {
                    (Dtype::F32, 4)
                };
                let bytes = vec![0u8; shape.iter().product::<usize>() * size];
                (s.id.name(), shape, dtype, bytes)
            })
            .collect();
        let views = buffers.iter().map(|(n, shape, dtype, b)| {
            (
                n.clone(),
                TensorView::new(*dtype, shape.clone(), b).unwrap(),
            )
        });
        let path = dir.join(file);
        safetensors::serialize_to_file(views, None, &path).unwrap();
        path
    }

    #[test]
    fn import_refuses_missing_tensors_wrong_dtypes_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let (spec, out) = (mixed_small().to_json(), dir.path().join("c.dfm"));
        let fine = zero_tensors(dir.path(), "fine.safetensors", "", "");
        assert!(import(&fine, &spec, &out).is_ok());
        let missing = zero_tensors(dir.path(), "missing.safetensors", "out.bias", "");
        let err = import(&missing, &spec, &out).unwrap_err();
        assert!(
            matches!(err, InteropError::MissingTensor(ref n) if n == "out.bias"),
            "{err}"
        );
        let half = zero_tensors(dir.path(), "half.safetensors", "", "bias");
        let err = import(&half, &spec, &out).unwrap_err();
        assert!(
            matches!(err, InteropError::Dtype { ref name, .. } if name == "bias"),
            "{err}"
        );
        let garbage = dir.path().join("garbage.safetensors");
        std::fs::write(&garbage, b"not a safetensors file").unwrap();
        let err = import(&garbage, &spec, &out).unwrap_err();
        assert!(matches!(err, InteropError::Safetensors(_)), "{err}");
        let err = import(&dir.path().join("absent"), &spec, &out).unwrap_err();
        assert!(matches!(err, InteropError::Io { .. }), "{err}");
    }
}
