//! A mutation fuzzer for every parser that reads a user's bytes, on stable
//! Rust: safetensors headers and data, PyTorch zip archives and their
//! pickles, `config.json` (timm and transformers),
//! `preprocessor_config.json`, image files and the photo steps.
//!
//! Each case takes valid files (the test fixtures, the default model, the
//! sample images), mutates them — bit flips, truncation, spliced bytes,
//! header lengths that lie, JSON values replaced by extremes (2⁶³, -1,
//! 1e308, unicode, deep nesting), duplicate keys, shapes and offsets
//! rewritten, NaN/Inf and huge values written into the weights — and feeds
//! them to the same functions the CLI and the page use. A case fails when it
//! panics, takes longer than [`SLOW_CASE`], makes a single allocation larger
//! than its input justifies, or classifies an image into numbers that are
//! not probabilities. A loaded checkpoint is also run on an image.
//!
//! `cargo test --release --test fuzz` replays the findings kept in
//! `tests/fixtures/fuzz/` and then fuzzes for `VITRINE_FUZZ_SECONDS` (20
//! by default) from seed `VITRINE_FUZZ_SEED` (0 by default, so the short run
//! in `./build.sh test` is the same cases every time); `./build.sh fuzz
//! [SECONDS]` runs longer from a fresh seed. A finding is written to
//! `test-output/fuzz/` with its seed; kept under `tests/fixtures/fuzz/NAME/`
//! (the files `model.safetensors`, `config.json`, `preprocessor_config.json`
//! or `image`), it is replayed by every run.

mod common;

use pollster::FutureExt;
use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use burn::tensor::Device;
use vitrine::checkpoint::LoadOptions;
use vitrine::{Checkpoint, Classifier, F16Matrices, MemoryLimits};

use common::fixtures;
use mutate::{Rng, mutate_bytes, mutate_json, mutate_pickle, mutate_safetensors};

// The mutations, in a folder of its own (a file at tests/ would be a test of its own).
#[path = "fuzz/mutate.rs"]
mod mutate;

/// A case slower than this is a finding (a hang, or work out of proportion).
const SLOW_CASE: Duration = Duration::from_secs(20);

/// Tracks the largest single allocation, so a case can check that no
/// buffer was sized from a number the input does not bear out.
struct Tracking;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// One input: a checkpoint's files or an image file.
#[derive(Clone)]
enum Case {
    Checkpoint {
        weights: Vec<u8>,
        config: Option<Vec<u8>>,
        preprocessor: Option<Vec<u8>>,
    },
    Image(Vec<u8>),
}

impl Case {
    fn bytes(&self) -> usize {
        match self {
            Case::Checkpoint {
                weights,
                config,
                preprocessor,
            } => {
                weights.len()
                    + config.as_ref().map_or(0, Vec::len)
                    + preprocessor.as_ref().map_or(0, Vec::len)
            }
            Case::Image(b) => b.len(),
        }
    }

    fn write(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        match self {
            Case::Checkpoint {
                weights,
                config,
                preprocessor,
            } => {
                std::fs::write(dir.join("model.safetensors"), weights).unwrap();
                if let Some(c) = config {
                    std::fs::write(dir.join("config.json"), c).unwrap();
                }
                if let Some(p) = preprocessor {
                    std::fs::write(dir.join("preprocessor_config.json"), p).unwrap();
                }
            }
            Case::Image(b) => std::fs::write(dir.join("image"), b).unwrap(),
        }
    }

    fn read(dir: &Path) -> Self {
        let optional = |name: &str| std::fs::read(dir.join(name)).ok();
        match optional("image") {
            Some(b) => Case::Image(b),
            None => Case::Checkpoint {
                weights: optional("model.safetensors").expect("model.safetensors or image"),
                config: optional("config.json"),
                preprocessor: optional("preprocessor_config.json"),
            },
        }
    }
}

/// The valid files every mutation starts from.
struct Corpus {
    checkpoints: Vec<Case>,
    images: Vec<Vec<u8>>,
    /// The corpus images that decode, for a loaded checkpoint to classify.
    decoded: Vec<image::RgbaImage>,
    /// Preprocessing configs of the valid checkpoints, for the image cases.
    preprocess: Vec<vitrine::PreprocessConfig>,
}

