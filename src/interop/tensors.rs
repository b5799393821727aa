//! A safetensors file read by another framework's importer: tensors looked up by name with
//! their dtype and shape checked, and a record of which were used, so that a tensor the plan
//! does not account for is refused rather than silently dropped.

use super::InteropError;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::cell::RefCell;
use std::collections::BTreeSet;

/// The tensors of one safetensors file, and the names used so far.
pub(crate) struct Tensors<'a> {
    file: SafeTensors<'a>,
    used: RefCell<BTreeSet<String>>,
}

impl<'a> Tensors<'a> {
    /// Parses `bytes` (the header and every offset are validated by `safetensors`).
    pub(crate) fn new(bytes: &'a [u8]) -> Result<Tensors<'a>, InteropError> {
        Ok(Tensors {
            file: SafeTensors::deserialize(bytes)?,
            used: RefCell::new(BTreeSet::new()),
        })
    }

    /// The names of every tensor in the file (marks none used).
    pub(crate) fn names(&self) -> Vec<&str> {
        self.file.names()
    }

    /// Whether the file has a tensor `name` (does not mark it used).
    pub(crate) fn has(&self, name: &str) -> bool {
        self.file.tensor(name).is_ok()
    }

    /// Tensor `name`, marked used.
    fn view(&self, name: &str) -> Result<TensorView<'a>, InteropError> {
        let view = self
            .file
            .tensor(name)
            .map_err(|_| InteropError::MissingTensor(name.to_string()))?;
        self.used.borrow_mut().insert(name.to_string());
        Ok(view)
    }

    /// The shape of f32 tensor `name`, marked used.
    pub(crate) fn shape(&self, name: &str) -> Result<Vec<usize>, InteropError> {
        let view = self.view(name)?;
        check_dtype(name, &view, Dtype::F32)?;
        Ok(view.shape().to_vec())
    }

    /// The data of f32 tensor `name`, which must have shape `shape`.
    pub(crate) fn f32s(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, InteropError> {
        Ok(f32s_of(self.bytes(name, shape)?))
    }

    /// The raw little-endian bytes of f32 tensor `name`, which must have shape `shape`.
    pub(crate) fn bytes(&self, name: &str, shape: &[usize]) -> Result<&'a [u8], InteropError> {
        let view = self.view(name)?;
        check_dtype(name, &view, Dtype::F32)?;
        if view.shape() != shape {
            return Err(InteropError::Shape {
                name: name.to_string(),
                expected: shape.to_vec(),
                found: view.shape().to_vec(),
            });
        }
        Ok(view.data())
    }

    /// The data of i64 tensor `name` (of any shape).
    pub(crate) fn i64s(&self, name: &str) -> Result<Vec<i64>, InteropError> {
        let view = self.view(name)?;
        check_dtype(name, &view, Dtype::I64)?;
        Ok(view
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("chunks of 8")))
            .collect())
    }

    /// Marks `name` used if the file has it: a tensor that holds no weight (batch norm's
    /// `num_batches_tracked`).
    pub(crate) fn ignore(&self, name: &str) {
        if self.has(name) {
            self.used.borrow_mut().insert(name.to_string());
        }
    }

    /// Refuses a tensor that nothing used.
    pub(crate) fn check_all_used(&self) -> Result<(), InteropError> {
        let used = self.used.borrow();
        let mut names = self.file.names();
        names.sort();
        match names.into_iter().find(|n| !used.contains(*n)) {
            Some(extra) => Err(InteropError::UnexpectedTensor(extra.to_string())),
            None => Ok(()),
        }
    }
}

fn check_dtype(name: &str, view: &TensorView<'_>, want: Dtype) -> Result<(), InteropError> {
    if view.dtype() == want {
        Ok(())
    } else {
        Err(InteropError::Dtype {
            name: name.to_string(),
            dtype: view.dtype().to_string(),
            expected: want.to_string(),
        })
    }
}

/// Little-endian f32 bytes as values (tensor data in a safetensors file need not be 4-byte
/// aligned, so they are copied, not cast).
pub(crate) fn f32s_of(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}
