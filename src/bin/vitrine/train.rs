//! `vitrine train`, `eval` and `export`: the default model's training run,
//! its accuracy on Fashion-MNIST, and its checkpoint for the page.

use std::path::PathBuf;
use std::process::ExitCode;

use vitrine::Classifier;
use vitrine::backend::now_ms;
use vitrine::explain::{self};

use super::{Args, load_model, pick_backend};

/// The Fashion-MNIST folder, installing Debian's package when the default one is missing.
fn dataset_dir(args: &Args) -> Result<PathBuf, String> {
    if let Some(d) = args.value("data") {
        return Ok(PathBuf::from(d));
    }
    let dir = PathBuf::from(vitrine::train::data::DEBIAN_DIR);
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

pub fn train(raw: &[String]) -> Result<ExitCode, String> {
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

pub fn export(raw: &[String]) -> Result<ExitCode, String> {
    let args = Args::parse(raw, &[], &["run", "epoch", "out", "arch"])?;
    if let Some(arch) = args.value("arch") {
        return export_random(arch, args.value("out"));
    }
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

/// A timm architecture with random weights (timm's initialisation scale),
/// written as a timm-layout folder: a stand-in of a real checkpoint's size
/// for benchmarks and tests, with no download.
fn export_random(arch: &str, out: Option<&str>) -> Result<ExitCode, String> {
    let config =
        vitrine::VitConfig::preset(arch).ok_or_else(|| format!("unknown architecture `{arch}`"))?;
    let dest = PathBuf::from(out.unwrap_or(arch));
    let model = config.init(&burn::tensor::Device::flex());
    let preprocess =
        vitrine::preprocess::PreprocessConfig::timm_default(config.in_chans, config.img_size);
    let labels = vitrine::checkpoint::default_labels(config.num_classes);
    vitrine::train::write_timm_dir(&model, &config, &preprocess, &labels, &dest)?;
    eprintln!(
        "{arch} with random weights ({:.1} M parameters, f16) written to {}",
        burn::module::Module::num_params(&model) as f64 / 1e6,
        dest.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn eval(raw: &[String]) -> Result<ExitCode, String> {
    let args = Args::parse(
        raw,
        &["dataset-pixels"],
        &["model", "data", "limit", "confusion", "backend"],
    )?;
    let (_, device) = pick_backend(&args)?;
    let (name, ck) = load_model(&args)?;
    let mut classifier = Classifier::new(ck, device);
    if args.flag("dataset-pixels") {
        // Feed the images as training saw them: no photo steps (invert, fit).
        classifier.preprocess.photo = Default::default();
    }
    let test = vitrine::train::data::load_split(&dataset_dir(&args)?, "t10k")
        .map_err(|e| e.to_string())?;
    let n = args.number("limit", test.len())?.min(test.len());
    let t0 = now_ms();
    let confusion = vitrine::train::eval::confusion(&classifier, &test, 0..n)?;
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
            vitrine::train::data::LABELS[c],
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
    let labels = vitrine::train::data::LABELS;
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
