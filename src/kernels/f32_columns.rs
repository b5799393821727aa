//! Input columns an int8 layer keeps in f32.
//!
//! An activation row is quantized with one scale ([`super::quant`]), so values on a larger
//! scale than the rest of the row take the levels from it: log-counts of 1 to 10 or a raw age
//! of 70 beside embedding values of 0.01 leave the embeddings a step or two each (a framework
//! model's probabilities moved by 0.75 that way). The int8 MLP therefore sums such inputs in
//! f32 beside the integer kernels: [`F32Columns::add_columns`] adds inputs' terms to a block
//! of outputs, one product and one sum at a time in one fixed order (Rust never fuses them
//! into a multiply-add), so an int8 layer's outputs stay bit-identical on every instruction
//! set whatever vector width compiles it.

use super::qgemm::{Int8Kind, Int8Path, relu_select};

/// The f32 weights of some inputs of an `n`-output layer: one run of `n` per input (so the
/// terms of one input are added to a row of outputs with contiguous loads).
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

    /// `c[r][o] += values[i][r] · w[first + i][o]` for each input `i` of `values` in order,
    /// one product and one sum at a time (never fused), for the `rows` rows of `c` (`ldc`
    /// apart), then the ReLU when `relu` (a select: `+0.0` unless the sum is above 0, so NaN
    /// and −0.0 give `+0.0` too). A row of outputs takes every input's terms in one pass, in
    /// 16-wide chunks compiled for `path`'s instruction set; the sums are the same on every
    /// path.
    ///
    /// # Panics
    /// If `first + values.len() > count()`, `ldc < n`, a `values` slice is shorter than `rows`
    /// or `c` is shorter than `rows` rows.
    #[allow(clippy::too_many_arguments)]
    pub fn add_columns(
        &self,
        path: Int8Path,
        first: usize,
        values: &[&[f32]],
        rows: usize,
        relu: bool,
        c: &mut [f32],
        ldc: usize,
    ) {
        let n = self.n;
        assert!(first + values.len() <= self.count(), "no such input");
        assert!(ldc >= n, "output stride too short");
        assert!(
            values.iter().all(|v| v.len() >= rows),
            "values shorter than the rows"
        );
        if rows == 0 {
            return;
        }
        assert!(c.len() >= (rows - 1) * ldc + n, "output too short");
        let w = &self.weight[first * n..(first + values.len()) * n];
        match path.kind() {
            #[cfg(target_arch = "x86_64")]
            Int8Kind::Avx2 | Int8Kind::AvxVnni => {
                // SAFETY: these paths are made only where AVX2 is present.
                unsafe { add_avx2(n, w, values, rows, relu, c, ldc) }
            }
            #[cfg(target_arch = "x86_64")]
            Int8Kind::Avx512Vnni | Int8Kind::Amx => {
                // SAFETY: these paths are made only where AVX-512F is present.
                unsafe { add_avx512(n, w, values, rows, relu, c, ldc) }
            }
            _ => add_rows(n, w, values, rows, relu, c, ldc),
        }
    }
}

/// Outputs of one pass over a row (a zmm register of f32).
const CHUNK: usize = 16;

/// [`F32Columns::add_columns`] for the inputs whose runs are `w`, as plain code that each
/// instruction set's wrapper compiles with its vector width.
#[inline(always)]
fn add_rows(
    n: usize,
    w: &[f32],
    values: &[&[f32]],
    rows: usize,
    relu: bool,
    c: &mut [f32],
    ldc: usize,
) {
    let finish = |y: f32| if relu { relu_select(y) } else { y };
    for r in 0..rows {
        let out = &mut c[r * ldc..][..n];
        let mut chunks = out.chunks_exact_mut(CHUNK);
        for (k, chunk) in (&mut chunks).enumerate() {
            let chunk: &mut [f32; CHUNK] = chunk.try_into().expect("16 outputs");
            let mut sum = *chunk;
            for (i, v) in values.iter().enumerate() {
                let v = v[r];
                let w: &[f32; CHUNK] = w[i * n + k * CHUNK..][..CHUNK]
                    .try_into()
                    .expect("16 weights");
                for o in 0..CHUNK {
                    sum[o] += v * w[o];
                }
            }
            *chunk = sum.map(finish);
        }
        let done = n - chunks.into_remainder().len();
        for o in done..n {
            let mut y = out[o];
            for (i, v) in values.iter().enumerate() {
                y += v[r] * w[i * n + o];
            }
            out[o] = finish(y);
        }
    }
}

