//! vitrine's command line: one file per subcommand (classify, bench,
//! walkthrough; train, eval and export for the default model), the flag
//! parser and what they share here.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use vitrine::Checkpoint;
use vitrine::backend::{self, BackendKind};
use vitrine::checkpoint::LoadOptions;
use vitrine::checkpoint::hf_cache::HubRef;

mod bench;
mod classify;
mod fetch;
mod hub;
mod train;
mod walkthrough;

use bench::bench;
use classify::classify;
use fetch::fetch;
use train::{eval, export, train};
use walkthrough::walkthrough;

const USAGE: &str = "\
usage:
  vitrine classify IMAGE... [--model PATH] [--top K] [--json] [--overlay OUT.png]
                   [--layer L] [--head H|mean|rollout] [--colormap NAME] [--image-size N|HxW]
                   [--backend cpu|wgpu] [--checkpoint-key KEY]
                   [--explain grad-rollout|chefer [--class K] [--discard-ratio R]]
  vitrine bench [--backend cpu|wgpu] [--arch NAME | --model PATH] [--batch N] [--runs N] [--warmup N] [--explain] [--ceiling] [--json]
  vitrine train [--data DIR] [--out DIR] [--epochs N] [--batch N] [--threads N]
                [--teacher-epochs N] [--weight-decay X] [--label-smoothing X]
                [--distill-weight X] [--embed-dim N] [--depth N] [--heads N] [--mlp-ratio N]
  vitrine walkthrough IMAGE [--model PATH] [--layer L] [--head H] [--patches I,J,...]
                      [--image-size N|HxW] [--checkpoint-key KEY] [--pca-with IMAGE,...]
  vitrine fetch ORG/NAME[@REVISION]... [--out DIR [--manifest FILE]]
  vitrine export [--run DIR] [--epoch N] [--out DIR]
  vitrine export --arch NAME [--out DIR]
  vitrine eval [--model PATH] [--data DIR] [--limit N] [--confusion OUT.svg] [--dataset-pixels]
               [--backend cpu|wgpu]

PATH is a .safetensors file, a PyTorch file (.pth, .pt, pytorch_model.bin: read
without running its pickle), or a directory with one of them, config.json and
optionally preprocessor_config.json (timm or transformers layout), or
hf:ORG/NAME[@REVISION], a model of the Hugging Face Hub, read from the Hugging
Face cache (HF_HUB_CACHE, HF_HOME: where timm, transformers and huggingface_hub
put it) and downloaded there first when missing (HF_ENDPOINT, HF_TOKEN;
HF_HUB_OFFLINE=1: the cache only; an unreachable Hub: the cache). fetch
downloads without running and prints the model's folder; --out copies its
files to DIR (a static site's own copy) and --manifest lists that copy in
the site's models/manifest.json; without
--model, vitrine's own Fashion-MNIST model (built in) is used. --checkpoint-key
reads a PyTorch checkpoint's weights from under KEY (e.g. DINO's `student`;
default: state_dict, model, teacher, … whichever it has).
--layer counts from 0 (default: the last layer); --head picks one head, the mean over
heads (default) or `rollout` (attention rollout over all layers); --colormap is
viridis (default), magma, inferno, cividis or gray. --image-size runs the model at
another input size, its position embeddings interpolated as timm or transformers do.
--explain draws (with --overlay) and reports (with --json) why the model chose a
class: gradient-weighted attention rollout (jacobgil/vit-explain) or Chefer et al.'s
relevance (ICCV 2021), for class K (an index; default: the top class); --discard-ratio
is the share of each layer's weighted attention grad-rollout drops (default 0.9).
export --arch writes a timm architecture (vit_small_patch16_224, …) with random
weights, a stand-in of a real checkpoint's size for trying big models offline.

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
        Some("fetch") => fetch(&raw[1..]),
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

/// Where `--model` points: a file or folder, or for `hf:org/name[@rev]`
/// that model's files in the Hugging Face cache, downloaded if missing.
fn model_path(arg: &str) -> Result<PathBuf, String> {
    match HubRef::parse(arg) {
        None => Ok(PathBuf::from(arg)),
        Some(Err(e)) => Err(e),
        Some(Ok(model)) => hub::hub_from_env().snapshot(&model),
    }
}

/// The checkpoint `--model PATH` names, or the embedded default model, at
/// `--image-size` when given.
fn load_model(args: &Args) -> Result<(String, Checkpoint), String> {
    let mut options = LoadOptions::new().checkpoint_key(args.value("checkpoint-key"));
    if let Some(v) = args.value("image-size") {
        // N, or HxW.
        let size = match v.split_once('x') {
            None => v.parse::<usize>().ok().map(|n| [n, n]),
            Some((h, w)) => h.parse().ok().zip(w.parse().ok()).map(|(h, w)| [h, w]),
        }
        .filter(|s| s.iter().all(|&n| n > 0))
        .ok_or_else(|| format!("--image-size must be N or HxW (pixels), got `{v}`"))?;
        options = options.image_size(size);
    }
    match args.value("model") {
        Some(path) => options
            .open(&model_path(path)?)
            .map(|c| (path.to_string(), c))
            .map_err(|e| format!("cannot load model {path}: {e}")),
        None => Checkpoint::default_model_with(&options)
            .map(|c| ("fashion-vit (built in)".to_string(), c))
            .map_err(|e| format!("cannot load the built-in model: {e}")),
    }
}
