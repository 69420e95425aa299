//! `vitrine bench`: the forward pass timed on one model, cpu or wgpu; with
//! `--explain`, a relevance map (the top class's) beside it; with
//! `--ceiling`, the machine's own matrix-product rate measured before and
//! after, and the forward pass's share of it.

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
        &["json", "explain", "ceiling"],
        &["backend", "arch", "model", "runs", "warmup", "batch"],
    )?;
    let runs = args.number("runs", 30)?.max(1);
    let warmup = args.number("warmup", 5)?;
    let batch = args.number("batch", 1)?.max(1);
    let ceiling = args.flag("ceiling");
    if ceiling && args.value("backend").is_some_and(|b| b != "cpu") {
        return Err("--ceiling measures the CPU's matrix products: use --backend cpu".into());
    }
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
    let ceiling_before = ceiling.then(matrix_ceiling);
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
    // The rate at this median, against the faster of the two ceilings
    // (the machine may have sped up or slowed down meanwhile).
    let ceiling = ceiling_before.map(|before| before.max(matrix_ceiling()));
    let median = median(&mut times);
    let gflops = 2.0 * config.multiply_adds() as f64 * batch as f64 / median / 1e6;
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
                   "relevance_after_forward_median_ms": relevance.map(|r| r.1),
                   "gflops": gflops, "ceiling_gflops": ceiling, "share_of_ceiling": ceiling.map(|c| gflops / c)})
        );
    } else {
        println!(
            "{name} on {} with {} (batch {batch}, {runs} runs after {warmup} warm-up, {threads} threads): median {median:.2} ms, p90 {p90:.2} ms, min {:.2} ms",
            kind.name(),
            executor.name(),
            times[0]
        );
        if let Some(c) = ceiling {
            println!(
                "  {gflops:.1} GFLOP/s in its matrix products, {:.0}% of this machine's {c:.1} GFLOP/s (a {CEILING_SIDE}² product)",
                100.0 * gflops / c
            );
        }
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

/// The side of the square product whose rate is the machine's ceiling.
const CEILING_SIDE: usize = 2048;

/// This machine's matrix-product rate in GFLOP/s: the best of 8 runs of a
/// 2048² f32 product by the `gemm` crate (the kernels the forward pass
/// calls), split between the threads of rayon's pool as gemm splits it.
fn matrix_ceiling() -> f64 {
    let n = CEILING_SIDE;
    let a: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..n * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut c = vec![0f32; n * n];
    let threads = rayon::current_num_threads();
    let mut best = f64::INFINITY;
    for _ in 0..8 {
        let t0 = now_ms();
        // SAFETY: a, b and c each hold n×n f32s, row-major, as the strides say.
        unsafe {
            gemm::gemm(
                n,
                n,
                n,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                n as isize,
                b.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(threads),
            )
        };
        best = best.min(now_ms() - t0);
    }
    2.0 * (n * n * n) as f64 / best / 1e6
}
