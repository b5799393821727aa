use super::*;
use crate::kernels::qgemm16::emulated::EmulatedVnni;
use crate::kernels::quant::{ACT_MAX, MAX_DEPTH, PAIR_MAX, WEIGHT_MAX, quantize_rows};
use crate::rng::Rng;
use proptest::prelude::*;

fn random_panel(rng: &mut Rng, groups: usize) -> Vec<QLine> {
    (0..groups)
        .map(|_| {
            let mut line = QLine::default();
            // Any weights the pair rule allows: the first of a pair anywhere in ±127, the
            // second anywhere its partner leaves room for.
            for pair in line.0.chunks_exact_mut(2) {
                let limit = i32::from(WEIGHT_MAX);
                let first = rng.below(2 * limit as u64 + 1) as i32 - limit;
                let room = (PAIR_MAX - first.abs()).min(limit);
                let second = rng.below(2 * room as u64 + 1) as i32 - room;
                pair.copy_from_slice(&[first as i8, second as i8]);
            }
            line
        })
        .collect()
}

fn tile_on(path: Int8Path, a: &[u8], lda: usize, rows: usize, panel: &[QLine]) -> Vec<[i32; QNR]> {
    // SAFETY: the path is one this CPU has (`Int8Path::available`).
    dispatch_int8!(path, K => unsafe { tiles_with::<K>(a, lda, rows, panel) })
}

/// The sums of `rows` rows in tiles of `K::MR`.
///
/// # Safety
/// This CPU runs `K`'s instructions (emulated lanes run anywhere).
unsafe fn tiles_with<K: QGemmKernel>(
    a: &[u8],
    lda: usize,
    rows: usize,
    panel: &[QLine],
) -> Vec<[i32; QNR]> {
    let mut acc: Acc = [[i32::MIN; QNR]; MAX_MR];
    let mut out = Vec::new();
    let mut r0 = 0;
    while r0 < rows {
        let tile = K::MR.min(rows - r0);
        let depth = QK * panel.len();
        let a = &a[r0 * lda..(r0 + tile - 1) * lda + depth];
        // SAFETY: the caller's promise that this CPU runs `K`; `tile ≤ MR`, the weights keep
        // the pair rule and `a` holds `tile` rows `lda` apart of `depth` bytes.
        unsafe { K::tile(a, lda, tile, panel, &mut acc) };
        out.extend_from_slice(&acc[..tile]);
        r0 += tile;
    }
    out
}

/// [`tiles_with`] on the VNNI kernel's emulated lanes (any CPU).
fn emulated_tiles(a: &[u8], lda: usize, rows: usize, panel: &[QLine]) -> Vec<[i32; QNR]> {
    // SAFETY: emulated lanes run on any CPU.
    unsafe { tiles_with::<EmulatedVnni>(a, lda, rows, panel) }
}

fn reference_tiles(a: &[u8], lda: usize, rows: usize, panel: &[QLine]) -> Vec<[i32; QNR]> {
    let mut want = vec![[0i32; QNR]; rows];
    tile_ref(a, lda, rows, panel, &mut want);
    want
}

#[test]
fn the_paths_are_the_expected_ones() {
    let names: Vec<&str> = Int8Path::available().iter().map(|p| p.name()).collect();
    assert_eq!(names[0], "scalar");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        assert!(names.contains(&"avx2"), "{names:?}");
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vnni")
        && std::arch::is_x86_feature_detected!("avx512bw")
    {
        assert!(names.contains(&"avx512-vnni"), "{names:?}");
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avxvnni") && names.contains(&"avx2") {
        assert!(names.contains(&"avx-vnni"), "{names:?}");
    }
    // Linux lists `amx_int8` only where it enabled tile state: then the AMX kernels must be
    // granted and listed, last (a failed `arch_prctl` would leave them silently unused).
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    if names.contains(&"avx512-vnni") {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        if cpuinfo.split_whitespace().any(|flag| flag == "amx_int8") {
            assert_eq!(names.last(), Some(&"amx"), "{names:?}");
        }
    }
    eprintln!("int8 paths on this CPU: {names:?}");
}

