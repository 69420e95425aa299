//! `vitrine classify`: images → top classes, attention maps as JSON or an overlay PNG.

use pollster::FutureExt;
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
    #[serde(skip_serializing_if = "Option::is_none")]
    relevance: Option<RelevanceJson<'a>>,
    timings_ms: vitrine::Timings,
}

/// `classify --explain`: both class-specific maps (the overlay draws `method`'s).
#[derive(serde::Serialize)]
struct RelevanceJson<'a> {
    method: &'static str,
    class: usize,
    label: &'a str,
    discard_ratio: f64,
    /// [N]
    grad_rollout: &'a [f32],
    /// [N]
    chefer: &'a [f32],
    /// (∇A ⊙ A)⁺ of each head, the class token's row: [L][H][N]
    heads: Vec<Vec<Vec<f32>>>,
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
            "explain",
            "class",
            "discard-ratio",
        ],
    )?;
    if args.positional.is_empty() {
        return Err(format!("classify needs at least one image\n{USAGE}"));
    }
    let top = args.number("top", 5)?;
    let explanation =
        match args.value("explain") {
            None => None,
            Some(v) => Some(explain::Explanation::parse(v).ok_or_else(|| {
                format!("--explain must be `grad-rollout` or `chefer`, got `{v}`")
            })?),
        };
    if explanation.is_none() {
        for option in ["class", "discard-ratio"] {
            if args.value(option).is_some() {
                return Err(format!(
                    "--{option} goes with --explain grad-rollout|chefer\n{USAGE}"
                ));
            }
        }
    }
    let discard_ratio = match args.value("discard-ratio") {
        None => explain::DISCARD_RATIO,
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|r| (0.0..1.0).contains(r))
            .ok_or_else(|| format!("--discard-ratio must be a number in [0, 1), got `{v}`"))?,
    };
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
    if explanation.is_some() && !c.has_head() {
        return Err(
            "--explain needs a classifier: this model is a backbone, with no class scores".into(),
        );
    }
    let class = match args.value("class") {
        None => None,
        Some(v) => Some(
            v.parse::<usize>()
                .ok()
                .filter(|&k| k < c.num_classes)
                .ok_or_else(|| format!("--class must be 0..{}, got `{v}`", c.num_classes - 1))?,
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
                .classify(img.as_raw(), img.width(), img.height(), None)
                .block_on()
                .map_err(|e| e.to_string())?;
            let relevance = match explanation {
                None => None,
                Some(_) => Some(
                    classifier
                        .relevance_input(&pred.input, class, discard_ratio)
                        .block_on()
                        .map_err(|e| e.to_string())?,
                ),
            };
            Ok((img, pred, relevance))
        });
        let (img, pred, relevance) = match outcome {
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
                relevance: relevance
                    .as_ref()
                    .zip(explanation)
                    .map(|(r, method)| RelevanceJson {
                        method: method.name(),
                        class: r.maps.class,
                        label: &classifier.labels[r.maps.class],
                        discard_ratio,
                        grad_rollout: &r.maps.grad_rollout,
                        chefer: &r.maps.chefer,
                        heads: (0..r.maps.layers)
                            .map(|l| {
                                (0..r.maps.heads)
                                    .map(|h| r.maps.head(l, h).to_vec())
                                    .collect()
                            })
                            .collect(),
                        timings_ms: r.timings,
                    }),
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
            if let (Some(r), Some(method)) = (&relevance, explanation) {
                println!(
                    "  why `{}` ({}): {}",
                    classifier.labels[r.maps.class],
                    method.name(),
                    if args.value("overlay").is_some() {
                        "the overlay shows the patches that raised its score"
                    } else {
                        "--overlay OUT.png draws it, --json gives the maps"
                    }
                );
            }
        }
        if let Some(out) = args.value("overlay") {
            let map = match (&relevance, explanation) {
                (Some(r), Some(method)) => r.maps.map(method).to_vec(),
                _ => pred.attention.map(layer, head, &pred.rollout),
            };
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
                match (&relevance, explanation) {
                    (Some(r), Some(method)) => eprintln!(
                        "overlay ({} for class {}) written to {}",
                        method.name(),
                        r.maps.class,
                        dest.display()
                    ),
                    _ => eprintln!(
                        "overlay (layer {layer}, {head:?}) written to {}",
                        dest.display()
                    ),
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
