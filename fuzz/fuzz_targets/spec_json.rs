//! Arbitrary UTF-8 → `ModelSpec::from_json`.
//!
//! Invariants for an accepted spec: `validate` agrees, `total_rows` is Ok and equals the sum of
//! the fields' rows, `row_offsets` are the running sums, `layer_shapes` chains from
//! `fields × D` through the hidden widths to one output, `tensor_shapes` has one entry per
//! section, and `to_json` round-trips to an equal spec and to the same text.

#![no_main]

use deepfm::ModelSpec;
use deepfm::format::tensor_shapes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = ModelSpec::from_json(text) else {
        return;
    };
    assert_eq!(spec.validate(), Ok(()));

    let rows = spec
        .total_rows()
        .expect("an accepted spec has a total row count");
    let sum: u128 = spec.fields.iter().map(|f| f.kind.rows() as u128).sum();
    assert_eq!(rows as u128, sum);
    let offsets = spec.row_offsets();
    assert_eq!(offsets.len(), spec.fields.len());
    let mut next = 0u64;
    for (f, &o) in spec.fields.iter().zip(&offsets) {
        assert_eq!(o, next);
        next += f.kind.rows();
    }

    let shapes = spec.layer_shapes();
    assert_eq!(shapes.len(), spec.hidden.len() + 1);
    let mut input = spec.fields.len() * spec.embedding_dim;
    assert_eq!(spec.mlp_input_width(), input);
    for (i, &(i_w, o_w)) in shapes.iter().enumerate() {
        assert_eq!(i_w, input);
        let want = spec.hidden.get(i).copied().unwrap_or(1);
        assert_eq!(o_w, want);
        input = o_w;
    }
    let _ = spec.mlp_macs_per_sample();
    assert_eq!(tensor_shapes(&spec).len(), 2 * spec.hidden.len() + 5);

    let json = spec.to_json();
    let again = ModelSpec::from_json(&json)
        .unwrap_or_else(|e| panic!("to_json output does not parse back: {e}\n{json}"));
    assert_eq!(again, spec, "round trip changed the spec: {json}");
    assert_eq!(again.to_json(), json, "to_json is not stable");
});