#[test]
fn deepfm_int8_picks_any_path_this_cpu_has_and_refuses_the_others() {
    let isa = Isa::best();
    assert_eq!(Int8Path::from_env_value(isa, None), Ok(Int8Path::of(isa)));
    assert_eq!(
        Int8Path::from_env_value(isa, Some("")),
        Ok(Int8Path::of(isa))
    );
    for path in Int8Path::available() {
        assert_eq!(Int8Path::from_env_value(isa, Some(path.name())), Ok(path));
        assert_eq!(
            Int8Path::from_env_value(Isa::portable(), Some(path.name())),
            Ok(path)
        );
    }
    for name in ["AMX", "vnni", "avx512", "nonsense"] {
        let err = Int8Path::from_env_value(isa, Some(name)).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(&err, IsaError::Int8Path { value, .. } if value == name)
                && message.contains("DEEPFM_INT8")
                && message.contains("this CPU has scalar"),
            "{message}"
        );
    }
}

#[test]
fn worst_case_sums_never_saturate_on_any_path() {
    // Every activation 255 against weight pairs at the pair rule's edge (127 and 1, 64 and
    // 64, 1 and 127; then negated): each `vpmaddubsw` pair is ±255·128, the extreme an i16
    // must hold, and the sums reach ±255·64·k at the deepest allowed layer.
    let groups = MAX_DEPTH / QK;
    for sign in [1i8, -1] {
        let pairs = [[127i8, 1], [64, 64], [1, 127], [64, 64]];
        let mut line = QLine::default();
        for (c, pair) in line.0.chunks_exact_mut(2).enumerate() {
            pair.copy_from_slice(&pairs[c % pairs.len()].map(|w| sign * w));
        }
        let panel = vec![line; groups];
        let rows = MAX_MR;
        let a = vec![ACT_MAX; rows * QK * groups];
        let exact = i32::from(sign) * i32::from(ACT_MAX) * PAIR_MAX * (MAX_DEPTH / 2) as i32;
        for path in Int8Path::available() {
            let got = tile_on(path, &a, QK * groups, rows, &panel);
            assert!(
                got.iter().flatten().all(|&s| s == exact),
                "{} sign {sign}",
                path.name()
            );
        }
        let got = emulated_tiles(&a, QK * groups, rows, &panel);
        assert!(
            got.iter().flatten().all(|&s| s == exact),
            "emulated VNNI sign {sign}"
        );
    }
}

#[test]
fn a_pair_rounded_up_twice_is_brought_back_within_the_rule() {
    // The step is 1 (the pair's 128 / 128); both values sit on a half and round away from
    // zero, to 65 and 64 (sum 129) or −65 and −64, one past the rule: one must come down.
    for sign in [1.0f32, -1.0] {
        let q = QuantizedMatrix::quantize(&[sign * 64.5, sign * 63.5], &[0.0], 1, 2);
        assert_eq!(q.scales()[0], 1.0);
        let pair = [q.weight(0, 0), q.weight(0, 1)].map(|w| i32::from(w).abs());
        assert_eq!(pair[0] + pair[1], PAIR_MAX, "{pair:?}");
    }
}

