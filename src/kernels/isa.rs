//! Instruction sets as tokens: an [`Isa`] exists only once detection has found its features on
//! this CPU (the pattern of `pulp`'s `V3::try_new`), so kernels run on one without checking
//! again, and no caller can hand them one the CPU lacks. [`IsaKind`] names an instruction set
//! without that promise (what a user asks for, what `DEEPFM_ISA` says).

/// An instruction set the kernels are written for, by name. Asking for one gives an [`Isa`]
/// token only where this CPU has it ([`Isa::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IsaKind {
    /// Portable SIMD through the `wide` crate (SSE2 on any x86-64, NEON on aarch64); always
    /// available.
    Portable,
    /// AVX2 with FMA (x86-64, detected at run time).
    Avx2Fma,
    /// AVX-512F, with AVX2 and FMA (x86-64, detected at run time).
    Avx512,
}

impl IsaKind {
    /// Every instruction set the kernels are written for, worst first (this CPU may lack some:
    /// see [`Isa::available`]).
    pub const ALL: [IsaKind; 3] = [IsaKind::Portable, IsaKind::Avx2Fma, IsaKind::Avx512];

    /// The names [`IsaKind::from_name`] accepts, in the order of [`IsaKind::ALL`].
    pub const NAMES: [&'static str; 3] = ["portable", "avx2", "avx512"];

    /// Parses one of [`IsaKind::NAMES`] (exactly: names are lower case); `None` for anything
    /// else.
    pub fn from_name(name: &str) -> Option<IsaKind> {
        IsaKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// Short name (`portable`, `avx2`, `avx512`), as [`IsaKind::from_name`] parses it.
    pub fn name(self) -> &'static str {
        match self {
            IsaKind::Portable => "portable",
            IsaKind::Avx2Fma => "avx2",
            IsaKind::Avx512 => "avx512",
        }
    }

    /// True when this CPU has every feature the kernels of `self` use: the one place that
    /// reads the CPU's features.
    pub fn is_supported(self) -> bool {
        match self {
            IsaKind::Portable => true,
            #[cfg(target_arch = "x86_64")]
            IsaKind::Avx2Fma => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            // The AVX-512 kernels use the AVX2 dot product and FM term (`kernels/avx512`).
            #[cfg(target_arch = "x86_64")]
            IsaKind::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f") && IsaKind::Avx2Fma.is_supported()
            }
            #[cfg(not(target_arch = "x86_64"))]
            IsaKind::Avx2Fma | IsaKind::Avx512 => false,
        }
    }
}

/// An instruction set this CPU supports: a token that only detection creates ([`Isa::new`],
/// [`Isa::detect`], [`Isa::best`], [`Isa::available`], [`Isa::portable`]). Kernels take one and
/// run its code without re-checking the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Isa(IsaKind);

/// Environment variable that forces an instruction set by its [`IsaKind::name`] (`portable`,
/// `avx2` or `avx512`), e.g. to test the fallback on a CPU that has more. Read by [`Isa::detect`], so by
/// [`crate::Model::open`] and `train::Trainer::new`. Unset or empty, the best this CPU
/// has is used. Any other name, or one this CPU lacks, is an [`IsaError`] rather than a
/// silent fallback to slower kernels.
pub const ISA_ENV: &str = "DEEPFM_ISA";

/// Where an instruction set was asked for, for [`IsaError::Unsupported`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IsaSource {
    /// The [`ISA_ENV`] environment variable.
    Env,
    /// [`crate::OpenOptions::isa`].
    OpenOptions,
    /// `train::Trainer::with_isa` (the `train` feature).
    Trainer,
    /// A command-line flag (`deepfm bench --isa`).
    Flag,
}

impl std::fmt::Display for IsaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IsaSource::Env => ISA_ENV,
            IsaSource::OpenOptions => "OpenOptions::isa",
            IsaSource::Trainer => "Trainer::with_isa",
            IsaSource::Flag => "--isa",
        })
    }
}

