//! `vitrine bench`: the forward pass timed on one model, cpu or wgpu; with
//! `--explain`, a relevance map (the top class's) beside it.

use pollster::FutureExt;
use std::process::ExitCode;

use burn::tensor::{Distribution, Tensor};
use serde_json::json;
use vitrine::backend::now_ms;
use vitrine::{Checkpoint, VitConfig};

use super::{Args, pick_backend};

pub fn bench(raw: &[String]) -> Result<ExitCode, String> {
    let args = Args::parse(
        raw,
        &["json", "explain"],
        &["backend", "arch", "model", "runs", "warmup", "batch"],
    )?;
    let runs = args.number("runs", 30)?.max(1);
    let warmup = args.number("warmup", 5)?;
    let batch = args.number("batch", 1)?.max(1);
    let (kind, device) = pick_backend(&args)?;
    let (name, config, model) = match args.value("model") {
        Some(path) => {
            let ck = Checkpoint::from_path(&super::model_path(path)?)
                .map_err(|e| format!("cannot load model {path}: {e}"))?;
            (path.to_string(), ck.config.clone(), ck.build(&device))
        }
        None => {
            let arch = args.value("arch").unwrap_or("vit_tiny_patch16_224");
            let config =
                VitConfig::preset(arch).ok_or_else(|| format!("unknown architecture `{arch}`"))?;
            (arch.to_string(), config.clone(), config.init(&device))
        }
    };
    let [h, w] = config.img_size;
    let input = Tensor::<4>::random(
        [batch, config.in_chans, h, w],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let explain = args.flag("explain");
    if explain && batch != 1 {
        return Err("--explain times one image: leave out --batch".into());
    }
    if explain && !config.has_head() {
        return Err(
            "--explain needs a classifier: this model is a backbone, with no class scores".into(),
        );
    }
    // Chosen once, as a loaded model's is: the fused kernels on the CPU.
    let executor = vitrine::exec::Executor::for_model(&model);
    let mut forward = || {
        let _ = executor.forward(&model, input.clone()).into_data();
    };
    // A relevance map as the CLI and the page ask for it: the top class,
    // vit-explain's discard ratio; from scratch (the CLI's case), and after
    // a classification that kept its forward pass (the page's, in "why
    // this class": then only the backward pass and the maps run). Each
    // round times a forward pass and both maps in turn, so that a slow
    // spell of the machine weighs on all three alike; each timed once
    // warm, right after an untimed run of its own.
    let classifier = explain.then(|| {
        let preprocess = vitrine::PreprocessConfig::timm_default(config.in_chans, config.img_size);
        vitrine::Classifier::from_model(model.clone(), config.clone(), preprocess, &device)
    });
    let values: Vec<f32> = input.clone().into_data().try_to_vec().expect("f32 input");
    let ratio = vitrine::explain::DISCARD_RATIO;
    let [mut times, mut scratch, mut after] = [(); 3].map(|_| Vec::with_capacity(runs));
    for i in 0..warmup + runs {
        let timed = |run: &mut dyn FnMut()| {
            if explain {
                run();
            }
            let t0 = now_ms();
            run();
            now_ms() - t0
        };
        let t = timed(&mut forward);
        let maps = classifier.as_ref().map(|c| {
            let s = timed(&mut || {
                c.relevance_input(&values, None, ratio)
                    .block_on()
                    .expect("relevance");
            });
            let (_, kept) = c
                .classify_input_keeping(&values, None)
                .block_on()
                .expect("classification");
            let kept = kept.expect("a relevance pass within the budget");
            let a = timed(&mut || {
                c.relevance_kept(&kept, None, ratio)
                    .block_on()
                    .expect("relevance");
            });
            (s, a)
        });
        if i >= warmup {
            times.push(t);
            if let Some((s, a)) = maps {
                scratch.push(s);
                after.push(a);
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let relevance = explain.then(|| (median(&mut scratch), median(&mut after)));
    let median = median(&mut times);
    let p90 = times[((times.len() as f64 * 0.9).ceil() as usize).saturating_sub(1)];
    // The CPU backend's pool: RAYON_NUM_THREADS when set, else every core.
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if args.flag("json") {
        println!(
            "{}",
            json!({"model": name, "backend": kind.name(), "executor": executor.name(), "batch": batch, "runs": runs, "median_ms": median, "p90_ms": p90,
                   "min_ms": times[0], "threads": threads, "relevance_median_ms": relevance.map(|r| r.0),
                   "relevance_after_forward_median_ms": relevance.map(|r| r.1)})
        );
    } else {
        println!(
            "{name} on {} with {} (batch {batch}, {runs} runs after {warmup} warm-up, {threads} threads): median {median:.2} ms, p90 {p90:.2} ms, min {:.2} ms",
            kind.name(),
            executor.name(),
            times[0]
        );
        if let Some((scratch, after)) = relevance {
            println!(
                "  relevance map (top class): median {scratch:.2} ms, {:.2}x the forward pass",
                scratch / median
            );
            println!(
                "  after a classification that kept its forward pass: median {after:.2} ms, {:.2}x",
                after / median
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
