//! Plain scalar twins of every kernel (f64 accumulation), for tests.

/// `C = act(A · Wᵀ + b)` with `weight[n][k]` row-major, accumulated in f64. Columns of `C` past
/// `n` are not touched.
#[allow(clippy::too_many_arguments)]
pub fn gemm_bias_act_ref(
    a: &[f32],
    lda: usize,
    m: usize,
    weight: &[f32],
    bias: &[f32],
    n: usize,
    k: usize,
    relu: bool,
    c: &mut [f32],
    ldc: usize,
) {
    for i in 0..m {
        for o in 0..n {
            let mut sum = bias[o] as f64;
            for kk in 0..k {
                sum += a[i * lda + kk] as f64 * weight[o * k + kk] as f64;
            }
            if relu {
                sum = sum.max(0.0);
            }
            c[i * ldc + o] = sum as f32;
        }
    }
}

/// The FM pairwise term in f64: `½·Σ_d((Σ_f x[f][d])² − Σ_f x[f][d]²)`.
pub fn fm_pairwise_ref(x: &[f32], fields: usize, d: usize) -> f64 {
    let mut total = 0.0;
    for j in 0..d {
        let (mut s, mut q) = (0.0f64, 0.0f64);
        for f in 0..fields {
            let v = x[f * d + j] as f64;
            s += v;
            q += v * v;
        }
        total += s * s - q;
    }
    0.5 * total
}

/// `Σ a[i]·b[i]` in f64.
pub fn dot_ref(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}
