//! Numeric kernels behind one narrow interface, selected once per model by CPU features.
//!
//! - [`gemm`]: `C = act(A · W + b)` with `W` pre-packed into 16-column panels; bias and ReLU are
//!   fused into the pass that writes `C`. One loop nest ([`gemm::gemm_bias_act`]) drives a
//!   micro-kernel per instruction set (`gemm_avx2`, `gemm_portable`).
//! - [`gemv`]: the one-row case (batch-1 latency), skipping the weights of zero inputs.
//! - [`dot`]: the output unit, one dot product per row.
//! - [`fm`]: the FM pairwise term `½·Σ_d((Σ_f e_fd)² − Σ_f e_fd²)` over a gathered row.
//!
//! Every kernel has a plain scalar twin in [`reference`](mod@reference), and proptests compare them over
//! random, ragged shapes.

pub mod dot;
pub mod fm;
pub mod gemm;
#[cfg(target_arch = "x86_64")]
mod gemm_avx2;
mod gemm_portable;
pub mod gemv;
pub mod prefetch;
pub mod reference;

/// An instruction set the kernels can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable SIMD through the `wide` crate (SSE2 on any x86-64, NEON on aarch64); always
    /// available.
    Portable,
    /// AVX2 with FMA (x86-64, detected at run time).
    Avx2Fma,
}

/// Environment variable that forces an instruction set (`portable` or `avx2`), e.g. to test the
/// fallback on a CPU that has more. Asking for one the CPU lacks falls back to `portable`.
pub const ISA_ENV: &str = "DEEPFM_ISA";

impl Isa {
    /// Every instruction set this CPU can run, best last.
    pub fn available() -> Vec<Isa> {
        let mut isas = vec![Isa::Portable];
        if Isa::Avx2Fma.is_supported() {
            isas.push(Isa::Avx2Fma);
        }
        isas
    }

    /// True when this CPU can run `self`.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx2Fma => false,
        }
    }

    /// The best supported instruction set, unless [`ISA_ENV`] asks for another.
    pub fn detect() -> Isa {
        let best = *Isa::available()
            .last()
            .expect("portable is always available");
        match std::env::var(ISA_ENV).ok().as_deref() {
            Some(name) => Isa::from_name(name)
                .filter(|isa| isa.is_supported())
                .unwrap_or(Isa::Portable),
            None => best,
        }
    }

    /// Parses `portable` or `avx2`.
    pub fn from_name(name: &str) -> Option<Isa> {
        match name {
            "portable" | "scalar" => Some(Isa::Portable),
            "avx2" => Some(Isa::Avx2Fma),
            _ => None,
        }
    }

    /// Short name (`portable`, `avx2`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2Fma => "avx2",
        }
    }
}

/// Eight f32 from a slice of exactly eight, as a portable SIMD vector.
pub(crate) fn load8(x: &[f32]) -> wide::f32x8 {
    wide::f32x8::new(x.try_into().expect("eight lanes"))
}

/// Two portable SIMD vectors into one 16-float line.
pub(crate) fn store16(out: &mut [f32; 16], v: &[wide::f32x8; 2]) {
    out[..8].copy_from_slice(&v[0].to_array());
    out[8..].copy_from_slice(&v[1].to_array());
}

#[cfg(test)]
mod tests {
    use super::Isa;

    /// Instruction sets the kernel tests are expected to run on, comma-separated
    /// (`portable,avx2`): set by CI when it runs the kernel tests under valgrind, whose
    /// emulated CPU may not report every feature of the real one; unset, nothing is expected.
    const EXPECT_ENV: &str = "DEEPFM_EXPECT_ISAS";

    // The kernel tests cover every instruction set in `Isa::available()`; this names them in
    // the test output and, when CI says which it expects, fails if one is missing (so a
    // valgrind run that silently fell back to the portable kernels does not pass for AVX2).
    #[test]
    fn available_instruction_sets_are_the_expected_ones() {
        let available: Vec<&str> = Isa::available().iter().map(|i| i.name()).collect();
        eprintln!("kernel tests run on: {}", available.join(", "));
        assert_eq!(available[0], "portable", "the fallback is always available");
        if let Ok(expected) = std::env::var(EXPECT_ENV) {
            let expected: Vec<&str> = expected.split(',').map(str::trim).collect();
            assert_eq!(available, expected, "{EXPECT_ENV} says otherwise");
        }
    }
}
