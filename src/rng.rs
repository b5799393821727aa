//! The crate's seeded random number generator (xoshiro256++).
//!
//! Production code draws from it: the trainer's initialisation and dropout, the shuffling of
//! training data, random splits and negative sampling; so do the fixtures. A seed always gives
//! the same draws, so runs repeat.

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

/// A small seeded generator with the draws the crate needs.
pub struct Rng(Xoshiro256PlusPlus);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(Xoshiro256PlusPlus::seed_from_u64(seed))
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f32 {
        self.0.random::<f32>()
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.random_range(0..n)
    }

    /// The generator of epoch `epoch` of a run seeded with `seed` (data sources reshuffle
    /// with it, so epochs differ and runs repeat).
    pub fn for_epoch(seed: u64, epoch: usize) -> Self {
        Rng::new(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// Shuffles `items` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// 64 uniform random bits.
    pub fn bits(&mut self) -> u64 {
        self.0.random::<u64>()
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = 1.0 - self.0.random::<f64>();
        let u2 = self.0.random::<f64>();
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }
}
