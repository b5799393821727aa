//! Gradients of the embedding rows a batch touched, accumulated per distinct row.
//!
//! A batch of 4,096 Criteo-like samples touches about 160k (row, field) pairs but the table has
//! millions of rows: gradients are kept per distinct row, in the order rows are first seen, so
//! that updates (and therefore model files) do not depend on hash order or thread count.
//!
//! There is one [`RowGrads`] per field, keyed by the id within the field: fields own disjoint
//! row ranges, so fields are accumulated and updated in parallel, each by one task, without
//! any two tasks touching the same row.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A multiplicative hash for row numbers (they are not attacker-chosen beyond being in range:
/// ids are validated against the vocabulary before they get here).
#[derive(Default)]
pub(crate) struct RowHasher(u64);

impl Hasher for RowHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ (n >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Per-row gradient of the embedding vector (`dim` floats) and of the first-order weight, for
/// the rows of one field (keys are ids within the field).
#[derive(Debug)]
pub(crate) struct RowGrads {
    dim: usize,
    slot_of: HashMap<u64, u32, BuildHasherDefault<RowHasher>>,
    /// Row of each slot, in order of first appearance.
    pub rows: Vec<u64>,
    /// `rows.len() × dim` embedding gradients.
    pub grad: Vec<f32>,
    /// First-order weight gradient per slot.
    pub linear: Vec<f32>,
}

impl RowGrads {
    /// Empty, for rows of `dim` floats.
    pub fn new(dim: usize) -> Self {
        RowGrads {
            dim,
            slot_of: HashMap::default(),
            rows: Vec::new(),
            grad: Vec::new(),
            linear: Vec::new(),
        }
    }

    /// Forgets every row, keeping the memory.
    pub fn clear(&mut self) {
        self.slot_of.clear();
        self.rows.clear();
        self.grad.clear();
        self.linear.clear();
    }

    /// Adds `weight · g` to `row`'s embedding gradient and `weight · g_linear` to its
    /// first-order gradient.
    pub fn add(&mut self, row: u64, weight: f32, g: &[f32], g_linear: f32) {
        let dim = self.dim;
        let slot = *self.slot_of.entry(row).or_insert_with(|| {
            self.rows.push(row);
            self.grad.resize(self.grad.len() + dim, 0.0);
            self.linear.push(0.0);
            (self.rows.len() - 1) as u32
        }) as usize;
        let dst = &mut self.grad[slot * dim..(slot + 1) * dim];
        for (d, &s) in dst.iter_mut().zip(g) {
            *d += weight * s;
        }
        self.linear[slot] += weight * g_linear;
    }
}

/// Splits `table` (rows of `dim` values, fields stacked from `offsets[f]`) into one mutable
/// slice per field. An empty table (state an optimizer does not keep) gives empty slices.
pub(crate) fn split_fields<'a>(
    mut table: &'a mut [f32],
    offsets: &[u64],
    total_rows: usize,
    dim: usize,
) -> Vec<&'a mut [f32]> {
    let mut parts = Vec::with_capacity(offsets.len());
    if table.is_empty() {
        parts.resize_with(offsets.len(), Default::default);
        return parts;
    }
    for (f, &start) in offsets.iter().enumerate() {
        let end = offsets.get(f + 1).map_or(total_rows, |&e| e as usize);
        let (part, rest) = table.split_at_mut((end - start as usize) * dim);
        parts.push(part);
        table = rest;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulates_per_row_in_first_seen_order() {
        let mut g = RowGrads::new(2);
        g.add(7, 1.0, &[1.0, 2.0], 0.5);
        g.add(3, 2.0, &[1.0, 1.0], 1.0);
        g.add(7, 0.5, &[2.0, 2.0], 1.0);
        assert_eq!(g.rows, vec![7, 3]);
        assert_eq!(g.grad, vec![2.0, 3.0, 2.0, 2.0]);
        assert_eq!(g.linear, vec![1.0, 2.0]);
        g.clear();
        assert!(g.rows.is_empty());
        g.add(3, 1.0, &[1.0, 1.0], 1.0);
        assert_eq!((g.rows.clone(), g.grad.clone()), (vec![3], vec![1.0, 1.0]));
    }
}
