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

/// Environment variable that forces an instruction set by its [`Isa::name`] (`portable` or
/// `avx2`), e.g. to test the fallback on a CPU that has more. Read by [`Isa::detect`], so by
/// [`crate::Model::open`] and [`crate::train::Trainer::new`]. Unset or empty, the best this CPU
/// has is used. Any other name, or one this CPU lacks, is an [`IsaError`] rather than a
/// silent fallback to slower kernels.
pub const ISA_ENV: &str = "DEEPFM_ISA";

/// Where an instruction set was asked for, for [`IsaError::Unsupported`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsaSource {
    /// The [`ISA_ENV`] environment variable.
    Env,
    /// [`crate::OpenOptions::isa`].
    OpenOptions,
    /// [`crate::train::Trainer::with_isa`].
    Trainer,
}

impl std::fmt::Display for IsaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IsaSource::Env => ISA_ENV,
            IsaSource::OpenOptions => "OpenOptions::isa",
            IsaSource::Trainer => "Trainer::with_isa",
        })
    }
}

/// An instruction set that cannot be used: an unknown name in [`ISA_ENV`], or one this CPU
/// lacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsaError {
    /// [`ISA_ENV`] holds a name that is not one of [`Isa::NAMES`] (names are lower case).
    #[error(
        "{ISA_ENV}={value:?} is not an instruction set: the valid names are {} \
         (or leave {ISA_ENV} unset for the best this CPU has)",
        Isa::NAMES.join(", ")
    )]
    Unknown {
        /// The variable's value (lossily decoded if it was not UTF-8).
        value: String,
    },
    /// The instruction set is known but this CPU (or the emulator running the program) lacks it.
    #[error(
        "{requested_by} asks for the {} kernels, which this CPU does not support",
        isa.name()
    )]
    Unsupported {
        /// The instruction set asked for.
        isa: Isa,
        /// Where it was asked for.
        requested_by: IsaSource,
    },
}

impl Isa {
    /// Every instruction set the kernels are written for, worst first (this CPU may lack some:
    /// see [`Isa::available`]).
    pub const ALL: [Isa; 2] = [Isa::Portable, Isa::Avx2Fma];

    /// The names [`Isa::from_name`] accepts, in the order of [`Isa::ALL`].
    pub const NAMES: [&'static str; 2] = ["portable", "avx2"];

    /// Every instruction set this CPU can run, best last.
    pub fn available() -> Vec<Isa> {
        Isa::ALL
            .into_iter()
            .filter(|isa| isa.is_supported())
            .collect()
    }

    /// The best instruction set this CPU has, ignoring [`ISA_ENV`] (what [`Isa::detect`]
    /// returns when the variable is unset).
    pub fn best() -> Isa {
        *Isa::available().last().unwrap_or(&Isa::Portable)
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

    /// `self` if this CPU supports it, else [`IsaError::Unsupported`] naming `source`.
    pub fn check(self, source: IsaSource) -> Result<Isa, IsaError> {
        check_in(self, source, &Isa::available())
    }

    /// The best supported instruction set, unless [`ISA_ENV`] asks for another.
    ///
    /// # Errors
    /// [`IsaError::Unknown`] if the variable holds a name other than [`Isa::NAMES`] (e.g.
    /// `AVX2`, `avx512`), [`IsaError::Unsupported`] if it names one this CPU lacks.
    pub fn detect() -> Result<Isa, IsaError> {
        let value = std::env::var_os(ISA_ENV);
        Isa::from_env_value(value.as_ref().map(|v| v.to_string_lossy()).as_deref())
    }

    /// What [`Isa::detect`] returns when [`ISA_ENV`] holds `value` (`None`: unset): the same
    /// rules, without reading the environment.
    pub fn from_env_value(value: Option<&str>) -> Result<Isa, IsaError> {
        from_env_value_in(value, &Isa::available())
    }

    /// Parses one of [`Isa::NAMES`] (exactly: names are lower case); `None` for anything else.
    pub fn from_name(name: &str) -> Option<Isa> {
        match name {
            "portable" => Some(Isa::Portable),
            "avx2" => Some(Isa::Avx2Fma),
            _ => None,
        }
    }

    /// Short name (`portable`, `avx2`), as [`Isa::from_name`] parses it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2Fma => "avx2",
        }
    }
}

