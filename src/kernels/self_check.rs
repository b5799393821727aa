//! The kernels check themselves before a model uses them.
//!
//! Proptests run every kernel against its scalar reference on the CPUs the project is tested
//! on, but a model is served on others (a new microarchitecture, a hypervisor that reports a
//! feature it emulates badly). So when a model is opened, the kernels of its instruction set
//! first score a small fixed problem (ragged shapes that cross tiles, panels and vector tails)
//! and compare it with the references in [`super::reference`]: the f32 kernels within a
//! rounding bound, the int8 layer bit for bit with the scalar path. A set that disagrees is
//! replaced by the next one down (AVX-512 → AVX2 → portable), with a warning on stderr that
//! names the kernel and the difference; one asked for by name (`DEEPFM_ISA`,
//! `OpenOptions::isa`) is an error instead, as an unsupported one is. Each set is checked once
//! per process (tens of microseconds).

use super::gemm::gemm_bias_act;
use super::gemv::{NonZeros, gemv_bias_act};
use super::pack::{PackBuffer, PackedMatrix};
use super::qgemm::{Int8Path, qgemm_bias_act, quantize_rows_on};
use super::quant::{QK, QuantizedMatrix, RowQuant};
use super::reference::{dot_ref, fm_pairwise_ref, gemm_bias_act_ref};
use super::{Isa, IsaKind, dot::dot, fm::fm_pairwise};
use std::sync::OnceLock;

/// `isa` if its kernels pass the check, else the best one below it that does, and the
/// warnings that explain each step down (empty when `isa` passed). The portable kernels are
/// the last resort and are used even if they disagree (warned about as well).
pub fn checked(isa: Isa) -> (Isa, Vec<String>) {
    fall_back(isa, passes)
}

/// [`check`], run once per process for each instruction set.
pub fn passes(isa: Isa) -> Result<(), String> {
    static RESULTS: OnceLock<[OnceLock<Result<(), String>>; 3]> = OnceLock::new();
    let results = RESULTS.get_or_init(Default::default);
    let slot = IsaKind::ALL
        .iter()
        .position(|&k| k == isa.kind())
        .expect("a kind");
    results[slot].get_or_init(|| check(isa)).clone()
}

/// The step-down of [`checked`], with the check to run.
fn fall_back(isa: Isa, check: impl Fn(Isa) -> Result<(), String>) -> (Isa, Vec<String>) {
    let mut warnings = Vec::new();
    let rank = |i: Isa| IsaKind::ALL.iter().position(|&k| k == i.kind());
    let below: Vec<Isa> = Isa::available()
        .into_iter()
        .filter(|&i| rank(i) < rank(isa))
        .rev()
        .collect();
    for candidate in std::iter::once(isa).chain(below) {
        match check(candidate) {
            Ok(()) => return (candidate, warnings),
            Err(why) => warnings.push(format!(
                "deepfm: the {} kernels disagree with the reference on this CPU ({why}); not \
                 using them",
                candidate.name()
            )),
        }
    }
    (Isa::portable(), warnings)
}