/// An instruction set that cannot be used: an unknown name, or one this CPU lacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IsaError {
    /// [`ISA_ENV`] holds a name that is not one of [`IsaKind::NAMES`] (names are lower case).
    #[error(
        "{ISA_ENV}={value:?} is not an instruction set: the valid names are {} \
         (or leave {ISA_ENV} unset for the best this CPU has)",
        IsaKind::NAMES.join(", ")
    )]
    Unknown {
        /// The variable's value (lossily decoded if it was not UTF-8).
        value: String,
    },
    /// The instruction set was asked for by name, and its kernels disagree with the reference
    /// on this CPU (`kernels::self_check`; left to detection, the next set down is used).
    #[error(
        "{requested_by} asks for the {} kernels, which disagree with the reference on this CPU \
         ({reason}); leave the choice to detection (it falls back) or ask for another",
        isa.name()
    )]
    SelfCheck {
        /// The instruction set asked for.
        isa: IsaKind,
        /// Where it was asked for.
        requested_by: IsaSource,
        /// The kernel and the values that disagree.
        reason: String,
    },
    /// `DEEPFM_INT8` ([`crate::kernels::qgemm::INT8_ENV`]) names int8 kernels this CPU lacks
    /// (or no int8 kernels), or ones that disagree with the reference here.
    #[error("DEEPFM_INT8={value:?} cannot be used: {reason} (or leave DEEPFM_INT8 unset)")]
    Int8Path {
        /// The variable's value (lossily decoded if it was not UTF-8).
        value: String,
        /// What this CPU has instead, or the disagreement.
        reason: String,
    },
    /// The instruction set is known but this CPU (or the emulator running the program) lacks it.
    #[error(
        "{requested_by} asks for the {} kernels, which this CPU does not support",
        isa.name()
    )]
    Unsupported {
        /// The instruction set asked for.
        isa: IsaKind,
        /// Where it was asked for.
        requested_by: IsaSource,
    },
}

impl Isa {
    /// The token for `kind` if this CPU supports it, else [`IsaError::Unsupported`] naming
    /// `source` (where it was asked for).
    pub fn new(kind: IsaKind, source: IsaSource) -> Result<Isa, IsaError> {
        check_in(kind, source, &IsaKind::supported())
    }

    /// The portable kernels, which every CPU runs.
    pub fn portable() -> Isa {
        Isa(IsaKind::Portable)
    }

    /// Every instruction set this CPU can run, best last.
    pub fn available() -> Vec<Isa> {
        IsaKind::supported().into_iter().map(Isa).collect()
    }

    /// The best instruction set this CPU has, ignoring [`ISA_ENV`] (what [`Isa::detect`]
    /// returns when the variable is unset).
    pub fn best() -> Isa {
        *Isa::available().last().unwrap_or(&Isa::portable())
    }

    /// The best supported instruction set, unless [`ISA_ENV`] asks for another.
    ///
    /// # Errors
    /// [`IsaError::Unknown`] if the variable holds a name other than [`IsaKind::NAMES`] (e.g.
    /// `AVX2`, `avx-512`), [`IsaError::Unsupported`] if it names one this CPU lacks.
    pub fn detect() -> Result<Isa, IsaError> {
        let value = std::env::var_os(ISA_ENV);
        Isa::from_env_value(value.as_ref().map(|v| v.to_string_lossy()).as_deref())
    }

    /// What [`Isa::detect`] returns when [`ISA_ENV`] holds `value` (`None`: unset): the same
    /// rules, without reading the environment.
    pub fn from_env_value(value: Option<&str>) -> Result<Isa, IsaError> {
        from_env_value_in(value, &IsaKind::supported())
    }

    /// Which instruction set this is.
    pub fn kind(self) -> IsaKind {
        self.0
    }

    /// Short name (`portable`, `avx2`, `avx512`).
    pub fn name(self) -> &'static str {
        self.0.name()
    }
}

impl IsaKind {
    /// The kinds this CPU supports, worst first.
    fn supported() -> Vec<IsaKind> {
        IsaKind::ALL
            .into_iter()
            .filter(|kind| kind.is_supported())
            .collect()
    }
}

/// [`Isa::new`] against an explicit list of what the CPU has, so that tests can drive the
/// unsupported case on any CPU.
fn check_in(kind: IsaKind, source: IsaSource, supported: &[IsaKind]) -> Result<Isa, IsaError> {
    if supported.contains(&kind) {
        Ok(Isa(kind))
    } else {
        Err(IsaError::Unsupported {
            isa: kind,
            requested_by: source,
        })
    }
}

