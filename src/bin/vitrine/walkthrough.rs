//! `vitrine walkthrough`: the forward pass of one image step by step, and
//! the papers' figures of it (token norms, the registers' share of
//! attention, the PCA of its patch features, alone or with `--pca-with`'s
//! images), as JSON.

use pollster::FutureExt;
use std::path::Path;
use std::process::ExitCode;

use vitrine::{Classifier, preprocess};

use super::{Args, USAGE, load_image, load_model, pick_backend};

pub fn walkthrough(raw: &[String]) -> Result<ExitCode, String> {
    let args = Args::parse(
        raw,
        &[],
        &[
            "model",
            "layer",
            "head",
            "patches",
            "image-size",
            "backend",
            "checkpoint-key",
            "pca-with",
        ],
    )?;
    let [image] = args.positional.as_slice() else {
        return Err(format!("walkthrough needs one image\n{USAGE}"));
    };
    let (_, device) = pick_backend(&args)?;
    let (_, checkpoint) = load_model(&args)?;
    let classifier = Classifier::new(checkpoint, device);
    let c = &classifier.config;
    let layer = args.number("layer", c.depth - 1)?;
    let head = args.number("head", 0)?;
    if layer >= c.depth || head >= c.num_heads {
        return Err(format!(
            "--layer must be 0..{} and --head 0..{}",
            c.depth - 1,
            c.num_heads - 1
        ));
    }
    let patches = match args.value("patches") {
        None => vec![0],
        Some(list) => list
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|&p| p < c.num_patches())
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                format!(
                    "--patches must list patch indices below {}",
                    c.num_patches()
                )
            })?,
    };
    let prepare = |image: &str| {
        let img = load_image(Path::new(image)).map_err(|e| format!("{image}: {e}"))?;
        preprocess::preprocess(
            img.as_raw(),
            img.width(),
            img.height(),
            &classifier.preprocess,
        )
        .map_err(|e| format!("{image}: {e}"))
    };
    let input = prepare(image)?;
    // The PCA's images, as the page's are: those before it, then this one.
    let mut pca_inputs = match args.value("pca-with") {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(prepare)
            .collect::<Result<Vec<_>, _>>()?,
    };
    pca_inputs.push(input.clone());
    let focus = vitrine::walkthrough::Focus {
        patches,
        layer,
        head,
    };
    let w = classifier.walkthrough(&input, &focus).block_on();
    let mut json = serde_json::to_value(&w).map_err(|e| e.to_string())?;
    json["input"] = serde_json::to_value(&input).map_err(|e| e.to_string())?;
    let f = classifier.token_figures(&input).block_on();
    let inputs: Vec<&[f32]> = pca_inputs.iter().map(Vec::as_slice).collect();
    let pca = |split| {
        let p = classifier.feature_pca(&inputs, split).block_on();
        serde_json::json!({
            "first": p.first,
            "foreground": p.foreground,
            "rgb": p.rgb,
            "variance": p.variance,
            "first_variance": p.first_variance,
        })
    };
    json["figures"] = serde_json::json!({
        "token_norms": f.token_norms,
        "register_share": f.register_share,
        "feature_pca": pca(true),
        "feature_pca_all": pca(false),
    });
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}
