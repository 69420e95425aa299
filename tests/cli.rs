//! The `vitrine` command line: output formats, overlays, and bad input that
//! is reported without stopping the other images.

mod common;

use std::process::Command;

use common::fixtures;

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
    let dir = std::env::temp_dir().join(format!("vitrine-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
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