/// [`Isa::from_env_value`] against an explicit list of what the CPU has (best last).
fn from_env_value_in(value: Option<&str>, supported: &[IsaKind]) -> Result<Isa, IsaError> {
    match value {
        // Empty is how shells spell "no preference" (`DEEPFM_ISA= cargo test`).
        None | Some("") => Ok(Isa(*supported.last().unwrap_or(&IsaKind::Portable))),
        Some(name) => match IsaKind::from_name(name) {
            Some(kind) => check_in(kind, IsaSource::Env, supported),
            None => Err(IsaError::Unknown {
                value: name.to_string(),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::{Isa, IsaError, IsaKind, IsaSource, check_in, from_env_value_in};

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
        for (kind, name) in IsaKind::ALL.into_iter().zip(IsaKind::NAMES) {
            assert_eq!(kind.name(), name);
            assert_eq!(IsaKind::from_name(name), Some(kind));
        }
    }

    // Issue 16: an unknown value (a capitalised name, an ISA the kernels do not have, a typo,
    // the old undocumented alias `scalar`) used to select the portable kernels silently.
    #[test]
    fn an_unknown_env_value_is_an_error_listing_the_valid_names() {
        let both = IsaKind::ALL;
        for value in [
            "AVX2", "avx-512", "avx512f", "avx-2", "scalar", "Portable", " avx2",
        ] {
            let err = from_env_value_in(Some(value), &both).unwrap_err();
            assert_eq!(
                err,
                IsaError::Unknown {
                    value: value.to_string()
                }
            );
            let message = err.to_string();
            assert!(
                message.contains("DEEPFM_ISA") && message.contains("portable, avx2, avx512"),
                "{message}"
            );
        }
    }

    #[test]
    fn a_known_env_value_the_cpu_lacks_is_an_error() {
        let err = from_env_value_in(Some("avx2"), &[IsaKind::Portable]).unwrap_err();
        assert_eq!(
            err,
            IsaError::Unsupported {
                isa: IsaKind::Avx2Fma,
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
        let all = IsaKind::ALL;
        let best = from_env_value_in(None, &all).map(Isa::kind);
        assert_eq!(best, Ok(IsaKind::Avx512));
        let avx2_on_avx512 = from_env_value_in(Some("avx2"), &all).map(Isa::kind);
        assert_eq!(avx2_on_avx512, Ok(IsaKind::Avx2Fma));
        let both = [IsaKind::Portable, IsaKind::Avx2Fma];
        let kind = |r: Result<Isa, IsaError>| r.map(Isa::kind);
        assert_eq!(kind(from_env_value_in(None, &both)), Ok(IsaKind::Avx2Fma));
        assert_eq!(
            kind(from_env_value_in(Some(""), &both)),
            Ok(IsaKind::Avx2Fma)
        );
        let portable_only = [IsaKind::Portable];
        assert_eq!(
            kind(from_env_value_in(None, &portable_only)),
            Ok(IsaKind::Portable)
        );
        let named = from_env_value_in(Some("portable"), &both);
        assert_eq!(kind(named), Ok(IsaKind::Portable));
        assert_eq!(
            kind(from_env_value_in(Some("avx2"), &both)),
            Ok(IsaKind::Avx2Fma)
        );
        // And the public function agrees with this CPU's list.
        assert_eq!(Isa::from_env_value(None), Ok(Isa::best()));
    }

    #[test]
    fn a_token_exists_only_for_what_the_cpu_supports() {
        assert_eq!(
            check_in(
                IsaKind::Avx2Fma,
                IsaSource::OpenOptions,
                &[IsaKind::Portable]
            ),
            Err(IsaError::Unsupported {
                isa: IsaKind::Avx2Fma,
                requested_by: IsaSource::OpenOptions
            })
        );
        let portable = check_in(IsaKind::Portable, IsaSource::Trainer, &[IsaKind::Portable]);
        assert_eq!(portable, Ok(Isa::portable()));
        for kind in IsaKind::ALL {
            let token = Isa::new(kind, IsaSource::OpenOptions);
            assert_eq!(token.is_ok(), kind.is_supported(), "{kind:?}");
            assert_eq!(
                Isa::available().iter().any(|i| i.kind() == kind),
                kind.is_supported()
            );
        }
    }
}
