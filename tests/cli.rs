//! The `vitrine` command line: output formats, overlays, and bad input that
//! is reported without stopping the other images.

mod common;

use std::process::Command;

use common::{Scratch, fixtures};

fn vitrine(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vitrine"))
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn json_has_top_logits_attention_and_timings() {
    let model = fixtures().join("models/timm_d96");
    let img = fixtures().join("images/chelsea.png");
    let (code, out, err) = vitrine(&[
        "classify",
        img.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--json",
        "--top",
        "3",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["top"].as_array().unwrap().len(), 3);
    assert_eq!(v["top"][0]["label"], "pullover"); // index 2, the reference's top-1
    assert_eq!(v["logits"].as_array().unwrap().len(), 7);
    let a = &v["attention"];
    assert_eq!(
        (a["layers"].as_u64(), a["heads"].as_u64()),
        (Some(3), Some(4))
    );
    assert_eq!(a["grid"], serde_json::json!([8, 8]));
    assert_eq!(a["cls"][2][3].as_array().unwrap().len(), 64);
    assert!(v["timings_ms"]["forward"].as_f64().unwrap() > 0.0);
}

#[test]
fn bad_images_are_reported_and_the_rest_classified() {
    let model = fixtures().join("models/hf_vit");
    let good = fixtures().join("images/astronaut.png");
    let not_image = fixtures().join("models/hf_vit/config.json");
    let dir = Scratch::new("cli");
    let truncated = dir.join("truncated.png");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let overlay = dir.join("map.png");
    let (code, out, err) = vitrine(&[
        "classify",
        not_image.to_str().unwrap(),
        truncated.to_str().unwrap(),
        good.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--overlay",
        overlay.to_str().unwrap(),
        "--head",
        "2",
    ]);
    assert_eq!(code, 1, "some images failed: exit 1");
    assert!(
        err.contains("config.json: not an image in a supported format"),
        "{err}"
    );
    assert!(err.contains("truncated.png: cannot decode"), "{err}");
    assert!(
        out.contains("astronaut.png\n  1. <b>bold</b> & co"),
        "{out}"
    );
    let written =
        image::open(dir.join("map-astronaut.png")).expect("overlay written for the good image");
    assert_eq!((written.width(), written.height()), (512, 512));
}

#[test]
fn usage_errors_name_the_problem() {
    let model = fixtures().join("models/hf_vit");
    let img = fixtures().join("images/chelsea.png");
    let (code, _, err) = vitrine(&[
        "classify",
        img.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--layer",
        "7",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--layer must be 0..2, got `7`"), "{err}");
    let (code, _, err) = vitrine(&["classify", img.to_str().unwrap(), "--model", "/nope"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot load model /nope"), "{err}");
    for (flag, value, message) in [
        (
            "--weight-decay",
            "lots",
            "--weight-decay must be a number from 0 to 1, got `lots`",
        ),
        (
            "--label-smoothing",
            "0.9",
            "--label-smoothing must be a number from 0 to 0.5, got `0.9`",
        ),
        (
            "--distill-weight",
            "-1",
            "--distill-weight must be a number from 0 to 1, got `-1`",
        ),
        ("--heads", "5", "not divisible by num_heads 5"),
        ("--depth", "0", "depth"),
        ("--threads", "0", "--threads must be at least 1"),
        (
            "--threads",
            "two",
            "--threads must be a non-negative integer, got `two`",
        ),
    ] {
        let (code, _, err) = vitrine(&["train", flag, value, "--data", "/nope"]);
        assert_eq!(code, 2, "{flag} {value}");
        assert!(err.contains(message), "{err}");
    }
}

/// Runs vitrine with its standard output a pipe whose reading end is
/// already closed, as `vitrine ... | head` leaves it once head is done.
#[cfg(unix)]
fn into_closed_pipe(args: &[&str]) -> (std::process::ExitStatus, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_vitrine"))
        .args(args)
        .stdout(writer)
        .output()
        .expect("runs");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A closed standard output ends every subcommand quietly, the way it ends
/// other Unix tools: killed by SIGPIPE (status 141 in a shell), no panic.
#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let model = fixtures().join("models/timm_d96");
    let img = fixtures().join("images/chelsea.png");
    let (model, img) = (model.to_str().unwrap(), img.to_str().unwrap());
    let cases: [&[&str]; 5] = [
        &["--help"],
        &["classify", img, img, "--model", model],
        &["classify", img, img, "--model", model, "--json"],
        &["walkthrough", img, "--model", model],
        &["bench", "--model", model, "--runs", "1", "--warmup", "0"],
    ];
    for args in cases {
        let (status, err) = into_closed_pipe(args);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(
            status.signal(),
            Some(13),
            "{args:?}: {status:?}, stderr: {err}"
        );
    }
}

/// The exit status says what happened: 0 every image classified, 1 some
/// not (the others still are), 2 a usage error or a model that does not load.
#[test]
fn exit_status_is_documented_and_kept() {
    let (code, help, _) = vitrine(&["--help"]);
    assert_eq!(code, 0);
    for line in [
        "0  success (classify: every image classified)",
        "1  classify: some images could not be read or classified; the others were",
        "2  a usage error, or the model (or data) could not be loaded",
    ] {
        assert!(help.contains(line), "--help lacks `{line}`:\n{help}");
    }
    let model = fixtures().join("models/timm_gray");
    let img = fixtures().join("images/camera.png");
    let (model, img) = (model.to_str().unwrap(), img.to_str().unwrap());
    assert_eq!(vitrine(&["classify", img, "--model", model]).0, 0);
    assert_eq!(
        vitrine(&["classify", img, "/nonexistent.png", "--model", model]).0,
        1
    );
    assert_eq!(vitrine(&[]).0, 2);
    assert_eq!(vitrine(&["classify", img, "--bogus"]).0, 2);
    assert_eq!(vitrine(&["classify", img, "--model", "/nonexistent"]).0, 2);
}

/// A model whose forward pass overflows gets an error for each image, in
/// text and in JSON, never "NaN%" or a NaN probability.
#[test]
fn outputs_that_are_not_numbers_are_errors() {
    use vitrine::checkpoint::safetensors::{SafeTensors, serialize};
    let src = fixtures().join("models/timm_gray");
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = SafeTensors::parse(&bytes).unwrap();
    let tensors: Vec<_> = st
        .tensors
        .iter()
        .map(|(k, v)| {
            let values = if k == "head.weight" {
                vec![3e38; v.numel()]
            } else {
                v.to_f32()
            };
            (k.clone(), v.shape.clone(), values)
        })
        .collect();
    let dir = Scratch::new("cli-nan");
    std::fs::write(dir.join("model.safetensors"), serialize(&tensors, false)).unwrap();
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    let img = fixtures().join("images/camera.png");
    let (model, img) = (dir.to_str().unwrap(), img.to_str().unwrap());

    let (code, out, err) = vitrine(&["classify", img, "--model", model]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(!out.contains("NaN"), "{out}");
    assert!(
        err.contains("camera.png: the model's output is not a number: "),
        "{err}"
    );

    let (code, out, _) = vitrine(&["classify", img, "--model", model, "--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("the model's output is not a number"),
        "{v}"
    );
    assert!(v.get("top").is_none(), "{v}");
}

#[test]
fn other_input_sizes_and_backbones_on_the_command_line() {
    let img = fixtures().join("images/chelsea.png");
    let hf = fixtures().join("models/hf_vit");
    let (code, out, err) = vitrine(&[
        "classify",
        img.to_str().unwrap(),
        "--model",
        hf.to_str().unwrap(),
        "--json",
        "--image-size",
        "128",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("position embeddings interpolated from 6×6 to 8×8"),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["attention"]["grid"], serde_json::json!([8, 8]));
    for bad in ["0", "12x", "100"] {
        let (code, _, err) = vitrine(&[
            "classify",
            img.to_str().unwrap(),
            "--model",
            hf.to_str().unwrap(),
            "--image-size",
            bad,
        ]);
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(
            err.contains("--image-size") || err.contains("not a multiple of patch size"),
            "{bad}: {err}"
        );
    }
    // A backbone: features, no classes, and a line that says so.
    let dino = fixtures().join("models/timm_dino");
    let (code, out, err) = vitrine(&[
        "classify",
        img.to_str().unwrap(),
        "--model",
        dino.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["features"].as_array().unwrap().len(), 384);
    assert!(v.get("logits").is_none() && v["top"].as_array().unwrap().is_empty());
    let (_, out, _) = vitrine(&[
        "classify",
        img.to_str().unwrap(),
        "--model",
        dino.to_str().unwrap(),
    ]);
    assert!(
        out.contains("no classifier: this model is a backbone"),
        "{out}"
    );
}

#[test]
fn explain_gives_both_maps_for_the_class_and_draws_one() {
    let model = fixtures().join("models/timm_d96");
    let img = fixtures().join("images/chelsea.png");
    let (img, model) = (img.to_str().unwrap(), model.to_str().unwrap());
    let dir = Scratch::new("explain");
    let json = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["classify", img, "--model", model, "--json"];
        args.extend(extra);
        let (code, out, err) = vitrine(&args);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(out.trim()).unwrap()
    };
    let top = json(&["--explain", "chefer"]);
    let r = &top["relevance"];
    assert_eq!(r["method"], "chefer");
    assert_eq!(r["class"], 2, "the top class by default");
    assert_eq!(r["label"], "pullover");
    assert_eq!(r["discard_ratio"], 0.9);
    assert_eq!(r["chefer"].as_array().unwrap().len(), 64);
    assert_eq!(r["grad_rollout"].as_array().unwrap().len(), 64);
    assert_eq!(r["heads"].as_array().unwrap().len(), 3);
    assert_eq!(r["heads"][0].as_array().unwrap().len(), 4);
    assert!(json(&[])["relevance"].is_null(), "no maps unless asked");
    let other = json(&["--explain", "chefer", "--class", "5"]);
    assert_eq!(other["relevance"]["class"], 5);
    assert_ne!(other["relevance"]["chefer"], r["chefer"]);

    // The overlay draws the chosen map, not the attention.
    let draw = |name: &str, extra: &[&str]| -> Vec<u8> {
        let out = dir.join(name);
        let mut args = vec!["classify", img, "--model", model, "--overlay"];
        args.push(out.to_str().unwrap());
        args.extend(extra);
        let (code, _, err) = vitrine(&args);
        assert_eq!(code, 0, "{err}");
        image::open(&out).unwrap().to_rgb8().into_raw()
    };
    let attention = draw("attention.png", &[]);
    let chefer = draw("chefer.png", &["--explain", "chefer"]);
    let rollout = draw(
        "grad.png",
        &["--explain", "grad-rollout", "--discard-ratio", "0.5"],
    );
    assert_ne!(attention, chefer);
    assert_ne!(chefer, rollout);

    for (args, says) in [
        (
            vec!["--explain", "lime"],
            "--explain must be `grad-rollout` or `chefer`",
        ),
        (vec!["--class", "1"], "--class goes with --explain"),
        (
            vec!["--explain", "chefer", "--class", "7"],
            "--class must be 0..6",
        ),
        (
            vec!["--explain", "chefer", "--discard-ratio", "1"],
            "--discard-ratio must be",
        ),
    ] {
        let mut all = vec!["classify", img, "--model", model];
        all.extend(&args);
        let (code, _, err) = vitrine(&all);
        assert_eq!(code, 2, "{args:?}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let backbone = fixtures().join("models/timm_dino");
    let (code, _, err) = vitrine(&[
        "classify",
        img,
        "--model",
        backbone.to_str().unwrap(),
        "--explain",
        "chefer",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("needs a classifier"), "{err}");
}

/// `--model hf:org/name[@revision]` reads the Hugging Face cache as
/// `huggingface_hub` writes it (blobs, the snapshot's links to them, a
/// revision's commit in refs/; checked against a cache its own client
/// wrote: tests/hub/check_standin.py and docs/checkpoints.md), by branch,
/// tag and full commit, and answers as the same files loaded from a folder;
/// what the cache lacks is said, with how to get it. Offline
/// (`HF_HUB_OFFLINE`), as no test may reach the Hub; downloading is
/// tests/e2e/hub-cli.test.mjs's, against the stand-in Hub.
#[test]
fn hub_models_come_from_the_hugging_face_cache() {
    let cache = Scratch::new("hf-cache");
    let model = cache.join("models--acme--tiny");
    let commit = "cca5a36fb03cf1e446267219f4fbbe7e7ca7871e";
    let snapshot = model.join("snapshots").join(commit);
    std::fs::create_dir_all(model.join("blobs")).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(model.join("refs")).unwrap();
    let source = fixtures().join("models/timm_tiny");
    for (i, file) in ["config.json", "model.safetensors"].iter().enumerate() {
        let blob = model.join("blobs").join(format!("{i:040x}"));
        std::fs::copy(source.join(file), &blob).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/{i:040x}"), snapshot.join(file)).unwrap();
    }
    for name in ["main", "v1.0"] {
        std::fs::write(model.join("refs").join(name), commit).unwrap();
    }
    let img = fixtures().join("images/chelsea.png");
    let run = |model: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_vitrine"))
            .args([
                "classify",
                img.to_str().unwrap(),
                "--model",
                model,
                "--json",
            ])
            .env("HF_HUB_CACHE", &*cache)
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .expect("runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let top = |out: &str| {
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        v["top"].clone()
    };
    let (code, want, err) = run(source.to_str().unwrap());
    assert_eq!(code, 0, "{err}");
    for name in [
        "hf:acme/tiny",
        "hf:acme/tiny@v1.0",
        &format!("hf:acme/tiny@{commit}"),
    ] {
        let (code, out, err) = run(name);
        assert_eq!(code, 0, "{name}: {err}");
        assert_eq!(top(&out), top(&want), "{name}");
    }
    let (code, _, err) = run("hf:acme/tiny@v2");
    assert_eq!(code, 2);
    assert!(
        err.contains("acme/tiny@v2 is not in the Hugging Face cache")
            && err.contains("vitrine fetch acme/tiny@v2")
            && err.contains("HF_HUB_OFFLINE is set"),
        "{err}"
    );
    let (code, _, err) = run("hf:acme/other");
    assert_eq!(code, 2);
    assert!(
        err.contains("acme/other is not in the Hugging Face cache"),
        "{err}"
    );
    let (code, _, err) = run("hf:gpt2");
    assert_eq!(code, 2);
    assert!(err.contains("is not a Hub model"), "{err}");
}

/// `bench --ceiling`: the forward pass's rate and its share of this
/// machine's 2048² product, measured, not assumed: the rate is the model's
/// multiply-adds over the median time, and the share that rate over the
/// ceiling. (The share itself depends on the machine and its load; a
/// forward pass of a 6-block D = 96 model cannot beat a 2048² product.)
#[test]
fn bench_measures_the_share_of_the_matrix_ceiling() {
    let model = fixtures().join("models/timm_d96");
    let (code, out, err) = vitrine(&[
        "bench",
        "--model",
        model.to_str().unwrap(),
        "--runs",
        "3",
        "--warmup",
        "1",
        "--ceiling",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    let (gflops, ceiling, share) = (
        v["gflops"].as_f64().unwrap(),
        v["ceiling_gflops"].as_f64().unwrap(),
        v["share_of_ceiling"].as_f64().unwrap(),
    );
    assert!(gflops > 0.0 && ceiling > 0.0, "{v}");
    assert!((share - gflops / ceiling).abs() < 1e-9, "{v}");
    assert!(
        share < 1.0,
        "a small model above the machine's ceiling: {v}"
    );
    let (code, _, err) = vitrine(&["bench", "--backend", "wgpu", "--ceiling"]);
    assert_eq!(code, 2);
    assert!(err.contains("--ceiling measures the CPU"), "{err}");
}