fn corpus() -> Corpus {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut dirs: Vec<PathBuf> = ["timm_tiny", "timm_d96", "timm_gray", "hf_vit"]
        .iter()
        .map(|m| fixtures().join("models").join(m))
        .collect();
    dirs.push(root.join("www/models/fashion-vit"));
    let mut checkpoints: Vec<Case> = dirs.iter().map(|d| Case::read(d)).collect();
    // PyTorch files (timm_d96's weights, as a zip archive and in the format
    // before 1.6), for their reader.
    let Case::Checkpoint { config, .. } = Case::read(&dirs[1]) else {
        unreachable!()
    };
    for file in ["torch/timm_d96.pth", "torch/timm_d96_legacy.pth"] {
        checkpoints.push(Case::Checkpoint {
            weights: std::fs::read(fixtures().join(file)).unwrap(),
            config: config.clone(),
            preprocessor: None,
        });
    }
    let preprocess = dirs
        .iter()
        .map(|d| Checkpoint::from_path(d).expect("fixture loads").preprocess)
        .collect();
    let mut images = Vec::new();
    for dir in [
        fixtures().join("images"),
        fixtures().join("inputs"),
        root.join("www/samples"),
    ] {
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            // The 108-megapixel PNG is refused whole; mutating it costs seconds a case.
            if name.ends_with(".json") || name.starts_with("huge") {
                continue;
            }
            images.push(std::fs::read(&p).unwrap());
        }
    }
    let decoded = images
        .iter()
        .filter_map(|b| vitrine::decode::decode_image(b).ok())
        .filter(|img| img.width() * img.height() <= 1 << 20)
        .collect();
    Corpus {
        checkpoints,
        images,
        decoded,
        preprocess,
    }
}

/// A mutation of one of the corpus inputs.
fn mutate(corpus: &Corpus, rng: &mut Rng) -> Case {
    if rng.chance(3) {
        let img = rng.pick(&corpus.images);
        let other = rng.pick(&corpus.images);
        return Case::Image(mutate_bytes(img, rng, other));
    }
    let Case::Checkpoint {
        mut weights,
        mut config,
        mut preprocessor,
    } = rng.pick(&corpus.checkpoints).clone()
    else {
        unreachable!()
    };
    let Case::Checkpoint {
        weights: other,
        config: other_config,
        ..
    } = rng.pick(&corpus.checkpoints).clone()
    else {
        unreachable!()
    };
    let mut touched = false;
    while !touched {
        if rng.chance(2) {
            weights = if weights.starts_with(b"PK") && rng.chance(2) {
                mutate_pickle(&weights, rng, &other)
            } else {
                mutate_safetensors(&weights, rng, &other)
            };
            touched = true;
        }
        if rng.chance(2) {
            config = match config {
                Some(_) if rng.chance(12) => None,
                Some(c) if rng.chance(10) => other_config.clone().or(Some(c)),
                Some(c) => Some(mutate_json(&c, rng)),
                None => other_config.clone(),
            };
            touched = true;
        }
        if rng.chance(4) {
            preprocessor = match preprocessor {
                Some(p) => Some(mutate_json(&p, rng)),
                None => {
                    Some(br#"{"do_resize": true, "size": {"height": 96, "width": 96}}"#.to_vec())
                }
            };
            touched = true;
        }
    }
    Case::Checkpoint {
        weights,
        config,
        preprocessor,
    }
}

/// What a case did, when it did not fail.
#[derive(Default)]
struct Tally {
    loaded: usize,
    refused: usize,
    classified: usize,
    not_a_number: usize,
}

/// Runs one case; `Err` describes a finding.
fn run(case: &Case, corpus: &Corpus, rng_seed: u64, tally: &mut Tally) -> Result<(), String> {
    LARGEST.store(0, Ordering::Relaxed);
    let t0 = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        run_inner(case, corpus, rng_seed, tally)
    }));
    let elapsed = t0.elapsed();
    let largest = LARGEST.load(Ordering::Relaxed);
    match outcome {
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            return Err(format!("panicked: {msg}"));
        }
        Ok(Err(e)) => return Err(e),
        Ok(Ok(())) => {}
    }
    if elapsed > SLOW_CASE {
        return Err(format!("took {elapsed:?}"));
    }
    // A loaded model holds its weights as f32 (2x an f16 file), the model on
    // the device a copy, plus activations and the image: 64 MiB plus 8 bytes
    // per input byte bears every valid case out with room to spare.
    let allowed = (64 << 20) + 8 * case.bytes();
    if largest > allowed {
        return Err(format!(
            "made a single allocation of {largest} bytes from {} bytes of input",
            case.bytes()
        ));
    }
    Ok(())
}

