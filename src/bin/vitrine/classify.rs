//! `vitrine classify`: images → top classes, attention maps as JSON or an overlay PNG.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::json;
use vitrine::Classifier;
use vitrine::explain::{self, HeadChoice};

use super::{Args, USAGE, load_image, load_model, pick_backend};

/// `classify --json`: one object per image (serialised directly so f32 values stay short).
#[derive(serde::Serialize)]
struct ImageJson<'a> {
    image: &'a str,
    /// Empty, and `logits` absent, for a backbone without a classifier.
    top: Vec<TopJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logits: Option<&'a [f32]>,
    /// A backbone's output: its pooled features (the class token's after
    /// the final norm, for most).
    #[serde(skip_serializing_if = "Option::is_none")]
    features: Option<&'a [f32]>,
    attention: AttentionJson<'a>,
    timings_ms: vitrine::Timings,
}

#[derive(serde::Serialize)]
struct TopJson<'a> {
    index: usize,
    label: &'a str,
    probability: f32,
}

#[derive(serde::Serialize)]
struct AttentionJson<'a> {
    layers: usize,
    heads: usize,
    /// [rows, cols]
    grid: [usize; 2],
    /// [L][H][N]
    cls: Vec<Vec<Vec<f32>>>,
    /// [N]
    rollout: &'a [f32],
}

fn overlay_path(out: &str, image: &str, many: bool) -> PathBuf {
    let out = PathBuf::from(out);
    if !many {
        return out;
    }
    let stem = Path::new(image)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("image");
    let base = out
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("overlay");
    out.with_file_name(format!("{base}-{stem}.png"))
}

pub fn classify(raw: &[String]) -> Result<ExitCode, String> {
    let args = Args::parse(
        raw,
        &["json"],
        &[
            "model",
            "top",
            "overlay",
            "layer",
            "head",
            "colormap",
            "image-size",
            "checkpoint-key",
            "backend",
        ],
    )?;
    if args.positional.is_empty() {
        return Err(format!("classify needs at least one image\n{USAGE}"));
    }
    let top = args.number("top", 5)?;
    let (_, device) = pick_backend(&args)?;
    let (_, checkpoint) = load_model(&args)?;
    let (weights_key, weights_keys) = (
        checkpoint.weights_key.clone(),
        checkpoint.weights_keys.clone(),
    );
    let classifier = Classifier::new(checkpoint, device);
    let c = &classifier.config;
    for note in &classifier.notes {
        eprintln!("note: {note}");
    }
    if let Some(key) = &weights_key
        && weights_keys.len() > 1
    {
        let others: Vec<&str> = weights_keys
            .iter()
            .filter(|k| *k != key)
            .map(String::as_str)
            .collect();
        eprintln!(
            "note: read `{key}`; --checkpoint-key {} reads another",
            others.join("|")
        );
    }
    if c.num_prefix_tokens() != 1 || !c.class_token {
        eprintln!("note: {}", vitrine::explain::map_note(c));
    }
    let layer = match args.value("layer") {
        None => c.depth - 1,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|&l| l < c.depth)
            .ok_or_else(|| format!("--layer must be 0..{}, got `{v}`", c.depth - 1))?,
    };
    let head = match args.value("head") {
        None | Some("mean") => HeadChoice::Mean,
        Some("rollout") => HeadChoice::Rollout,
        Some(v) => HeadChoice::Head(
            v.parse::<usize>()
                .ok()
                .filter(|&h| h < c.num_heads)
                .ok_or_else(|| {
                    format!("--head must be `mean` or 0..{}, got `{v}`", c.num_heads - 1)
                })?,
        ),
    };
    let colormap = args.value("colormap").unwrap_or("viridis");
    if !explain::colormap::colormaps().contains_key(colormap) {
        let names: Vec<&str> = explain::colormap::colormaps()
            .keys()
            .map(String::as_str)
            .collect();
        return Err(format!(
            "--colormap must be one of {}, got `{colormap}`",
            names.join(", ")
        ));
    }

    let mut failed = false;
    let many = args.positional.len() > 1;
    for path in &args.positional {
        let outcome = load_image(Path::new(path)).and_then(|img| {
            let pred = classifier
                .classify_blocking(img.as_raw(), img.width(), img.height(), None)
                .map_err(|e| e.to_string())?;
            Ok((img, pred))
        });
        let (img, pred) = match outcome {
            Ok(r) => r,
            Err(e) => {
                failed = true;
                if args.flag("json") {
                    println!("{}", json!({ "image": path, "error": e }));
                } else {
                    eprintln!("error: {path}: {e}");
                }
                continue;
            }
        };
        let best = pred.top(top);
        if args.flag("json") {
            let a = &pred.attention;
            let top = best.iter().map(|&(index, probability)| TopJson {
                index,
                label: &classifier.labels[index],
                probability,
            });
            let obj = ImageJson {
                image: path,
                top: top.collect(),
                logits: c.has_head().then_some(pred.logits.as_slice()),
                features: (!c.has_head()).then_some(pred.logits.as_slice()),
                attention: AttentionJson {
                    layers: a.layers,
                    heads: a.heads,
                    grid: a.grid,
                    cls: a.nested(),
                    rollout: &pred.rollout,
                },
                timings_ms: pred.timings,
            };
            println!("{}", serde_json::to_string(&obj).expect("serialisable"));
        } else {
            println!("{path}");
            if !c.has_head() {
                println!(
                    "  (no classifier: this model is a backbone; --json gives its {} features, \
                     --overlay where it looks)",
                    c.outputs()
                );
            }
            for (rank, &(i, p)) in best.iter().enumerate() {
                println!(
                    "  {}. {:<30} {:6.2}%",
                    rank + 1,
                    classifier.labels[i],
                    p * 100.0
                );
            }
        }
        if let Some(out) = args.value("overlay") {
            let map = pred.attention.map(layer, head, &pred.rollout);
            let picture = explain::overlay(
                &img,
                &map,
                pred.attention.grid,
                pred.view_box,
                0.6,
                colormap,
            );
            let dest = overlay_path(out, path, many);
            picture
                .save(&dest)
                .map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
            if !args.flag("json") {
                eprintln!(
                    "overlay (layer {layer}, {head:?}) written to {}",
                    dest.display()
                );
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