/// [`Isa::check`] against an explicit list of what the CPU has, so that tests can drive the
/// unsupported case on any CPU.
fn check_in(isa: Isa, source: IsaSource, available: &[Isa]) -> Result<Isa, IsaError> {
    if available.contains(&isa) {
        Ok(isa)
    } else {
        Err(IsaError::Unsupported {
            isa,
            requested_by: source,
        })
    }
}

/// [`Isa::from_env_value`] against an explicit list of what the CPU has (best last).
fn from_env_value_in(value: Option<&str>, available: &[Isa]) -> Result<Isa, IsaError> {
    match value {
        // Empty is how shells spell "no preference" (`DEEPFM_ISA= cargo test`).
        None | Some("") => Ok(*available.last().unwrap_or(&Isa::Portable)),
        Some(name) => match Isa::from_name(name) {
            Some(isa) => check_in(isa, IsaSource::Env, available),
            None => Err(IsaError::Unknown {
                value: name.to_string(),
            }),
        },
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
    use super::{Isa, IsaError, IsaSource, check_in, from_env_value_in};

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

    #[test]
    fn names_round_trip() {
        for (isa, name) in Isa::ALL.into_iter().zip(Isa::NAMES) {
            assert_eq!(isa.name(), name);
            assert_eq!(Isa::from_name(name), Some(isa));
        }
    }

    // Issue 16: an unknown value (a capitalised name, an ISA the kernels do not have, a typo,
    // the old undocumented alias `scalar`) used to select the portable kernels silently.
    #[test]
    fn an_unknown_env_value_is_an_error_listing_the_valid_names() {
        let both = [Isa::Portable, Isa::Avx2Fma];
        for value in ["AVX2", "avx512", "avx-2", "scalar", "Portable", " avx2"] {
            let err = from_env_value_in(Some(value), &both).unwrap_err();
            assert_eq!(
                err,
                IsaError::Unknown {
                    value: value.to_string()
                }
            );
            let message = err.to_string();
            assert!(
                message.contains("DEEPFM_ISA") && message.contains("portable, avx2"),
                "{message}"
            );
        }
    }

    #[test]
    fn a_known_env_value_the_cpu_lacks_is_an_error() {
        let err = from_env_value_in(Some("avx2"), &[Isa::Portable]).unwrap_err();
        assert_eq!(
            err,
            IsaError::Unsupported {
                isa: Isa::Avx2Fma,
                requested_by: IsaSource::Env
            }
        );
        assert!(
            err.to_string()
                .contains("DEEPFM_ISA asks for the avx2 kernels")
        );
    }

    #[test]
    fn env_value_unset_or_empty_picks_the_best_and_a_name_picks_that() {
        let both = [Isa::Portable, Isa::Avx2Fma];
        assert_eq!(from_env_value_in(None, &both), Ok(Isa::Avx2Fma));
        assert_eq!(from_env_value_in(Some(""), &both), Ok(Isa::Avx2Fma));
        assert_eq!(from_env_value_in(None, &[Isa::Portable]), Ok(Isa::Portable));
        assert_eq!(
            from_env_value_in(Some("portable"), &both),
            Ok(Isa::Portable)
        );
        assert_eq!(from_env_value_in(Some("avx2"), &both), Ok(Isa::Avx2Fma));
        // And the public function agrees with this CPU's list.
        let best = *Isa::available().last().unwrap();
        assert_eq!(Isa::from_env_value(None), Ok(best));
    }

    #[test]
    fn check_refuses_what_the_cpu_lacks_naming_where_it_was_asked_for() {
        assert_eq!(
            check_in(Isa::Avx2Fma, IsaSource::OpenOptions, &[Isa::Portable]),
            Err(IsaError::Unsupported {
                isa: Isa::Avx2Fma,
                requested_by: IsaSource::OpenOptions
            })
        );
        assert_eq!(
            check_in(Isa::Portable, IsaSource::Trainer, &[Isa::Portable]),
            Ok(Isa::Portable)
        );
        for isa in Isa::ALL {
            assert_eq!(
                isa.check(IsaSource::OpenOptions).is_ok(),
                isa.is_supported(),
                "{isa:?}"
            );
        }
    }
}
