//! `deepfm train --data FILE --schema S.json` and `deepfm predict --data FILE` end to end on a
//! planted click file: the model learns the planted signal, prediction reads raw tokens with the
//! saved preprocessing, and bad lines are named or, when asked, skipped and counted.

use deepfm::rng::Rng;
use std::fmt::Write as _;
use std::process::{Command, Output};

fn deepfm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deepfm"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const SCHEMA: &str = r#"{"label": "clicked",
  "fields": [{"name": "site", "kind": "categorical"},
             {"name": "device", "kind": "categorical", "hash_buckets": 64},
             {"name": "price", "kind": "numeric", "transform": "log1p"},
             {"name": "tags", "kind": "multi_hot", "sep": "|"}]}"#;

/// `rows` lines whose click probability is planted in site, device and tags; returns the file
/// text and the planted probabilities.
fn planted(rows: usize, seed: u64, header: &str) -> (String, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let site_effect: Vec<f32> = (0..40).map(|_| 1.5 * rng.normal()).collect();
    let mut rng = Rng::new(seed + 1000);
    let mut text = format!("{header}\n");
    let mut truth = Vec::new();
    for _ in 0..rows {
        let site = rng.below(40) as usize;
        let device = ["ios", "android", "web"][rng.below(3) as usize];
        let price = rng.below(1000);
        let tags: Vec<&str> = ["news", "sport", "tech", "food"]
            .into_iter()
            .filter(|_| rng.below(2) == 0)
            .collect();
        let logit = site_effect[site]
            + if device == "web" { -1.0 } else { 0.5 }
            + if tags.contains(&"sport") { 1.0 } else { -0.5 };
        let p = 1.0 / (1.0 + (-logit).exp());
        let y = u8::from(rng.uniform() < p);
        // Columns in another order than the schema's, plus one the schema ignores.
        writeln!(
            text,
            "{price},\"s{site}.com\",{y},{device},{},x",
            tags.join("|")
        )
        .unwrap();
        truth.push(p);
    }
    (text, truth)
}

#[test]
fn trains_from_a_schema_and_predicts_raw_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    std::fs::write(path("schema.json"), SCHEMA).unwrap();
    let header = "price,site,clicked,device,tags,other";
    let (train, _) = planted(20_000, 7, header);
    std::fs::write(path("train.csv"), &train).unwrap();
    // Test file without the label column: prediction does not need it.
    let (test, truth) = planted(2_000, 7, header);
    let unlabelled: String = test
        .lines()
        .map(|l| {
            let mut c: Vec<&str> = l.split(',').collect();
            c.remove(2);
            c.join(",") + "\n"
        })
        .collect();
    std::fs::write(path("test.csv"), unlabelled).unwrap();
    ok(&deepfm(&[
        "train",
        "--data",
        &path("train.csv"),
        "--schema",
        &path("schema.json"),
        "--out",
        &path("m.dfm"),
        "--hidden",
        "16",
        "--dim",
        "8",
        "--epochs",
        "3",
        "--seed",
        "1",
    ]));
    // One file: the preprocessing travels in the model's metadata section.
    let files = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(files, 4, "schema, train, test and the model only");
    let stdout = ok(&deepfm(&[
        "predict",
        "--model",
        &path("m.dfm"),
        "--data",
        &path("test.csv"),
    ]));
    let predicted: Vec<f32> = stdout.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(predicted.len(), truth.len());
    // The model recovers the planted probabilities (correlation with the truth).
    let n = truth.len() as f64;
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let (mp, mt) = (mean(&predicted), mean(&truth));
    let cov: f64 = (predicted.iter().zip(&truth))
        .map(|(&p, &t)| (p as f64 - mp) * (t as f64 - mt))
        .sum();
    let var = |v: &[f32], m: f64| v.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>();
    let corr = cov / (var(&predicted, mp) * var(&truth, mt)).sqrt();
    assert!(
        corr > 0.8,
        "correlation with the planted probabilities {corr:.3}"
    );
}

#[test]
fn bad_lines_stop_training_or_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    std::fs::write(path("schema.json"), SCHEMA).unwrap();
    let (mut train, _) = planted(500, 3, "price,site,clicked,device,tags,other");
    train.push_str("12,s1.com,maybe,ios,news,x\n7,s2.com,1,ios\n");
    std::fs::write(path("train.csv"), &train).unwrap();
    let args = |skip: bool| {
        let mut a = vec![
            "train".to_string(),
            "--data".into(),
            path("train.csv"),
            "--schema".into(),
            path("schema.json"),
            "--out".into(),
            path("m.dfm"),
            "--hidden".into(),
            "4".into(),
            "--epochs".into(),
            "1".into(),
        ];
        if skip {
            a.push("--skip-bad-lines".into());
        }
        a
    };
    let strict = Command::new(env!("CARGO_BIN_EXE_deepfm"))
        .args(args(false))
        .output()
        .unwrap();
    assert!(!strict.status.success());
    let stderr = String::from_utf8_lossy(&strict.stderr);
    assert!(stderr.contains("line 502, column 3 (clicked)"), "{stderr}");
    let lenient = Command::new(env!("CARGO_BIN_EXE_deepfm"))
        .args(args(true))
        .output()
        .unwrap();
    ok(&lenient);
    let stderr = String::from_utf8_lossy(&lenient.stderr);
    assert!(stderr.contains("skipped 2 of 503 lines"), "{stderr}");
}