/// The fixed problem: activations (a seventh of them zero, for the GEMV's skipping), weights
/// and bias of an `m × k` by `k × n` layer whose shapes cross tiles, panels, `k` blocks and
/// vector tails of every path.
#[allow(clippy::type_complexity)]
fn fixed_problem() -> (Vec<f32>, Vec<f32>, Vec<f32>, (usize, usize, usize)) {
    // Values in [-1, 1) from a fixed hash (the library's generator is a feature of its own).
    let value = |i: usize, salt: usize| {
        let h = ((i ^ salt) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
        (h % 2000) as f32 / 1000.0 - 1.0
    };
    let (m, k, n) = (19, 77, 35);
    let a: Vec<f32> = (0..m * k)
        .map(|i| if i % 7 == 3 { 0.0 } else { value(i, 1) })
        .collect();
    let w: Vec<f32> = (0..n * k).map(|i| value(i, 2)).collect();
    let b: Vec<f32> = (0..n).map(|i| value(i, 3)).collect();
    (a, w, b, (m, k, n))
}

/// Every kernel of `isa` on the fixed problem: `Err` names the first that disagrees.
pub fn check(isa: Isa) -> Result<(), String> {
    check_with(isa, |_, _| {})
}

/// [`check`], with `tamper` applied to each kernel's output (named) before the comparison:
/// how the tests make a kernel disagree.
fn check_with(isa: Isa, tamper: impl Fn(&str, &mut [f32])) -> Result<(), String> {
    let (a, w, b, (m, k, n)) = fixed_problem();
    // Within a rounding bound of the f64 reference: sums of 77 products of values below 1.
    let close = |name: &str, got: &[f32], want: &[f32]| -> Result<(), String> {
        for (i, (&g, &e)) in got.iter().zip(want).enumerate() {
            // Written so that a NaN fails too.
            let within = (g - e).abs() <= 1e-4 * (1.0 + e.abs());
            if !within {
                return Err(format!("{name}: value {i} is {g}, the reference {e}"));
            }
        }
        Ok(())
    };
    let packed = PackedMatrix::pack(&w, &b, n, k);
    for relu in [false, true] {
        let mut want = vec![0.0; m * n];
        gemm_bias_act_ref(&a, k, m, &w, &b, n, k, relu, &mut want, n);
        let mut got = vec![0.0; m * n];
        gemm_bias_act(
            isa,
            &a,
            k,
            m,
            &packed,
            relu,
            &mut got,
            n,
            &mut PackBuffer::new(),
        );
        tamper("gemm", &mut got);
        close("gemm", &got, &want)?;
        let mut nonzeros = NonZeros::with_capacity(k);
        nonzeros.gather(&a[..k]);
        let mut row = vec![0.0; n];
        gemv_bias_act(isa, &nonzeros, &packed, relu, &mut row);
        tamper("gemv", &mut row);
        close("gemv", &row, &want[..n])?;
    }
    let mut got = [dot(isa, &a[..k], &w[..k])];
    tamper("dot", &mut got);
    close("dot", &got, &[dot_ref(&a[..k], &w[..k]) as f32])?;
    let (fields, d) = (5, 7);
    let mut got = [fm_pairwise(isa, &a[..fields * d], fields, d)];
    tamper("fm", &mut got);
    close(
        "fm",
        &got,
        &[fm_pairwise_ref(&a[..fields * d], fields, d) as f32],
    )?;
    // The int8 layer of this instruction set's path.
    check_int8_with(Int8Path::of(isa), &a, &w, &b, (m, k, n), &tamper)
}

/// The int8 layer of `path` on the fixed problem, bit for bit against the scalar path (exact
/// sums and one epilogue): run once per process for the AMX kernels before `Int8Path::of`
/// prefers them, and for a path named by `DEEPFM_INT8`.
pub(crate) fn int8_passes(path: Int8Path) -> Result<(), String> {
    let (a, w, b, shape) = fixed_problem();
    check_int8_with(path, &a, &w, &b, shape, &|_, _| {})
}

/// [`int8_passes`] on the given problem, with `tamper` applied to the output.
fn check_int8_with(
    path: Int8Path,
    a: &[f32],
    w: &[f32],
    b: &[f32],
    (m, k, n): (usize, usize, usize),
    tamper: &dyn Fn(&str, &mut [f32]),
) -> Result<(), String> {
    let layer = QuantizedMatrix::quantize(w, b, n, k);
    let lda = QK * layer.groups();
    let int8 = |path: Int8Path| {
        let (mut q, mut p) = (vec![0u8; m * lda], vec![RowQuant::default(); m]);
        quantize_rows_on(path, a, k, m, &mut q, lda, &mut p);
        let mut c = vec![0.0f32; m * n];
        qgemm_bias_act(path, &q, lda, &p, m, &layer, true, &mut c, n);
        c
    };
    let mut got = int8(path);
    tamper("int8 layer", &mut got);
    let want = int8(Int8Path::of(Isa::portable()));
    if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        return Err(format!(
            "int8 layer ({}): value {i} is {}, the scalar path's {}",
            path.name(),
            got[i],
            want[i]
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_instruction_set_of_this_cpu_passes() {
        for isa in Isa::available() {
            check(isa).unwrap_or_else(|e| panic!("{}: {e}", isa.name()));
            assert_eq!(checked(isa), (isa, vec![]));
        }
    }

    #[test]
    fn a_kernel_that_disagrees_is_named_and_the_next_set_down_is_used() {
        for kernel in ["gemm", "gemv", "dot", "fm", "int8 layer"] {
            let broken = |_: &str, out: &mut [f32]| out[out.len() - 1] += 0.5;
            let only = |name: &str, out: &mut [f32]| {
                if name == kernel {
                    broken(name, out)
                }
            };
            let err = check_with(Isa::portable(), only).unwrap_err();
            assert!(err.starts_with(kernel), "{kernel}: {err}");
        }
        // The best set fails: the one below it is used, with one warning saying why.
        let best = Isa::best();
        let (used, warnings) = fall_back(best, |isa| {
            if isa == best {
                check_with(isa, |name, out| {
                    if name == "fm" {
                        out[0] = f32::NAN
                    }
                })
            } else {
                check(isa)
            }
        });
        let below = Isa::available()
            .into_iter()
            .rev()
            .nth(1)
            .unwrap_or(Isa::portable());
        assert_eq!(used, below);
        if best != Isa::portable() {
            assert_eq!(warnings.len(), 1);
            assert!(
                warnings[0].contains(best.name()) && warnings[0].contains("fm: value 0 is NaN"),
                "{warnings:?}"
            );
        }
        // Every set fails: portable, with a warning for each.
        let (used, warnings) = fall_back(best, |_| Err("broken".into()));
        assert_eq!(
            (used, warnings.len()),
            (Isa::portable(), Isa::available().len())
        );
    }
}
