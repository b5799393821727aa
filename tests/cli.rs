//! The `deepfm` binary end to end: score (file and stdin, good and bad input), export/import,
//! inspect, bench --json, install under a running scorer.

use deepfm::Model;
use deepfm::data::tsv::push_line;
use deepfm::reference::{max_relative_error, score_reference};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn deepfm(args: &[&str], stdin: Option<&str>) -> Output {
    deepfm_env(args, stdin, &[])
}

/// As [`deepfm`], with extra environment variables for the child.
fn deepfm_env(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_deepfm"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let input = stdin.unwrap_or("").to_string();
    let mut pipe = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || pipe.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn random_model(dir: &Path) -> String {
    let path = dir.join("m.dfm").to_string_lossy().into_owned();
    let out = deepfm(
        &[
            "random",
            "--shape",
            "mixed-small",
            "--out",
            &path,
            "--seed",
            "9",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    path
}

/// Fields of mixed-small: user (categorical 500), age (numeric), genres (multi-hot 18, mean),
/// tags (multi-hot 40, sum).
const GOOD: &str = "3\t0.5\t1,2\t\n499\t2.25\t\t39\n0\t-1\t17\t0,0,5\r\n";

#[test]
fn score_prints_one_score_per_line_matching_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = random_model(dir.path());
    let tsv = dir.path().join("in.tsv");
    std::fs::write(&tsv, GOOD).unwrap();
    let from_file = deepfm(
        &[
            "score",
            "--model",
            &model_path,
            "--input",
            tsv.to_str().unwrap(),
        ],
        None,
    );
    assert!(from_file.status.success(), "{}", text(&from_file.stderr));
    let from_stdin = deepfm(
        &["score", "--model", &model_path, "--input", "-"],
        Some(GOOD),
    );
    assert_eq!(text(&from_file.stdout), text(&from_stdin.stdout));

    let scores: Vec<f32> = text(&from_file.stdout)
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let model = Model::open(&model_path).unwrap();
    let mut batch = deepfm::BatchBuf::new(model.spec());
    let mut row = Vec::new();
    for (i, line) in GOOD.lines().enumerate() {
        push_line(model.spec(), line, i + 1, &mut batch, &mut row).unwrap();
    }
    assert_eq!(scores.len(), 3);
    assert!(max_relative_error(&scores, &score_reference(&model, &batch)) <= 1e-5);
}

#[test]
fn bad_input_names_line_and_field_and_prints_no_score() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = random_model(dir.path());
    for (input, needle) in [
        (
            "3\t0.5\t1\t\n3\t0.5\t18\t\n",
            "line 2, field genres: id 18 is outside 0..18",
        ),
        ("3\tNaN\t1\t\n", "line 1, field age"),
        (
            "3\t0.5\t1\n",
            "line 1, field (line): 3 columns, the model has 4 fields",
        ),
        ("x\t0.5\t1\t\n", "line 1, field user"),
    ] {
        let out = deepfm(
            &["score", "--model", &model_path, "--input", "-"],
            Some(input),
        );
        assert!(!out.status.success(), "{input:?} was accepted");
        assert!(
            text(&out.stderr).contains(needle),
            "{input:?}: {}",
            text(&out.stderr)
        );
        assert!(
            out.stdout.is_empty(),
            "{input:?} printed {}",
            text(&out.stdout)
        );
    }
    let out = deepfm(
        &["score", "--model", "/nonexistent.dfm", "--input", "-"],
        Some(""),
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("/nonexistent.dfm"));
}

// Issue 16: an unknown `DEEPFM_ISA` used to select the portable kernels silently (half the
// speed on an AVX2 CPU, and `scalar` was an undocumented alias of them).
#[test]
fn an_unknown_deepfm_isa_is_an_error_listing_the_valid_names() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = random_model(dir.path());
    let score = ["score", "--model", &model_path, "--input", "-"];
    for value in ["AVX2", "avx-512", "scalar", "portble"] {
        let out = deepfm_env(&score, Some(GOOD), &[("DEEPFM_ISA", value)]);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "DEEPFM_ISA={value} was accepted");
        assert!(
            stderr.contains(&format!("DEEPFM_ISA={value:?}"))
                && stderr.contains("portable, avx2, avx512"),
            "DEEPFM_ISA={value}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "DEEPFM_ISA={value} printed scores");
    }
    // The documented name still works, and so does an empty value (no preference).
    for value in ["portable", ""] {
        let out = deepfm_env(&score, Some(GOOD), &[("DEEPFM_ISA", value)]);
        assert!(
            out.status.success(),
            "DEEPFM_ISA={value:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout).lines().count(), 3, "DEEPFM_ISA={value:?}");
    }
}

#[test]
fn export_import_inspect_and_bench() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = random_model(dir.path());
    let weights = dir.path().join("w.safetensors");
    let spec = dir.path().join("s.json");
    let copy = dir.path().join("copy.dfm");
    let (w, s, c) = (
        weights.to_str().unwrap(),
        spec.to_str().unwrap(),
        copy.to_str().unwrap(),
    );
    assert!(
        deepfm(
            &[
                "export",
                "--model",
                &model_path,
                "--weights",
                w,
                "--spec",
                s
            ],
            None
        )
        .status
        .success()
    );
    assert!(
        deepfm(&["import", "--weights", w, "--spec", s, "--out", c], None)
            .status
            .success()
    );
    assert_eq!(
        std::fs::read(&model_path).unwrap(),
        std::fs::read(&copy).unwrap()
    );

    let out = deepfm(&["inspect", c, "--verify"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    for needle in [
        "embedding",
        "mlp.1.weight",
        "out.bias",
        "verify: every section matches",
    ] {
        assert!(
            shown.contains(needle),
            "inspect output lacks {needle}: {shown}"
        );
    }

    let out = deepfm(
        &[
            "bench",
            "--model",
            c,
            "--batch",
            "16",
            "--seconds",
            "0.2",
            "--json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let last = stdout.lines().last().unwrap();
    let json: serde_json::Value = serde_json::from_str(last).unwrap();
    assert!(json["samples_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(json["batch"], 16);
    assert_eq!(json["threads"], 1);
}

/// `train` on a labelled TSV writes a model that `score` reads; a clicked id must score
/// above an unclicked one; a bad line is an error naming the line.
#[test]
fn train_then_score() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.json");
    std::fs::write(
        &spec,
        r#"{"fields":[{"name":"ad","kind":"categorical","vocab":4},{"name":"x","kind":"numeric"}],
            "embedding_dim":4,"hidden":[8],"output":"sigmoid"}"#,
    )
    .unwrap();
    // Ad 0 is clicked half the time, ad 3 never.
    let lines: String = (0..2000)
        .map(|i| {
            format!(
                "{}\t{}\t{}\n",
                (i % 4 == 0) as u8,
                i % 4 == 0 || i % 4 == 1,
                i % 7
            )
        })
        .map(|l| l.replace("true", "0").replace("false", "3"))
        .collect();
    let data = dir.path().join("train.tsv");
    std::fs::write(&data, &lines).unwrap();
    let model = dir.path().join("m.dfm");
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let out = deepfm(
        &[
            "train",
            "--data",
            &s(&data),
            "--spec",
            &s(&spec),
            "--valid",
            &s(&data),
            "--out",
            &s(&model),
            "--epochs",
            "3",
            "--batch",
            "64",
            "--lr",
            "0.01",
            "--threads",
            "1",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("valid loss"),
        "{}",
        text(&out.stderr)
    );
    let out = deepfm(
        &["score", "--model", &s(&model), "--input", "-"],
        Some("0\t1\n3\t1\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let scores: Vec<f32> = text(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert!(scores[0] > 0.3 && scores[1] < 0.1, "{scores:?}");

    // Without --valid, early stopping validates on lines held out of --data (10%, by hash);
    // --patience 0 holds nothing out; --refit then trains again on every line (off by default
    // for --data).
    let (data_path, spec_path, model_path) = (s(&data), s(&spec), s(&model));
    let quick = [
        "train",
        "--data",
        &data_path,
        "--spec",
        &spec_path,
        "--out",
        &model_path,
        "--epochs",
        "2",
        "--threads",
        "1",
    ];
    for (extra, held_out, refit) in [
        (&[][..], true, false),
        (&["--patience", "0"][..], false, false),
        (&["--refit"][..], true, true),
        (&["--patience", "0", "--refit"][..], false, false),
    ] {
        let out = deepfm(&[&quick[..], extra].concat(), None);
        let err = text(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert_eq!(err.contains("holding out 10.0%"), held_out, "{err}");
        assert_eq!(err.contains("valid loss"), held_out, "{err}");
        assert_eq!(err.contains("training again on all of"), refit, "{err}");
        let said = text(&out.stdout);
        assert_eq!(said.contains("refitted: "), refit, "{said}");
    }
    // --json: a summary as the last line, for --data as for --ratings.
    let out = deepfm(&[&quick[..], &["--refit", "--json"]].concat(), None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    let summary: serde_json::Value = serde_json::from_str(said.lines().last().unwrap())
        .unwrap_or_else(|e| panic!("{e}: {said}"));
    assert_eq!(summary["epochs"], 2, "{said}");
    assert!(summary["best_valid_loss"].as_f64().unwrap() > 0.0, "{said}");
    let best = summary["best_epoch"].as_u64().unwrap();
    assert_eq!(summary["refit_epochs"].as_u64(), Some(best), "{said}");

    std::fs::write(&data, "1\t0\t1\n1\t9\t1\n").unwrap();
    let out = deepfm(
        &[
            "train",
            "--data",
            &s(&data),
            "--spec",
            &s(&spec),
            "--out",
            &s(&model),
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("line 2"),
        "{}",
        text(&out.stderr)
    );
}

/// The recommender commands: `train --ratings` (string ids, a header, CRLF), `predict`,
/// `recommend`, `eval`.
#[test]
fn recommender_commands() {
    let dir = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_string_lossy().into_owned();
    // Users like the items whose number has their parity.
    let mut csv = String::from("user,item,rating\r\n");
    for u in 0..30 {
        for i in 0..40 {
            if (u * 7 + i * 3) % 5 < 3 {
                let r = if (u + i) % 2 == 0 { 5 } else { 1 };
                csv.push_str(&format!("u{u},item-{i},{r}\r\n"));
            }
        }
    }
    let ratings = dir.path().join("ratings.csv");
    std::fs::write(&ratings, &csv).unwrap();
    let model = dir.path().join("m.dfm");
    let out = deepfm(
        &[
            "train",
            "--ratings",
            &s(&ratings),
            "--out",
            &s(&model),
            "--epochs",
            "30",
            "--embedding-dim",
            "8",
            "--deep-layers",
            "16,8",
            "--dropout",
            "0",
            "--use-bn",
            "false",
            "--threads",
            "1",
            "--json",
            "--batch-size",
            "32",
            "--learning-rate",
            "0.01",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(text(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(summary["task"], "rating");
    assert_eq!(summary["users"], 30);
    // One file: the id maps are in its metadata section.
    assert!(!dir.path().join("m.dfm.meta.json").exists());
    let file = deepfm::format::ModelFile::open(&model).unwrap();
    assert!(file.metadata().unwrap().is_some());

    let out = deepfm(
        &["eval", "--model", &s(&model), "--ratings", &s(&ratings)],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rmse: f64 = text(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(rmse < 1.0, "training RMSE {rmse} on ratings of 1 and 5");

    let out = deepfm(
        &["predict", "--model", &s(&model), "--pairs", "-"],
        Some("u0,item-2\nu0,item-1\nstranger,item-2\n"),
    );
    // `-` is not a path the detector reads: predict takes a file.
    assert!(!out.status.success());
    let pairs = dir.path().join("pairs.csv");
    std::fs::write(&pairs, "u0,item-2\nu0,item-1\nstranger,item-2\n").unwrap();
    let out = deepfm(
        &["predict", "--model", &s(&model), "--pairs", &s(&pairs)],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let p: Vec<f32> = text(&out.stdout)
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(p.len(), 3);
    assert!(p[0] > p[1] + 1.0, "{p:?}");

    let out = deepfm(
        &[
            "recommend",
            "--model",
            &s(&model),
            "--user",
            "u0",
            "--top-k",
            "3",
            "--json",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let recs: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(recs.as_array().unwrap().len(), 3);
    // Seen items are excluded: u0 rated every item i with (3i) % 5 < 3.
    for r in recs.as_array().unwrap() {
        let i: u32 = r["item"].as_str().unwrap()[5..].parse().unwrap();
        assert!((3 * i) % 5 >= 3, "recommended a seen item {i}");
    }
}

/// A header line is never scored as a pair: `predict` prints one line per sample, whatever the
/// pairs file starts with; a header is detected the same way by `train`, `predict` and `eval`
/// (and the model remembers its training columns); `--header yes|no` overrides; a skipped
/// header is said on stderr.
#[test]
fn headers_are_detected_alike_and_never_scored() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };
    // Custom column names: detected in training because the rating column is a word.
    let mut tsv = String::from("who\twhat\tstars\n");
    for u in 0..20 {
        for i in 0..10 {
            tsv.push_str(&format!("{u}\t{i}\t{}\n", 1 + (u + i) % 5));
        }
    }
    let ratings = write("train.tsv", &tsv);
    let model = dir.path().join("m.dfm").to_string_lossy().into_owned();
    let out = deepfm(
        &[
            "train",
            "--ratings",
            &ratings,
            "--out",
            &model,
            "--epochs",
            "1",
            "--dim",
            "4",
            "--hidden",
            "8",
            "--threads",
            "1",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("line 1 read as a header"),
        "{}",
        text(&out.stderr)
    );
    let samples = 7;
    let body: String = (0..samples).map(|k| format!("{k}\t{}\n", k % 10)).collect();
    let predict = |pairs: &str, extra: &[&str]| {
        let out = deepfm(
            &[&["predict", "--model", &model, "--pairs", pairs][..], extra].concat(),
            None,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        (text(&out.stdout).lines().count(), text(&out.stderr))
    };
    // The model's own column names (string-like, only known from training), common names
    // above numbers, typed RecBole names: each one header, `samples` predictions.
    for header in [
        "who\twhat\n",
        "user_id\titem_id\n",
        "user_id:token\titem_id:token\n",
    ] {
        let pairs = write("pairs.tsv", &format!("{header}{body}"));
        let (lines, stderr) = predict(&pairs, &[]);
        assert_eq!(lines, samples, "{header:?}: {stderr}");
        assert!(stderr.contains("read as a header"), "{header:?}: {stderr}");
        // --header no scores the first line too (two unknown ids): one line more.
        assert_eq!(
            predict(&pairs, &["--header", "no"]).0,
            samples + 1,
            "{header:?}"
        );
    }
    // No header: nothing skipped, nothing said; --header yes skips the first line.
    let pairs = write("plain.tsv", &body);
    let (lines, stderr) = predict(&pairs, &[]);
    assert_eq!(lines, samples);
    assert!(!stderr.contains("header"), "{stderr}");
    assert_eq!(predict(&pairs, &["--header", "yes"]).0, samples - 1);
    // eval reads the training file the way train did.
    let out = deepfm(&["eval", "--model", &model, "--ratings", &ratings], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("(200 ratings)"),
        "{}",
        text(&out.stdout)
    );
    let out = deepfm(
        &[
            "eval",
            "--model",
            &model,
            "--ratings",
            &ratings,
            "--header",
            "no",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("line 1"),
        "{}",
        text(&out.stderr)
    );
}

/// `train --checkpoint C`, then `--resume` with more epochs: the same model file as one
/// uninterrupted run, for `--data` and for `--ratings`. A damaged checkpoint stops the command
/// with a message; `--resume` needs `--checkpoint`.
#[test]
fn train_checkpoint_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let spec = dir.path().join("spec.json");
    std::fs::write(
        &spec,
        r#"{"fields":[{"name":"ad","kind":"categorical","vocab":4},{"name":"x","kind":"numeric"}],
            "embedding_dim":4,"hidden":[8],"output":"sigmoid"}"#,
    )
    .unwrap();
    let lines: String = (0..600)
        .map(|i| format!("{}\t{}\t{}\n", (i % 3 == 0) as u8, i % 4, i % 7))
        .collect();
    let data = dir.path().join("train.tsv");
    std::fs::write(&data, &lines).unwrap();
    let mut csv = String::new();
    for u in 0..12 {
        for i in 0..15 {
            if (u + i) % 3 != 0 {
                csv.push_str(&format!("u{u},i{i},{}\n", 1 + (u * i) % 5));
            }
        }
    }
    let ratings = dir.path().join("ratings.csv");
    std::fs::write(&ratings, &csv).unwrap();
    let ckpt = dir.path().join("c.ckpt");
    let (data, spec, ratings) = (s(&data), s(&spec), s(&ratings));
    let inputs: [&[&str]; 2] = [
        &[
            "--data",
            &data,
            "--spec",
            &spec,
            "--valid",
            &data,
            "--patience",
            "5",
        ],
        &[
            "--ratings",
            &ratings,
            "--dim",
            "4",
            "--hidden",
            "8",
            "--patience",
            "5",
        ],
    ];
    for input in inputs {
        let train = |out: &Path, epochs: &str, extra: &[&str]| {
            let mut args = vec!["train", "--out"];
            let out = s(out);
            args.push(&out);
            args.extend_from_slice(input);
            args.extend_from_slice(&["--epochs", epochs, "--batch", "32", "--threads", "1"]);
            args.extend_from_slice(extra);
            deepfm(&args, None)
        };
        let _ = std::fs::remove_file(&ckpt);
        let (whole, resumed) = (dir.path().join("whole.dfm"), dir.path().join("resumed.dfm"));
        let out = train(&whole, "3", &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let c = s(&ckpt);
        let out = train(&resumed, "1", &["--checkpoint", &c]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(ckpt.exists());
        let out = train(&resumed, "3", &["--checkpoint", &c, "--resume"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            std::fs::read(&whole).unwrap() == std::fs::read(&resumed).unwrap(),
            "{input:?}: the resumed run differs"
        );

        let mut bytes = std::fs::read(&ckpt).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x10;
        std::fs::write(&ckpt, &bytes).unwrap();
        let out = train(&resumed, "4", &["--checkpoint", &c, "--resume"]);
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains("checkpoint tensor"),
            "{}",
            text(&out.stderr)
        );
    }
    let out = deepfm(
        &[
            "train", "--data", &data, "--spec", &spec, "--out", "x.dfm", "--resume",
        ],
        None,
    );
    assert!(!out.status.success());
}

/// `train --weight-decay-embedding/--weight-decay-dense` on every training path (`--data` TSV
/// and Criteo, `--schema`, `--ratings`): accepted, changing the model, and refused with the
/// setting named when `lr · λ` reaches 1 or λ is negative.
#[test]
fn train_weight_decay_flags() {
    let dir = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        s(&path)
    };
    let spec = write(
        "spec.json",
        r#"{"fields":[{"name":"ad","kind":"categorical","vocab":4},{"name":"x","kind":"numeric"}],
            "embedding_dim":4,"hidden":[8],"output":"sigmoid"}"#,
    );
    let tsv: String = (0..300)
        .map(|i| format!("{}\t{}\t{}\n", (i % 3 == 0) as u8, i % 4, i % 7))
        .collect();
    let tsv = write("train.tsv", &tsv);
    let criteo: String = (0..300)
        .map(|i| {
            let ints: Vec<String> = (0..13).map(|j| ((i + j) % 5).to_string()).collect();
            let cats: Vec<String> = (0..26).map(|j| format!("{:08x}", (i * j) % 3)).collect();
            format!(
                "{}\t{}\t{}\n",
                (i % 3 == 0) as u8,
                ints.join("\t"),
                cats.join("\t")
            )
        })
        .collect();
    let criteo = write("train.criteo", &criteo);
    let schema = write(
        "schema.json",
        r#"{"label":"y","fields":[{"name":"ad","kind":"categorical"}]}"#,
    );
    let csv: String = std::iter::once("y,ad\n".to_string())
        .chain((0..300).map(|i| format!("{},a{}\n", (i % 3 == 0) as u8, i % 4)))
        .collect();
    let csv = write("train.csv", &csv);
    let ratings: String = (0..300)
        .map(|i| format!("u{},i{},{}\n", i % 10, i % 13, 1 + i % 5))
        .collect();
    let ratings = write("ratings.csv", &ratings);
    let model = s(&dir.path().join("m.dfm"));
    let quick = ["--epochs", "2", "--threads", "1", "--out", &model];
    let small = ["--embedding-dim", "4", "--deep-layers", "8"];
    let paths: [Vec<&str>; 4] = [
        vec!["--data", &tsv, "--spec", &spec],
        [&["--data", &criteo, "--format", "criteo"][..], &small].concat(),
        vec!["--data", &csv, "--schema", &schema],
        [&["--ratings", &ratings][..], &small].concat(),
    ];
    for path in &paths {
        let train = |decay: &[&str]| {
            let args = [&["train"][..], path, &quick, decay].concat();
            deepfm(&args, None)
        };
        let out = train(&[]);
        assert!(out.status.success(), "{path:?}: {}", text(&out.stderr));
        let plain = std::fs::read(&model).unwrap();
        let out = train(&[
            "--weight-decay-embedding",
            "50",
            "--weight-decay-dense",
            "100",
        ]);
        assert!(out.status.success(), "{path:?}: {}", text(&out.stderr));
        let decayed = std::fs::read(&model).unwrap();
        assert_ne!(plain, decayed, "{path:?}: weight decay changed nothing");
        for (flag, value, name) in [
            ("--weight-decay-dense", "2000", "weight_decay_dense"),
            ("--weight-decay-embedding", "-1", "weight_decay_embedding"),
        ] {
            let out = train(&[&format!("{flag}={value}")]);
            assert!(!out.status.success(), "{path:?} {flag} {value} accepted");
            assert!(
                text(&out.stderr).contains(name),
                "{path:?}: {}",
                text(&out.stderr)
            );
        }
    }
}

/// `train --ratings` uses a validation file when given one, and refuses the flags of the
/// `--data` paths it cannot honour instead of ignoring them.
#[test]
fn train_ratings_takes_a_validation_file_and_refuses_data_only_flags() {
    let dir = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let write = |name: &str, rows: std::ops::Range<usize>| {
        let path = dir.path().join(name);
        let text: String = rows
            .map(|i| format!("u{},i{},{}\n", i % 10, i % 13, 1 + i % 5))
            .collect();
        std::fs::write(&path, text).unwrap();
        s(&path)
    };
    let (train, valid) = (write("train.csv", 0..300), write("valid.csv", 300..360));
    let model = s(&dir.path().join("m.dfm"));
    let base = [
        "train",
        "--ratings",
        &train,
        "--epochs",
        "3",
        "--threads",
        "1",
        "--out",
        &model,
        "--embedding-dim",
        "4",
        "--deep-layers",
        "8",
        "--json",
    ];
    let out = deepfm(&[&base[..], &["--valid", &valid]].concat(), None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("60 validation interactions"),
        "{}",
        text(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(text(&out.stdout).lines().last().unwrap()).unwrap();
    assert!(summary["valid_loss"].is_number(), "{summary}");
    // Without it, early stopping holds out 10% of the training file (30 ratings) by default;
    // with --patience 0 nothing is held out and there is no validation loss.
    let out = deepfm(&base, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(text(&out.stdout).lines().last().unwrap()).unwrap();
    assert!(summary["valid_loss"].is_number(), "{summary}");
    let out = deepfm(&[&base[..], &["--patience", "0"]].concat(), None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(text(&out.stdout).lines().last().unwrap()).unwrap();
    assert!(summary["valid_loss"].is_null(), "{summary}");
    for extra in [&["--spec", &train][..], &["--schema", &train][..]] {
        let out = deepfm(&[&base[..], extra].concat(), None);
        assert!(!out.status.success(), "{extra:?} accepted");
        assert!(
            text(&out.stderr).contains("--ratings") && text(&out.stderr).contains(extra[0]),
            "{extra:?}: {}",
            text(&out.stderr)
        );
    }
    let out = deepfm(&[&base[..], &["--optim", "lazy-adam"]].concat(), None);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Whether process `pid` has `path` mapped (Linux: `/proc/<pid>/maps` names mapped files).
fn maps_file(pid: u32, path: &Path) -> bool {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let path = path.to_string_lossy();
    maps.lines().any(|l| l.ends_with(path.as_ref()))
}

/// `install` replaces the file a running `deepfm score` has mapped: that process still scores
/// with the old model, exactly, and dies of nothing; the path then scores as the new model. A
/// corrupt file, or the live file itself, is refused with a message and the live file kept.
#[test]
fn install_replaces_a_file_a_running_scorer_has_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let old = random_model(dir.path());
    let (live, new) = (dir.path().join("live.dfm"), dir.path().join("new.dfm"));
    let (live_s, new_s) = (live.to_str().unwrap(), new.to_str().unwrap());
    let out = deepfm(
        &[
            "random",
            "--shape",
            "mixed-small",
            "--out",
            new_s,
            "--seed",
            "10",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tsv = dir.path().join("in.tsv");
    std::fs::write(&tsv, GOOD).unwrap();
    let score_file = |model: &str| {
        let out = deepfm(
            &["score", "--model", model, "--input", tsv.to_str().unwrap()],
            None,
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let (old_scores, new_scores) = (score_file(&old), score_file(new_s));
    assert_ne!(old_scores, new_scores, "the two models must differ");

    // A first install: nothing at the live path yet.
    let out = deepfm(&["install", &old, live_s], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.starts_with("installed") && !said.contains("reload"),
        "{said}"
    );

    // A scorer maps the live file, then waits for its input.
    let mut child = Command::new(env!("CARGO_BIN_EXE_deepfm"))
        .args(["score", "--model", live_s, "--input", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if cfg!(target_os = "linux") {
        let mapped = std::fs::canonicalize(&live).unwrap();
        let start = std::time::Instant::now();
        while !maps_file(child.id(), &mapped) {
            assert!(child.try_wait().unwrap().is_none(), "the scorer exited");
            assert!(start.elapsed().as_secs() < 60, "the scorer never mapped it");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    } else {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    let out = deepfm(&["install", new_s, live_s], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains(live_s) && said.contains("keep the old model until they reload"),
        "{said}"
    );
    assert_eq!(said.lines().count(), 1, "{said}");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(GOOD.as_bytes())
        .unwrap();
    let served = child.wait_with_output().unwrap();
    assert!(
        served.status.success(),
        "the scorer died: {:?} {}",
        served.status,
        text(&served.stderr)
    );
    assert_eq!(text(&served.stdout), old_scores);
    assert_eq!(score_file(live_s), new_scores);

    // Refusals leave the live file as it is.
    let installed = std::fs::read(&live).unwrap();
    let bad = dir.path().join("bad.dfm");
    let mut bytes = installed.clone();
    let table = deepfm::format::ModelFile::open(&live).unwrap().sections()[0];
    assert_eq!(table.shape.id.name(), "embedding");
    bytes[table.offset as usize + 40] ^= 1;
    std::fs::write(&bad, bytes).unwrap();
    let out = deepfm(&["install", bad.to_str().unwrap(), live_s], None);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("installing") && err.contains("embedding: checksum mismatch"),
        "{err}"
    );
    let out = deepfm(&["install", live_s, live_s], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("are the same file"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&live).unwrap(), installed);
}

/// `deepfm import --from` reads a framework's state dict and description (here DeepCTR-Torch,
/// with a shared table, a padded mean-pooled list and a dense feature), and `deepfm score`
/// then scores the framework's inputs as the framework did; a description of another
/// framework is refused, naming what is wrong, and writes nothing.
#[test]
fn import_from_a_framework_then_score() {
    let dir = tempfile::tempdir().unwrap();
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/interop/deepctr-ml100k");
    let (weights, description) = (
        fixture
            .join("model.safetensors")
            .to_string_lossy()
            .into_owned(),
        fixture
            .join("description.json")
            .to_string_lossy()
            .into_owned(),
    );
    let model = dir.path().join("m.dfm").to_string_lossy().into_owned();
    let import = |from: &str| {
        deepfm(
            &[
                "import",
                "--from",
                from,
                "--weights",
                &weights,
                "--description",
                &description,
                "--out",
                &model,
            ],
            None,
        )
    };
    let out = import("fuxictr");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("fuxictr description"),
        "{}",
        text(&out.stderr)
    );
    assert!(!Path::new(&model).exists());
    let out = import("deepctr-torch");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("prev_item reads item"),
        "{}",
        text(&out.stdout)
    );

    // The first 50 rows as `score` input: one column per field in the model's order.
    let batch: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("batch.json")).unwrap())
            .unwrap();
    let spec = Model::open(&model).unwrap().spec().clone();
    let rows = 50;
    let mut input = String::new();
    for r in 0..rows {
        let cells: Vec<String> = spec
            .fields
            .iter()
            .map(|f| match &batch["features"][&f.name][r] {
                serde_json::Value::Array(ids) => ids
                    .iter()
                    .map(|id| id.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                v => v.to_string(),
            })
            .collect();
        input += &(cells.join("\t") + "\n");
    }
    let out = deepfm(&["score", "--model", &model, "--input", "-"], Some(&input));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let got: Vec<f32> = text(&out.stdout)
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let want: Vec<f64> = (0..rows)
        .map(|r| batch["predictions"][r].as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), rows);
    let err = max_relative_error(&got, &want);
    assert!(
        err <= 1e-5,
        "max error {err:.3e} against DeepCTR-Torch's predictions"
    );
}

/// Raw tokens for imported models: each fixture's `raw.tsv` (the first 50 rows as the user has
/// them: gender `F`, genres `Drama|War`, Criteo's hashed strings) goes through the vocabularies
/// the import stored, and `deepfm predict --data` prints the framework's own predictions.
#[test]
fn imported_models_predict_raw_tokens_as_their_framework() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/interop");
    for (name, from) in [
        ("deepctr-ml100k", "deepctr-torch"),
        ("deepctr-ml100k-max", "deepctr-torch"),
        ("deepctr-criteo", "deepctr-torch"),
        ("fuxictr-ml100k", "fuxictr"),
        ("corerec-ml100k", "corerec"),
        ("recbole-ml100k", "recbole"),
        ("torchrec-ml100k", "torchrec"),
    ] {
        let fixture = root.join(name);
        let file = |f: &str| fixture.join(f).to_string_lossy().into_owned();
        let model = dir
            .path()
            .join(format!("{name}.dfm"))
            .to_string_lossy()
            .into_owned();
        let out = deepfm(
            &[
                "import",
                "--from",
                from,
                "--weights",
                &file("model.safetensors"),
                "--description",
                &file("description.json"),
                "--out",
                &model,
            ],
            None,
        );
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        let out = deepfm(
            &["predict", "--model", &model, "--data", &file("raw.tsv")],
            None,
        );
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        let got: Vec<f32> = text(&out.stdout)
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        let batch: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(file("batch.json")).unwrap()).unwrap();
        let want: Vec<f64> = (0..got.len())
            .map(|r| batch["predictions"][r].as_f64().unwrap())
            .collect();
        assert_eq!(got.len(), 50, "{name}");
        let err = max_relative_error(&got, &want);
        assert!(err <= 1e-5, "{name}: max error {err:.3e}");
    }
    // A token the vocabulary lacks, where the framework has no out-of-vocabulary id (CoreRec's
    // users), is an error naming the line, the field and the token.
    let raw = std::fs::read_to_string(root.join("corerec-ml100k/raw.tsv")).unwrap();
    let mut lines: Vec<String> = raw.lines().take(3).map(String::from).collect();
    let first: Vec<&str> = lines[2].split('\t').collect();
    let column = raw
        .lines()
        .next()
        .unwrap()
        .split('\t')
        .position(|c| c == "user")
        .unwrap();
    let mut cells: Vec<String> = first.iter().map(|c| c.to_string()).collect();
    cells[column] = "no-such-user".into();
    lines[2] = cells.join("\t");
    let bad = dir.path().join("bad.tsv");
    std::fs::write(&bad, lines.join("\n") + "\n").unwrap();
    let model = dir
        .path()
        .join("corerec-ml100k.dfm")
        .to_string_lossy()
        .into_owned();
    let out = deepfm(
        &[
            "predict",
            "--model",
            &model,
            "--data",
            &bad.to_string_lossy(),
        ],
        None,
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("line 3") && err.contains("(user)") && err.contains("no-such-user"),
        "{err}"
    );
}

#[test]
fn quantize_measures_first_writes_within_tolerance_and_the_copy_scores_in_int8() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_model(dir.path());
    let q = dir.path().join("q.dfm").to_string_lossy().into_owned();
    // A tolerance nothing can meet: refused, nothing written.
    let args = [
        "quantize",
        "--in",
        &model,
        "--out",
        &q,
        "--mlp",
        "int8",
        "--samples",
        "2000",
    ];
    let strict = [&args[..], &["--tolerance", "0"]].concat();
    let out = deepfm(&strict, None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not written"),
        "{}",
        text(&out.stderr)
    );
    assert!(!Path::new(&q).exists());
    // The default tolerance: written, with the measured difference printed.
    let out = deepfm(&args, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("f32 → int8") && said.contains("score difference on 2000"),
        "{said}"
    );
    let inspect = text(&deepfm(&["inspect", &q], None).stdout);
    assert!(inspect.contains("int8"), "{inspect}");
    let bench = deepfm(
        &["bench", "--model", &q, "--batch", "64", "--seconds", "0.05"],
        None,
    );
    assert!(
        text(&bench.stdout).contains("mlp int8"),
        "{}",
        text(&bench.stdout)
    );
    // Scores differ from the f32 file's, a little; `--mlp f32` restores them exactly.
    let scores =
        |m: &str| text(&deepfm(&["score", "--model", m, "--input", "-"], Some(GOOD)).stdout);
    let (exact, int8) = (scores(&model), scores(&q));
    for (a, b) in exact.lines().zip(int8.lines()) {
        let (a, b): (f32, f32) = (a.parse().unwrap(), b.parse().unwrap());
        assert!((a - b).abs() < 0.02, "{a} vs {b}");
    }
    let back = dir.path().join("back.dfm").to_string_lossy().into_owned();
    let out = deepfm(
        &["quantize", "--in", &q, "--out", &back, "--mlp", "f32"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(scores(&back), exact);
    // The table's rows: smaller, said so, scored close to the f32 file; nothing left behind.
    let rows = dir.path().join("rows.dfm").to_string_lossy().into_owned();
    let out = deepfm(
        &[
            "quantize",
            "--in",
            &model,
            "--out",
            &rows,
            "--table",
            "int8",
            "--samples",
            "2000",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains("table f32 → int8"), "{said}");
    let size = |p: &str| std::fs::metadata(p).unwrap().len();
    assert!(size(&rows) < size(&model), "{said}");
    assert!(text(&deepfm(&["inspect", &rows], None).stdout).contains(r#""table":"int8""#));
    let bench = deepfm(
        &[
            "bench",
            "--model",
            &rows,
            "--batch",
            "64",
            "--seconds",
            "0.05",
            "--json",
        ],
        None,
    );
    let said = text(&bench.stdout);
    assert!(
        said.contains("table int8") && said.contains(r#""table":"int8""#),
        "{said}"
    );
    for (a, b) in exact.lines().zip(scores(&rows).lines()) {
        let (a, b): (f32, f32) = (a.parse().unwrap(), b.parse().unwrap());
        assert!((a - b).abs() < 0.02, "{a} vs {b}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".quantizing"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let out = deepfm(&["quantize", "--in", &model, "--out", &rows], None);
    assert!(
        text(&out.stderr).contains("nothing to change"),
        "{}",
        text(&out.stderr)
    );
}

/// `quantize --table int4`: 4-bit rows, smaller than int8 ones, recorded in the spec, and
/// scored (finite scores for every sample).
#[test]
fn quantize_writes_4_bit_rows() {
    let dir = tempfile::tempdir().unwrap();
    let model = random_model(dir.path());
    let path = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let (int8, int4) = (path("int8.dfm"), path("int4.dfm"));
    for (out, table) in [(&int8, "int8"), (&int4, "int4")] {
        let args = ["quantize", "--in", &model, "--out", out, "--table", table];
        // A random model's embeddings are noise: `--force` keeps whatever was measured.
        let o = deepfm(
            &[&args[..], &["--samples", "2000", "--force"]].concat(),
            None,
        );
        assert!(o.status.success(), "{}", text(&o.stderr));
        let said = text(&o.stdout);
        assert!(said.contains(&format!("table f32 → {table}")), "{said}");
    }
    let size = |p: &str| std::fs::metadata(p).unwrap().len();
    assert!(
        size(&int4) < size(&int8),
        "{} vs {}",
        size(&int4),
        size(&int8)
    );
    let inspect = text(&deepfm(&["inspect", &int4, "--verify"], None).stdout);
    assert!(inspect.contains(r#""table":"int4""#), "{inspect}");
    let scores = text(&deepfm(&["score", "--model", &int4, "--input", "-"], Some(GOOD)).stdout);
    assert!(!scores.is_empty());
    for s in scores.lines() {
        assert!(s.parse::<f32>().unwrap().is_finite(), "{s}");
    }
}

/// `deepfm tune`: trial 1 is the settings given, the trials are printed as a table, the best
/// model is written with OUT.tune.json beside it (every trial, the best settings and the
/// `deepfm train` line that trains them again); a budget that is not a duration, and tune
/// without early stopping, are errors.
#[test]
fn tune_searches_within_its_budget_and_writes_the_best_model() {
    let dir = tempfile::tempdir().unwrap();
    let ratings = dir.path().join("r.csv");
    let text_rows: String = (0..600)
        .map(|i| format!("u{},i{},{}\n", i % 20, (i * 7) % 30, 1 + (i * 13) % 5))
        .collect();
    std::fs::write(&ratings, text_rows).unwrap();
    let model = dir.path().join("m.dfm");
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let base = [
        "tune",
        "--ratings",
        &s(&ratings),
        "--out",
        &s(&model),
        "--dim",
        "4",
        "--hidden",
        "8",
        "--epochs",
        "3",
        "--threads",
        "1",
    ];
    let out = deepfm(
        &[&base[..], &["--budget", "20s", "--max-trials", "3"]].concat(),
        None,
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("trial  1") && stderr.contains("D 4, layers 8"),
        "{stderr}"
    );
    assert!(stdout.contains("| trial | validation RMSE |"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("m.dfm.tune.json")).unwrap())
            .unwrap();
    let trials = report["trials"].as_array().unwrap();
    assert!((1..=3).contains(&trials.len()), "{report}");
    let best = report["best_valid"].as_f64().unwrap();
    assert!(trials.iter().all(|t| t["valid"].as_f64().unwrap() >= best));
    assert!(
        report["train_command"]
            .as_str()
            .unwrap()
            .starts_with("deepfm train --ratings")
    );
    // The written model is the best trial's: eval on the training file runs.
    let out = deepfm(
        &["eval", "--model", &s(&model), "--ratings", &s(&ratings)],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    for (extra, message) in [
        (&["--budget", "soon"][..], "not a duration"),
        (&["--budget", "0s"][..], "positive"),
        (&["--patience", "0"][..], "--patience"),
    ] {
        let out = deepfm(&[&base[..], extra].concat(), None);
        assert!(!out.status.success(), "{extra:?} accepted");
        assert!(
            text(&out.stderr).contains(message),
            "{extra:?}: {}",
            text(&out.stderr)
        );
    }
}
