//! vitrine's command line: classify images, time the forward pass.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use burn::tensor::{Distribution, Tensor};
use serde_json::json;
use vitrine::backend::{self, BackendKind, now_ms};
use vitrine::explain::{self, HeadChoice};
use vitrine::{Checkpoint, Classifier, VitConfig, preprocess};

const USAGE: &str = "\
usage:
  vitrine classify IMAGE... [--model PATH] [--top K] [--json] [--overlay OUT.png]
                   [--layer L] [--head H|mean] [--backend cpu|wgpu]
  vitrine bench [--backend cpu|wgpu] [--arch NAME | --model PATH] [--runs N] [--warmup N] [--json]
  vitrine train [--data DIR] [--out DIR] [--epochs N] [--batch N] [--threads N]
                [--teacher-epochs N] [--weight-decay X] [--label-smoothing X]
                [--distill-weight X] [--embed-dim N] [--depth N] [--heads N] [--mlp-ratio N]
  vitrine walkthrough IMAGE [--model PATH] [--layer L] [--head H] [--patches I,J,...]
  vitrine export [--run DIR] [--epoch N] [--out DIR]
  vitrine eval [--model PATH] [--data DIR] [--limit N] [--confusion OUT.svg] [--dataset-pixels]
               [--backend cpu|wgpu]

PATH is a .safetensors file or a directory with model.safetensors, config.json
and optionally preprocessor_config.json (timm or transformers layout); without
--model, vitrine's own Fashion-MNIST model (built in) is used.
--layer counts from 0 (default: the last layer); --head picks one head, the mean over
heads (default) or `rollout` (attention rollout over all layers).

exit status:
  0  success (classify: every image classified)
  1  classify: some images could not be read or classified; the others were
  2  a usage error, or the model (or data) could not be loaded
A closed standard output (`vitrine ... | head`) ends vitrine quietly, as it
does other Unix tools (SIGPIPE).";

/// Lets a closed standard output end the process quietly, as it does other
/// Unix tools, instead of `println!` panicking on EPIPE: the Rust runtime
/// ignores SIGPIPE, so restore the default action (terminate).
#[cfg(unix)]
fn die_quietly_on_closed_stdout() {
    unsafe extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }
    const SIGPIPE: i32 = 13; // Linux, macOS and the BSDs alike
    const SIG_DFL: usize = 0;
    // SAFETY: called first thing in main, before any other thread exists.
    unsafe {
        signal(SIGPIPE, SIG_DFL);
    }
}

/// Minimal flag parser: `--name value` pairs, `--flag` switches, positionals.
struct Args {
    positional: Vec<String>,
    options: Vec<(String, Option<String>)>,
}

impl Args {
    fn parse(raw: &[String], switches: &[&str], valued: &[&str]) -> Result<Self, String> {
        let mut positional = Vec::new();
        let mut options = Vec::new();
        let mut it = raw.iter();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                if switches.contains(&name) {
                    options.push((name.to_string(), None));
                } else if valued.contains(&name) {
                    let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
                    options.push((name.to_string(), Some(v.clone())));
                } else {
                    return Err(format!("unknown option --{name}"));
                }
            } else {
                positional.push(a.clone());
            }
        }
        Ok(Self {
            positional,
            options,
        })
    }

    fn flag(&self, name: &str) -> bool {
        self.options.iter().any(|(n, _)| n == name)
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    fn number(&self, name: &str, default: usize) -> Result<usize, String> {
        self.value(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| format!("--{name} must be a non-negative integer, got `{v}`"))
        })
    }

    /// A number in [0, `max`].
    fn fraction(&self, name: &str, default: f32, max: f32) -> Result<f32, String> {
        self.value(name)
            .map_or(Ok(default), |v| match v.parse::<f32>() {
                Ok(x) if (0.0..=max).contains(&x) => Ok(x),
                _ => Err(format!(
                    "--{name} must be a number from 0 to {max}, got `{v}`"
                )),
            })
    }
}