fn run_inner(case: &Case, corpus: &Corpus, seed: u64, tally: &mut Tally) -> Result<(), String> {
    let mut rng = Rng(seed);
    match case {
        Case::Image(bytes) => {
            let Ok(img) = vitrine::decode::decode_image(bytes) else {
                tally.refused += 1;
                return Ok(());
            };
            tally.loaded += 1;
            let pre = rng.pick(&corpus.preprocess);
            if let Ok(p) =
                vitrine::preprocess::prepare(img.as_raw(), img.width(), img.height(), pre)
                && p.input.iter().any(|v| !v.is_finite())
            {
                return Err("preprocessing gave values that are not finite".into());
            }
            Ok(())
        }
        Case::Checkpoint {
            weights,
            config,
            preprocessor,
        } => {
            let limits = MemoryLimits {
                max_tensor_bytes: 256 << 20,
                max_total_bytes: 512 << 20,
                device: "the fuzzer".into(),
            };
            let ck = match LoadOptions::new()
                .limits(limits)
                .f16_matrices(F16Matrices::Keep)
                .load(weights, config.as_deref(), preprocessor.as_deref())
            {
                Ok(ck) => ck,
                Err(e) => {
                    let m = e.to_string();
                    if m.is_empty() {
                        return Err("an error with an empty message".into());
                    }
                    tally.refused += 1;
                    return Ok(());
                }
            };
            tally.loaded += 1;
            // An f16 file's matrices kept in f16, as the page's CPU module
            // does for a model too large for f32.
            let classifier = Classifier::new(ck.clone(), Device::flex());
            let img = rng.pick(&corpus.decoded);
            match classifier
                .classify(
                    img.as_raw(),
                    img.width(),
                    img.height(),
                    Some(ck.config.depth - 1),
                )
                .block_on()
            {
                Ok(p) => {
                    tally.classified += 1;
                    let sum: f32 = p.probabilities.iter().sum();
                    if p.probabilities.iter().any(|v| !v.is_finite() || *v < 0.0)
                        || (sum - 1.0).abs() > 1e-3
                    {
                        return Err(format!(
                            "probabilities that are not probabilities (sum {sum})"
                        ));
                    }
                    if p.logits.len() != ck.labels.len() {
                        return Err("a label count that differs from the class count".into());
                    }
                }
                Err(vitrine::ClassifyError::NotANumber { .. }) => tally.not_a_number += 1,
                Err(e) => return Err(format!("could not classify a corpus image: {e}")),
            }
            Ok(())
        }
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The seed of case `index` of the run seeded with `seed`.
fn case_seed(seed: u64, index: u64) -> u64 {
    let mut rng = Rng(seed);
    (0..index).for_each(|_| {
        rng.next();
    });
    rng.next()
}

const TEST_NAME: &str = "hostile_inputs_get_errors_not_crashes";

/// The fuzzer proper, in a child process (so that an abort, a stack
/// overflow or a hang is a finding, not the end of the run): replays the
/// kept findings when starting from case 0, then runs cases from
/// `VITRINE_FUZZ_START` until `VITRINE_FUZZ_SECONDS` have passed. It
/// prints `case I` before each case, `finding: …` for each finding and a
/// `summary: …` line at the end.
fn child() {
    let corpus = corpus();
    std::panic::set_hook(Box::new(|_| {})); // a panic is reported once, as a finding
    let mut tally = Tally::default();
    let seed = env_number("VITRINE_FUZZ_SEED", 0);
    let start = env_number("VITRINE_FUZZ_START", 0);
    let budget = Duration::from_secs(env_number("VITRINE_FUZZ_SECONDS", 20));
    let kept = fixtures().join("fuzz");
    let mut replayed = 0;
    if start == 0 && kept.is_dir() {
        let mut dirs: Vec<_> = std::fs::read_dir(&kept)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|d| d.is_dir())
            .collect();
        dirs.sort();
        for dir in dirs {
            println!("replay {}", dir.display());
            replayed += 1;
            if let Err(e) = run(&Case::read(&dir), &corpus, 0, &mut tally) {
                println!("finding: {}: {e}", dir.display());
            }
        }
    }
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test-output/fuzz");
    let t0 = Instant::now();
    let mut index = start;
    let mut rng = Rng(seed);
    (0..start).for_each(|_| {
        rng.next();
    });
    let mut found = 0;
    while t0.elapsed() < budget && found < 20 {
        let this = rng.next(); // = case_seed(seed, index)
        println!("case {index}");
        let case = mutate(&corpus, &mut Rng(this));
        if let Err(e) = run(&case, &corpus, this, &mut tally) {
            let dir = out.join(format!("seed-{seed}-case-{index}"));
            case.write(&dir);
            println!(
                "finding: seed {seed}, case {index} (written to {}): {e}",
                dir.display()
            );
            found += 1;
        }
        index += 1;
    }
    println!(
        "summary: seed {seed}, {replayed} kept findings replayed, cases {start}..{index} in {:.0?}: \
         {} loaded (of which {} classified, {} refused as not a number), {} refused with an error",
        t0.elapsed(),
        tally.loaded,
        tally.classified,
        tally.not_a_number,
        tally.refused,
    );
}

#[test]
fn hostile_inputs_get_errors_not_crashes() {
    if std::env::var("VITRINE_FUZZ_CHILD").is_ok() {
        return child();
    }
    let seed = env_number("VITRINE_FUZZ_SEED", 0);
    let budget = Duration::from_secs(env_number("VITRINE_FUZZ_SECONDS", 20));
    let deadline = Instant::now() + budget;
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test-output/fuzz");
    let mut findings = Vec::new();
    let mut start = 0u64;
    loop {
        let left = deadline.saturating_duration_since(Instant::now()).as_secs();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env("VITRINE_FUZZ_CHILD", "1")
            .env("VITRINE_FUZZ_SEED", seed.to_string())
            .env("VITRINE_FUZZ_START", start.to_string())
            .env("VITRINE_FUZZ_SECONDS", left.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the fuzzer's child process starts");
        let stdout = child.stdout.take().unwrap();
        let lines = std::thread::spawn(move || {
            use std::io::BufRead;
            std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        let stderr = child.stderr.take().unwrap();
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut { stderr }, &mut text).ok();
            text
        });
        // A hang: the child gets its budget plus one slow case, then is killed.
        let kill_at =
            Instant::now() + Duration::from_secs(left) + SLOW_CASE + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > kill_at {
                child.kill().ok();
                child.wait().ok();
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let lines = lines.join().unwrap();
        let stderr = errors.join().unwrap();
        for l in &lines {
            if let Some(f) = l.strip_prefix("finding: ") {
                findings.push(f.to_string());
            } else if l.starts_with("summary: ") {
                println!("fuzz {l}");
            }
        }
        if status.is_some_and(|s| s.success()) && lines.iter().any(|l| l.starts_with("summary: ")) {
            break;
        }
        // The child died (or hung) in the last case it announced.
        let last = lines
            .iter()
            .rev()
            .find(|l| l.starts_with("case ") || l.starts_with("replay "));
        let how = match status {
            None => "did not finish (killed)".to_string(),
            Some(s) => format!("crashed the process ({s})"),
        };
        let tail: String = stderr.lines().rev().take(3).collect::<Vec<_>>().join(" / ");
        match last
            .and_then(|l| l.strip_prefix("case "))
            .and_then(|i| i.parse::<u64>().ok())
        {
            Some(index) => {
                let case = mutate(&corpus(), &mut Rng(case_seed(seed, index)));
                let dir = out.join(format!("seed-{seed}-case-{index}"));
                case.write(&dir);
                findings.push(format!(
                    "seed {seed}, case {index} (written to {}): {how}: {tail}",
                    dir.display()
                ));
                start = index + 1;
            }
            None => {
                findings.push(format!(
                    "{}: {how}: {tail}",
                    last.map_or("the fuzzer", |l| l.as_str())
                ));
                break;
            }
        }
        if Instant::now() >= deadline || findings.len() >= 20 {
            break;
        }
    }
    assert!(findings.is_empty(), "findings:\n{}", findings.join("\n"));
}