/// The integer pair nearest to `scaled` (least squared error) that keeps the pair rule, by
/// trying every one.
fn nearest_valid_pair(scaled: [f32; 2]) -> f32 {
    let limit = i32::from(WEIGHT_MAX);
    let mut best = f32::INFINITY;
    for a in -limit..=limit {
        for b in -limit..=limit {
            if a.abs() + b.abs() <= PAIR_MAX {
                let e = (a as f32 - scaled[0]).powi(2) + (b as f32 - scaled[1]).powi(2);
                best = best.min(e);
            }
        }
    }
    best
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Quantized weights keep the pair rule, and are the nearest pairs that do: as near as the
    /// best of every pair of integers tried.
    #[test]
    fn quantized_weights_are_the_nearest_that_keep_the_pair_rule(
        k in 1usize..24,
        seed: u64,
    ) {
        let mut rng = Rng::new(seed);
        // Large weights side by side are what break the rule: draw many near the maximum.
        let w: Vec<f32> = (0..k)
            .map(|_| if rng.below(2) == 0 { rng.uniform() * 2.0 - 1.0 } else { 1.0 - 0.2 * rng.uniform() })
            .collect();
        let q = QuantizedMatrix::quantize(&w, &[0.0], 1, k);
        // The step is 8 bits of the largest weight, or coarser so that the largest pair fits
        // the rule.
        let max = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let pair = w.chunks(2).map(|p| p.iter().map(|v| v.abs()).sum::<f32>()).fold(0.0, f32::max);
        let step = q.scales()[0];
        prop_assert_eq!(step, (max / f32::from(WEIGHT_MAX)).max(pair / PAIR_MAX as f32));
        let inverse = 1.0 / step;
        for i in (0..k).step_by(2) {
            let got = [q.weight(0, i), if i + 1 < k { q.weight(0, i + 1) } else { 0 }];
            prop_assert!(i32::from(got[0]).abs() + i32::from(got[1]).abs() <= PAIR_MAX);
            let scaled = [w[i] * inverse, w.get(i + 1).map_or(0.0, |v| v * inverse)];
            let err = (f32::from(got[0]) - scaled[0]).powi(2) + (f32::from(got[1]) - scaled[1]).powi(2);
            prop_assert!(err <= nearest_valid_pair(scaled) + 1e-4, "pair {i}: {got:?} for {scaled:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn every_path_forms_the_reference_sums_exactly(
        rows in 1usize..30,
        groups in prop_oneof![0usize..8, 8usize..300],
        pad in 0usize..3,
        seed: u64,
    ) {
        let mut rng = Rng::new(seed);
        let panel = random_panel(&mut rng, groups);
        let lda = QK * (groups + pad);
        let a: Vec<u8> = (0..rows * lda).map(|_| rng.below(u64::from(ACT_MAX) + 1) as u8).collect();
        let want = reference_tiles(&a, lda, rows, &panel);
        for path in Int8Path::available() {
            prop_assert_eq!(&tile_on(path, &a, lda, rows, &panel), &want, "{}", path.name());
        }
        // The VNNI kernel's logic (four sets of sums for few rows, their remainders) on
        // emulated lanes, on any CPU.
        prop_assert_eq!(&emulated_tiles(&a, lda, rows, &panel), &want, "emulated VNNI");
    }

    #[test]
    fn layers_are_bit_identical_across_paths_and_within_the_quantization_bound(
        rows in 1usize..40,
        k in 1usize..300,
        n in 1usize..70,
        relu: bool,
        zeros in 0.0f32..0.9,
        seed: u64,
    ) {
        let mut rng = Rng::new(seed);
        let x: Vec<f32> = (0..rows * k).map(|_| if rng.uniform() < zeros { 0.0 } else { rng.normal() }).collect();
        let w: Vec<f32> = (0..n * k).map(|_| rng.normal() * 0.1).collect();
        let bias: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
        let q = QuantizedMatrix::quantize(&w, &bias, n, k);
        let lda = QK * q.groups() + QK;
        let mut a = vec![0u8; rows * lda];
        let mut params = vec![RowQuant::default(); rows];
        quantize_rows(&x, k, rows, &mut a, lda, &mut params);
        let ldc = n + 3;
        let mut first: Option<Vec<f32>> = None;
        for path in Int8Path::available() {
            let mut c = vec![f32::NAN; rows * ldc];
            qgemm_bias_act(path, &a, lda, &params, rows, &q, relu, &mut c, ldc);
            for r in 0..rows {
                // Columns past `n` are not written.
                prop_assert!(c[r * ldc + n..(r + 1) * ldc].iter().all(|v| v.is_nan()));
            }
            match &first {
                None => first = Some(c),
                Some(f) => prop_assert_eq!(f.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    c.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "{}", path.name()),
            }
        }
        // The VNNI path's loop, epilogue and quantization on emulated lanes, on any CPU: the
        // same bytes, row parameters and outputs.
        let mut emulated_a = vec![0u8; rows * lda];
        let mut emulated_params = vec![RowQuant::default(); rows];
        // SAFETY: emulated lanes run on any CPU; the buffers hold `rows` rows.
        unsafe { EmulatedVnni::quantize(&x, k, rows, &mut emulated_a, lda, &mut emulated_params) };
        prop_assert_eq!(&emulated_a, &a);
        prop_assert_eq!(&emulated_params, &params);
        let mut emulated = vec![f32::NAN; rows * ldc];
        let mut call = LayerCall { a: &a, lda, params: &params, rows, w: &q, relu, c: &mut emulated, ldc };
        call.check();
        // SAFETY: emulated lanes run on any CPU; the call was checked.
        unsafe { EmulatedVnni::layer(&mut call) };
        let c = first.unwrap();
        prop_assert_eq!(c.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            emulated.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "emulated VNNI");
        // Against the exact f64 layer: each product x·w is off by at most
        // |x|·s_w/2 + |w|·s_x/2 + s_x·s_w/4 (each factor rounded to half a step), plus f32
        // rounding of the epilogue.
        for r in 0..rows {
            let s_x = params[r].scale as f64;
            for o in 0..n {
                let s_w = q.scales()[o] as f64;
                let (mut exact, mut bound) = (bias[o] as f64, 0.0f64);
                for kk in 0..k {
                    let (xv, wv) = (x[r * k + kk] as f64, w[o * k + kk] as f64);
                    exact += xv * wv;
                    bound += xv.abs() * s_w / 2.0 + wv.abs() * s_x / 2.0 + s_x * s_w / 4.0;
                }
                if relu { exact = exact.max(0.0); }
                let got = c[r * ldc + o] as f64;
                let slack = 1e-5 * (1.0 + exact.abs() + bound);
                prop_assert!((got - exact).abs() <= bound + slack,
                    "row {r} col {o}: {got} vs {exact}, bound {bound}");
            }
        }
    }

    #[test]
    fn quantized_rows_and_weights_round_trip_within_half_a_step(
        width in 1usize..200, pad in 0usize..3, positive: bool, seed: u64,
    ) {
        let mut rng = Rng::new(seed);
        let x: Vec<f32> = (0..width)
            .map(|i| if i % 5 == 0 { 0.0 } else if positive { rng.normal().abs() } else { rng.normal() })
            .collect();
        let stride = QK * (width.div_ceil(QK) + pad);
        let mut q = vec![255u8; stride];
        let mut p = [RowQuant::default()];
        quantize_rows(&x, width, 1, &mut q, stride, &mut p);
        let [p] = p;
        if x.iter().any(|&v| v != 0.0) {
            // The row's range maps onto every level: its ends are 0 and ACT_MAX.
            prop_assert_eq!(q[..width].iter().max(), Some(&ACT_MAX));
            prop_assert_eq!(q[..width].iter().min(), Some(&0));
        }
        prop_assert!(q[width..].iter().all(|&v| i32::from(v) == p.zero));
        if positive { prop_assert_eq!(p.zero, 0); }
        for (i, &v) in x.iter().enumerate() {
            let back = p.scale * (i32::from(q[i]) - p.zero) as f32;
            if v == 0.0 { prop_assert_eq!(back, 0.0, "zero must be exact"); }
            prop_assert!((back - v).abs() <= p.scale * 0.5001 + 1e-6, "{} vs {}", back, v);
        }
        let n = 1 + width % 37;
        let w: Vec<f32> = (0..n * width).map(|_| rng.normal()).collect();
        let m = QuantizedMatrix::quantize(&w, &vec![0.0; n], n, width);
        for o in 0..n {
            let s = m.scales()[o];
            let mut sum = 0i32;
            for kk in 0..width {
                let qw = m.weight(o, kk);
                prop_assert!(qw != i8::MIN);
                sum += i32::from(qw);
                prop_assert!((s * f32::from(qw) - w[o * width + kk]).abs() <= s * 0.5001 + 1e-6);
            }
            prop_assert_eq!(m.column_sums()[o], sum);
        }
    }
}

#[test]
fn an_all_zero_row_or_column_scores_its_bias() {
    let (n, k) = (3, 5);
    let mut w = vec![0.5f32; n * k];
    w[k..2 * k].fill(0.0);
    let bias = [0.25, -0.5, 1.0];
    let q = QuantizedMatrix::quantize(&w, &bias, n, k);
    let x = [0.0f32; 5];
    let mut a = vec![0u8; 8];
    let mut p = [RowQuant::default()];
    quantize_rows(&x, k, 1, &mut a, 8, &mut p);
    for path in Int8Path::available() {
        let mut c = [0.0f32; 3];
        qgemm_bias_act(path, &a, 8, &p, 1, &q, false, &mut c, 3);
        assert_eq!(c, bias, "{}", path.name());
    }
}

#[test]
fn a_nan_or_infinite_input_gives_nan_outputs_on_every_path_not_numbers() {
    let (n, k) = (20, 9);
    let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.37).sin()).collect();
    let q = QuantizedMatrix::quantize(&w, &vec![0.5; n], n, k);
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        for at in [0, 4, 8] {
            let mut x = vec![0.25f32; k];
            x[at] = bad;
            let lda = QK * q.groups();
            for path in Int8Path::available() {
                let mut a = vec![0u8; lda];
                let mut p = [RowQuant::default()];
                quantize_rows_on(path, &x, k, 1, &mut a, lda, &mut p);
                let mut c = vec![0.0f32; n];
                qgemm_bias_act(path, &a, lda, &p, 1, &q, false, &mut c, n);
                assert!(
                    c.iter().all(|v| v.is_nan()),
                    "{} {bad} at {at}: {c:?}",
                    path.name()
                );
            }
        }
    }
}
