//! Input columns an int8 layer keeps in f32.
//!
//! An activation row is quantized with one scale ([`super::quant`]), so values on a larger
//! scale than the rest of the row take the levels from it: log-counts of 1 to 10 or a raw age
//! of 70 beside embedding values of 0.01 leave the embeddings a step or two each (a framework
//! model's probabilities moved by 0.75 that way). The int8 MLP therefore sums such inputs in
//! f32 beside the integer kernels: [`F32Columns::add_column`] adds one input's terms to a block
//! of outputs. It is plain code, and its caller adds the columns in one fixed order, so an
//! int8 layer's outputs stay bit-identical on every instruction set.

use super::qgemm::relu_select;

/// The f32 weights of some inputs of an `n`-output layer: one run of `n` per input (so the
/// terms of one input are added to a row of outputs in one pass).
#[derive(Debug, Clone)]
pub struct F32Columns {
    n: usize,
    weight: Vec<f32>,
}

impl F32Columns {
    /// `weight` holds one run of `n` weights per input.
    ///
    /// # Panics
    /// If `n` is 0 or `weight.len()` is not a multiple of `n`.
    pub fn new(n: usize, weight: Vec<f32>) -> F32Columns {
        assert!(
            n > 0 && weight.len().is_multiple_of(n),
            "weight is not runs of n"
        );
        F32Columns { n, weight }
    }

    /// Inputs held.
    pub fn count(&self) -> usize {
        self.weight.len() / self.n
    }

    /// `c[r][o] += values[r] · w[j][o]` for every row `r` of `values` (`c` rows `ldc` apart).
    ///
    /// # Panics
    /// If `j ≥ count()`, `ldc < n` or `c` is shorter than `values.len()` rows.
    pub fn add_column(&self, j: usize, values: &[f32], c: &mut [f32], ldc: usize) {
        let n = self.n;
        assert!(ldc >= n, "output stride too short");
        let w = &self.weight[j * n..(j + 1) * n];
        for (r, &v) in values.iter().enumerate() {
            for (y, &w) in c[r * ldc..][..n].iter_mut().zip(w) {
                *y += v * w;
            }
        }
    }

    /// The ReLU of the int8 epilogues (a select: `+0.0` unless the sum is above 0, so NaN and
    /// −0.0 give `+0.0` too) over `rows` rows of `n` outputs.
    pub fn relu(&self, rows: usize, c: &mut [f32], ldc: usize) {
        for r in 0..rows {
            c[r * ldc..][..self.n]
                .iter_mut()
                .for_each(|y| *y = relu_select(*y));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_add_their_terms_in_order_and_the_relu_is_a_select() {
        let columns = F32Columns::new(3, vec![1.0, -2.0, 0.5, 4.0, 1.0, -1.0]);
        assert_eq!(columns.count(), 2);
        let ldc = 4;
        let mut c = vec![0.25f32, 0.0, 0.0, 9.0, 1.0, 1.0, 1.0, 9.0];
        columns.add_column(0, &[2.0, -1.0], &mut c, ldc);
        columns.add_column(1, &[0.5, 0.0], &mut c, ldc);
        assert_eq!(c, [4.25, -3.5, 0.5, 9.0, 0.0, 3.0, 0.5, 9.0]);
        let mut c = [-0.0f32, f32::NAN, 2.0, 9.0];
        columns.relu(1, &mut c, ldc);
        assert_eq!(
            c.map(f32::to_bits),
            [0.0f32, 0.0, 2.0, 9.0].map(f32::to_bits)
        );
    }
}