fn main() -> ExitCode {
    #[cfg(unix)]
    die_quietly_on_closed_stdout();
    backend::keep_freed_memory();
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let result = match raw.first().map(String::as_str) {
        Some("classify") => classify(&raw[1..]),
        Some("bench") => bench(&raw[1..]),
        Some("train") => train(&raw[1..]),
        Some("eval") => eval(&raw[1..]),
        Some("export") => export(&raw[1..]),
        Some("walkthrough") => walkthrough(&raw[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(format!("expected a command\n{USAGE}")),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

fn pick_backend(args: &Args) -> Result<(BackendKind, burn::tensor::Device), String> {
    let name = args.value("backend").unwrap_or("cpu");
    let kind = BackendKind::parse(name)
        .ok_or_else(|| format!("--backend must be cpu or wgpu, got `{name}`"))?;
    Ok((kind, backend::device(kind)?))
}

/// Decodes an image file upright (EXIF orientation applied) as RGBA.
fn load_image(path: &Path) -> Result<image::RgbaImage, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    vitrine::decode::decode_image(&bytes)
}

/// `classify --json`: one object per image (serialised directly so f32 values stay short).
#[derive(serde::Serialize)]
struct ImageJson<'a> {
    image: &'a str,
    top: Vec<TopJson<'a>>,
    logits: &'a [f32],
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

/// The checkpoint `--model PATH` names, or the embedded default model.
fn load_model(args: &Args) -> Result<(String, Checkpoint), String> {
    match args.value("model") {
        Some(path) => Checkpoint::from_path(Path::new(path))
            .map(|c| (path.to_string(), c))
            .map_err(|e| format!("cannot load model {path}: {e}")),
        None => Ok((
            "fashion-vit (built in)".to_string(),
            Checkpoint::default_model(),
        )),
    }
}

fn classify(raw: &[String]) -> Result<ExitCode, String> {
    let args = Args::parse(
        raw,
        &["json"],
        &["model", "top", "overlay", "layer", "head", "backend"],
    )?;
    if args.positional.is_empty() {
        return Err(format!("classify needs at least one image\n{USAGE}"));
    }
    let top = args.number("top", 5)?;
    let (_, device) = pick_backend(&args)?;
    let (_, checkpoint) = load_model(&args)?;
    let classifier = Classifier::new(&checkpoint, device);
    let c = &classifier.config;
    for note in &classifier.notes {
        eprintln!("note: {note}");
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
                logits: &pred.logits,
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
            let picture = explain::overlay(&img, &map, pred.attention.grid, pred.view_box, 0.6);
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

fn bench(raw: &[String]) -> Result<ExitCode, String> {
    let args = Args::parse(
        raw,
        &["json"],
        &["backend", "arch", "model", "runs", "warmup"],
    )?;
    let runs = args.number("runs", 30)?.max(1);
    let warmup = args.number("warmup", 5)?;
    let (kind, device) = pick_backend(&args)?;
    let (name, model, config) = match args.value("model") {
        Some(path) => {
            let ck = Checkpoint::from_path(Path::new(path))
                .map_err(|e| format!("cannot load model {path}: {e}"))?;
            (path.to_string(), ck.build(&device), ck.config)
        }
        None => {
            let arch = args.value("arch").unwrap_or("vit_tiny_patch16_224");
            let config =
                VitConfig::preset(arch).ok_or_else(|| format!("unknown architecture `{arch}`"))?;
            (arch.to_string(), config.init(&device), config)
        }
    };
    let [h, w] = config.img_size;
    let input = Tensor::<4>::random(
        [1, config.in_chans, h, w],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let mut times = Vec::with_capacity(runs);
    for i in 0..warmup + runs {
        let t0 = now_ms();
        let logits = model.forward(input.clone());
        let _ = logits.into_data();
        if i >= warmup {
            times.push(now_ms() - t0);
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let p90 = times[((times.len() as f64 * 0.9).ceil() as usize).saturating_sub(1)];
    // The CPU backend's pool: RAYON_NUM_THREADS when set, else every core.
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if args.flag("json") {
        println!(
            "{}",
            json!({"model": name, "backend": kind.name(), "runs": runs, "median_ms": median, "p90_ms": p90,
                   "min_ms": times[0], "threads": threads})
        );
    } else {
        println!(
            "{name} on {} (batch 1, {runs} runs after {warmup} warm-up, {threads} threads): median {median:.2} ms, p90 {p90:.2} ms, min {:.2} ms",
            kind.name(),
            times[0]
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The Fashion-MNIST folder, installing Debian's package when the default one is missing.
fn dataset_dir(args: &Args) -> Result<PathBuf, String> {
    if let Some(d) = args.value("data") {
        return Ok(PathBuf::from(d));
    }
    let dir = PathBuf::from(vitrine::fashion_mnist::DEBIAN_DIR);
    if !dir.is_dir() {
        eprintln!(
            "{} is missing: installing Debian's dataset-fashion-mnist package",
            dir.display()
        );
        let ok = std::process::Command::new("apt-get")
            .args(["install", "-y", "-qq", "dataset-fashion-mnist"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err("could not install dataset-fashion-mnist (run `apt-get install dataset-fashion-mnist` as root)".into());
        }
    }
    Ok(dir)
}

fn train(raw: &[String]) -> Result<ExitCode, String> {
    let args = Args::parse(
        raw,
        &[],
        &[
            "data",
            "out",
            "epochs",
            "threads",
            "batch",
            "teacher-epochs",
            "weight-decay",
            "label-smoothing",
            "distill-weight",
            "embed-dim",
            "depth",
            "heads",
            "mlp-ratio",
        ],
    )?;
    // Each step is spread over this many cores (data parallelism); the
    // CPU backend's own pool (validation) gets as many threads.
    let threads = args.number(
        "threads",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    )?;
    if threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    // Read by the CPU backend's thread pool when it starts, which it has not yet.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    let mut cfg = vitrine::train::TrainConfig::new();
    cfg.epochs = args.number("epochs", cfg.epochs)?;
    cfg.batch_size = args.number("batch", cfg.batch_size)?.max(1);
    cfg.teacher_epochs = args.number("teacher-epochs", cfg.teacher_epochs)?;
    cfg.weight_decay = args.fraction("weight-decay", cfg.weight_decay, 1.0)?;
    cfg.label_smoothing = args.fraction("label-smoothing", cfg.label_smoothing, 0.5)?;
    cfg.distill_weight = args.fraction("distill-weight", cfg.distill_weight, 1.0)?;
    cfg.embed_dim = args.number("embed-dim", cfg.embed_dim)?;
    cfg.depth = args.number("depth", cfg.depth)?;
    cfg.num_heads = args.number("heads", cfg.num_heads)?;
    cfg.mlp_ratio = args.number("mlp-ratio", cfg.mlp_ratio)?;
    cfg.vit().validate()?;
    let data = dataset_dir(&args)?;
    let out = args
        .value("out")
        .map(PathBuf::from)
        .unwrap_or_else(vitrine::train::default_out_dir);
    let t0 = now_ms();
    let model = vitrine::train::train(&cfg, &data, &out, threads)?;
    let dest = out.join("model");
    vitrine::train::write_timm_model(&model, &cfg, &dest)?;
    eprintln!(
        "trained in {:.1} min; timm-layout model written to {}",
        (now_ms() - t0) / 60000.0,
        dest.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn walkthrough(raw: &[String]) -> Result<ExitCode, String> {
    let args = Args::parse(raw, &[], &["model", "layer", "head", "patches", "backend"])?;
    let [image] = args.positional.as_slice() else {
        return Err(format!("walkthrough needs one image\n{USAGE}"));
    };
    let (_, device) = pick_backend(&args)?;
    let (_, checkpoint) = load_model(&args)?;
    let classifier = Classifier::new(&checkpoint, device);
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
    let img = load_image(Path::new(image)).map_err(|e| format!("{image}: {e}"))?;
    let input = preprocess::preprocess(
        img.as_raw(),
        img.width(),
        img.height(),
        &classifier.preprocess,
    )
    .map_err(|e| format!("{image}: {e}"))?;
    let focus = vitrine::walkthrough::Focus {
        patches,
        layer,
        head,
    };
    let w = classifier.walkthrough_blocking(&input, &focus);
    let mut json = serde_json::to_value(&w).map_err(|e| e.to_string())?;
    json["input"] = serde_json::to_value(&input).map_err(|e| e.to_string())?;
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}

fn export(raw: &[String]) -> Result<ExitCode, String> {
    let args = Args::parse(raw, &[], &["run", "epoch", "out"])?;
    let run = args
        .value("run")
        .map(PathBuf::from)
        .unwrap_or_else(vitrine::train::default_out_dir);
    let epoch = args
        .value("epoch")
        .map(|_| args.number("epoch", 0))
        .transpose()?;
    let (model, cfg, epoch) = vitrine::train::load_epoch(&run, epoch)?;
    let dest = args
        .value("out")
        .map(PathBuf::from)
        .unwrap_or_else(|| run.join("model"));
    vitrine::train::write_timm_model(&model, &cfg, &dest)?;
    eprintln!(
        "epoch {epoch} of {} written to {} (timm layout)",
        run.display(),
        dest.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn eval(raw: &[String]) -> Result<ExitCode, String> {
    let args = Args::parse(
        raw,
        &["dataset-pixels"],
        &["model", "data", "limit", "confusion", "backend"],
    )?;
    let (_, device) = pick_backend(&args)?;
    let (name, ck) = load_model(&args)?;
    let mut classifier = Classifier::new(&ck, device);
    if args.flag("dataset-pixels") {
        // Feed the images as training saw them: no photo steps (invert, fit).
        classifier.preprocess.photo = Default::default();
    }
    let test = vitrine::fashion_mnist::load_split(&dataset_dir(&args)?, "t10k")
        .map_err(|e| e.to_string())?;
    let n = args.number("limit", test.len())?.min(test.len());
    let t0 = now_ms();
    let confusion = vitrine::fashion_mnist::confusion(&classifier, &test, 0..n)?;
    eprintln!("model: {name}");
    let correct: usize = (0..10).map(|c| confusion[c][c]).sum();
    println!(
        "top-1 {:.2}% ({correct}/{n} Fashion-MNIST test images, {:.1} s)",
        100.0 * correct as f64 / n as f64,
        (now_ms() - t0) / 1000.0
    );
    for (c, row) in confusion.iter().enumerate() {
        let total: usize = row.iter().sum();
        println!(
            "  {:<12} {:6.2}%",
            vitrine::fashion_mnist::LABELS[c],
            100.0 * row[c] as f64 / total.max(1) as f64
        );
    }
    if let Some(path) = args.value("confusion") {
        std::fs::write(path, confusion_svg(&confusion))
            .map_err(|e| format!("cannot write {path}: {e}"))?;
        eprintln!("confusion matrix written to {path}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A confusion matrix as SVG: rows are true classes, columns predictions, cells row-normalised.
fn confusion_svg(m: &[[usize; 10]; 10]) -> String {
    let labels = vitrine::fashion_mnist::LABELS;
    let (cell, left, top) = (44, 96, 96);
    let size = left + 10 * cell + 10;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{size}\" height=\"{size}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"14\" text-anchor=\"middle\" font-size=\"13\">predicted</text>\n\
         <text x=\"14\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\" transform=\"rotate(-90 14 {})\">true</text>\n",
        left + 5 * cell,
        top + 5 * cell,
        top + 5 * cell
    );
    for (i, label) in labels.iter().enumerate() {
        let y = top + i * cell + cell / 2 + 4;
        s += &format!(
            "<text x=\"{}\" y=\"{y}\" text-anchor=\"end\">{label}</text>\n",
            left - 6
        );
        let x = left + i * cell + cell / 2;
        s += &format!(
            "<text x=\"{x}\" y=\"{}\" text-anchor=\"start\" transform=\"rotate(-45 {x} {})\">{label}</text>\n",
            top - 8,
            top - 8
        );
    }
    for (r, row) in m.iter().enumerate() {
        let total = row.iter().sum::<usize>().max(1) as f32;
        for (c, &v) in row.iter().enumerate() {
            let frac = v as f32 / total;
            let [red, green, blue] = explain::viridis(frac);
            let (x, y) = (left + c * cell, top + r * cell);
            let ink = if frac > 0.6 { "black" } else { "white" };
            s += &format!(
                "<rect x=\"{x}\" y=\"{y}\" width=\"{cell}\" height=\"{cell}\" fill=\"rgb({red},{green},{blue})\"/>\
                 <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{ink}\">{v}</text>\n",
                x + cell / 2,
                y + cell / 2 + 4
            );
        }
    }
    s + "</svg>\n"
}