/// [`add_rows`] on AVX2.
///
/// # Safety
/// The CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn add_avx2(
    n: usize,
    w: &[f32],
    values: &[&[f32]],
    rows: usize,
    relu: bool,
    c: &mut [f32],
    ldc: usize,
) {
    add_rows(n, w, values, rows, relu, c, ldc)
}

/// [`add_rows`] on AVX-512.
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn add_avx512(
    n: usize,
    w: &[f32],
    values: &[&[f32]],
    rows: usize,
    relu: bool,
    c: &mut [f32],
    ldc: usize,
) {
    add_rows(n, w, values, rows, relu, c, ldc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use proptest::prelude::*;

    /// One input at a time over the whole block, then the ReLU: the order the sums must keep.
    fn reference(
        columns: &F32Columns,
        first: usize,
        values: &[Vec<f32>],
        rows: usize,
        relu: bool,
        c: &mut [f32],
        ldc: usize,
    ) {
        let n = columns.n;
        for (i, v) in values.iter().enumerate() {
            let w = &columns.weight[(first + i) * n..][..n];
            for r in 0..rows {
                for (y, &w) in c[r * ldc..][..n].iter_mut().zip(w) {
                    *y += v[r] * w;
                }
            }
        }
        if relu {
            for r in 0..rows {
                c[r * ldc..][..n]
                    .iter_mut()
                    .for_each(|y| *y = relu_select(*y));
            }
        }
    }

    #[test]
    fn columns_add_their_terms_in_order_and_the_relu_is_a_select() {
        let columns = F32Columns::new(3, vec![1.0, -2.0, 0.5, 4.0, 1.0, -1.0]);
        assert_eq!(columns.count(), 2);
        let ldc = 4;
        for path in Int8Path::available() {
            let mut c = vec![0.25f32, 0.0, 0.0, 9.0, 1.0, 1.0, 1.0, 9.0];
            columns.add_columns(path, 0, &[&[2.0, -1.0], &[0.5, 0.0]], 2, false, &mut c, ldc);
            assert_eq!(
                c,
                [4.25, -3.5, 0.5, 9.0, 0.0, 3.0, 0.5, 9.0],
                "{}",
                path.name()
            );
            let mut c = [-0.0f32, f32::NAN, 2.0, 9.0];
            columns.add_columns(path, 1, &[&[0.0]], 1, true, &mut c, ldc);
            assert_eq!(
                c.map(f32::to_bits),
                [0.0f32, 0.0, 2.0, 9.0].map(f32::to_bits),
                "{}",
                path.name()
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn every_path_adds_bit_for_bit_as_one_input_at_a_time(
            n in 1usize..70,
            inputs in 1usize..12,
            rows in 0usize..20,
            pad in 0usize..3,
            relu: bool,
            seed: u64,
        ) {
            let mut rng = Rng::new(seed);
            let weight: Vec<f32> = (0..n * inputs).map(|_| rng.normal()).collect();
            let columns = F32Columns::new(n, weight);
            let first = inputs / 3;
            let values: Vec<Vec<f32>> = (first..inputs)
                .map(|_| (0..rows).map(|_| rng.normal() * 10.0).collect())
                .collect();
            let ldc = n + pad;
            let start: Vec<f32> = (0..rows * ldc).map(|_| rng.normal()).collect();
            let mut want = start.clone();
            reference(&columns, first, &values, rows, relu, &mut want, ldc);
            let slices: Vec<&[f32]> = values.iter().map(|v| v.as_slice()).collect();
            for path in Int8Path::available() {
                let mut got = start.clone();
                columns.add_columns(path, first, &slices, rows, relu, &mut got, ldc);
                prop_assert_eq!(
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{}", path.name()
                );
            }
        }
    }
}
