//! Checkpoints → model: the two layouts people download (timm's hub layout
//! and transformers' families), as safetensors or PyTorch files, from paths
//! or bytes.
//!
//! Loading is two steps. [`Checkpoint::from_bytes`] parses and checks
//! everything on the host (names, shapes, dtypes, configs) and fails with a
//! typed [`CheckpointError`] naming the tensor or field at fault;
//! [`Checkpoint::build`] then uploads the weights and cannot fail.
//! HF names are translated to timm's in one table, [`HF_TO_TIMM`]; the
//! tensors themselves are read off the model's own structure
//! ([`tensors`]).
//!
//! - [`error`]: what went wrong, in words
//! - [`names`]: the naming schemes
//! - [`config`]: the config readers
//! - [`tensors`]: the model's tensors under timm's names and PyTorch's layouts
//! - [`pos_embed`]: position embeddings for another input size

mod config;
mod error;
mod names;
pub mod pos_embed;
mod tensors;

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::Device;

pub use config::{default_labels, timm_config_json};
use config::{hf_config, hf_preprocess, infer_config, parse_json, timm_config};
pub use error::{CheckpointError, F16Matrices, MemoryLimits};
pub use names::HfFamily;
pub use names::{HF_TO_TIMM, Layout};
use names::{detect_layout, fuse_qkv, hf_to_timm, hf_unused};
pub use tensors::timm_tensors;

use crate::model::{Pool, VisionTransformer, VitConfig};
use crate::preprocess::{PreprocessConfig, Resize};
use crate::safetensors::{Dtype, SafeTensors};

/// One tensor in PyTorch layout, with the name the file used.
#[derive(Clone, Debug)]
struct Entry {
    shape: Vec<usize>,
    values: Stored,
    original: String,
}

/// A tensor's values as the loader holds them: f16 as the file stored it
/// (widening it is exact, so keeping it loses nothing and holds half the
/// bytes until the device), every other type widened to f32.
#[derive(Clone, Debug)]
enum Stored {
    // (Halves are read as their little-endian bytes, here and in the matrix kernel.)
    F32(Vec<f32>),
    F16(Vec<half::f16>),
}

const _: () = assert!(
    cfg!(target_endian = "little"),
    "f16 weights are read as little-endian bytes"
);

impl Stored {
    fn len(&self) -> usize {
        match self {
            Stored::F32(v) => v.len(),
            Stored::F16(v) => v.len(),
        }
    }

    fn into_f32(self) -> Vec<f32> {
        match self {
            Stored::F32(v) => v,
            Stored::F16(v) => {
                // SAFETY: f16 is two plain bytes, little-endian on every
                // target vitrine builds for (x86-64, aarch64, wasm32).
                let bytes =
                    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), 2 * v.len()) };
                crate::ops::lanes::widen_halves(bytes)
            }
        }
    }

    /// The first value that is infinite or NaN: (index, how many there
    /// are, the value).
    fn not_finite(&self) -> Option<(usize, usize, f32)> {
        fn find<T: Copy>(
            v: &[T],
            bad: impl Fn(T) -> bool,
            f32: impl Fn(T) -> f32,
        ) -> Option<(usize, usize, f32)> {
            let first = v.iter().position(|&x| bad(x))?;
            Some((first, v.iter().filter(|&&x| bad(x)).count(), f32(v[first])))
        }
        match self {
            Stored::F32(v) => find(v, |x| !x.is_finite(), |x| x),
            // All exponent bits set: an infinity or a NaN.
            Stored::F16(v) => find(v, |h| h.to_bits() & 0x7c00 == 0x7c00, half::f16::to_f32),
        }
    }

    /// The parts one after another: f16 if they all are, else f32.
    fn concat(parts: Vec<Stored>) -> Stored {
        if parts.iter().all(|p| matches!(p, Stored::F16(_))) {
            Stored::F16(
                parts
                    .into_iter()
                    .flat_map(|p| match p {
                        Stored::F16(v) => v,
                        Stored::F32(_) => unreachable!("all f16"),
                    })
                    .collect(),
            )
        } else {
            Stored::F32(parts.into_iter().flat_map(Stored::into_f32).collect())
        }
    }
}

/// A checked checkpoint, ready to be built on a device.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The architecture.
    pub config: VitConfig,
    /// How images must be prepared for it.
    pub preprocess: PreprocessConfig,
    /// One label per class.
    pub labels: Vec<String>,
    /// The naming scheme the file used.
    pub layout: Layout,
    /// What was assumed or inferred rather than read from a config, for the user.
    pub notes: Vec<String>,
    /// For a PyTorch training checkpoint, the key its weights were read
    /// from (DINO's `teacher`), and every key that holds weights.
    pub weights_key: Option<String>,
    pub weights_keys: Vec<String>,
    /// timm name → tensor, PyTorch layout.
    weights: BTreeMap<String, Entry>,
    /// Whether [`Checkpoint::build`] keeps f16 weight matrices in f16.
    keep_f16: bool,
}

impl Checkpoint {
    /// Loads a weights file or a directory holding one (`model.safetensors`,
    /// else `pytorch_model.bin`, `model.pth`, `model.pt` or a single other
    /// `.pth`/`.pt`/`.bin`) with `config.json` and, optionally,
    /// `preprocessor_config.json`. A file path picks up `config.json` and
    /// `preprocessor_config.json` beside it.
    pub fn from_path(path: &Path) -> Result<Self, CheckpointError> {
        Self::from_path_with_key(path, None)
    }

    /// [`Checkpoint::from_path`], reading a PyTorch checkpoint's weights
    /// from under `key` (e.g. DINO's `student`) when given.
    pub fn from_path_with_key(path: &Path, key: Option<&str>) -> Result<Self, CheckpointError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| CheckpointError::Io {
                path: p.display().to_string(),
                message: e.to_string(),
            })
        };
        let (weights_path, dir) = if path.is_dir() {
            (weights_in(path)?, path)
        } else {
            (path.to_path_buf(), path.parent().unwrap_or(Path::new(".")))
        };
        let optional = |name: &str| {
            let p = dir.join(name);
            if p.is_file() {
                read(&p).map(Some)
            } else {
                Ok(None)
            }
        };
        let weights = read(&weights_path)?;
        let config = optional("config.json")?;
        let preprocessor = optional("preprocessor_config.json")?;
        let name = weights_path.file_name().map_or_else(
            || "the weights".into(),
            |n| n.to_string_lossy().into_owned(),
        );
        Self::from_file_bytes(
            &weights,
            config.as_deref(),
            preprocessor.as_deref(),
            &MemoryLimits::unlimited(),
            &WeightsFile {
                key,
                ..WeightsFile::named(&name)
            },
        )
    }

    /// vitrine's own default model (trained on Fashion-MNIST, shipped in
    /// `www/models/fashion-vit/`), embedded in native builds so the CLI
    /// needs no `--model`. The page fetches the same files from the site.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn default_model() -> Self {
        const WEIGHTS: &[u8] = include_bytes!("../../www/models/fashion-vit/model.safetensors");
        const CONFIG: &[u8] = include_bytes!("../../www/models/fashion-vit/config.json");
        Self::from_bytes(WEIGHTS, Some(CONFIG), None).expect("the shipped default model loads")
    }

    /// Loads from the bytes of `model.safetensors`, `config.json` and
    /// `preprocessor_config.json` (the latter two optional).
    pub fn from_bytes(
        weights: &[u8],
        config: Option<&[u8]>,
        preprocessor: Option<&[u8]>,
    ) -> Result<Self, CheckpointError> {
        Self::from_bytes_within(weights, config, preprocessor, &MemoryLimits::unlimited())
    }

    /// [`Checkpoint::from_bytes`], refusing (before any weight is widened to
    /// f32) a model that `limits` cannot hold.
    pub fn from_bytes_within(
        weights: &[u8],
        config: Option<&[u8]>,
        preprocessor: Option<&[u8]>,
        limits: &MemoryLimits,
    ) -> Result<Self, CheckpointError> {
        let file = WeightsFile::named("the weights file");
        Self::from_file_bytes(weights, config, preprocessor, limits, &file)
    }

    /// [`Checkpoint::from_bytes_within`] for weights that may be a
    /// safetensors file or what `torch.save` writes (told by their first
    /// bytes), named and keyed as `file` says.
    pub fn from_file_bytes(
        weights: &[u8],
        config: Option<&[u8]>,
        preprocessor: Option<&[u8]>,
        limits: &MemoryLimits,
        file: &WeightsFile,
    ) -> Result<Self, CheckpointError> {
        let file_progress = file.progress;
        let mut notes = Vec::new();
        let (mut weights_key, mut weights_keys) = (None, Vec::new());
        let file = if crate::pytorch::is_torch(weights) {
            let torch = crate::pytorch::parse(weights, file.name, file.key)?;
            notes.extend(torch.notes);
            (weights_key, weights_keys) = (torch.key, torch.keys);
            torch.tensors
        } else {
            SafeTensors::parse(weights)?
        };
        // Bytes the weights take in memory: f32, but two bytes for each
        // value of a matrix kept in f16 (`f16` says which: the file's f16
        // ones, or any, were the file saved in f16).
        let total = |f16: &dyn Fn(&crate::safetensors::TensorView) -> bool| {
            file.tensors
                .values()
                .map(|v| v.numel() as u64 * if v.shape.len() == 2 && f16(v) { 2 } else { 4 })
                .sum::<u64>()
        };
        for (name, view) in &file.tensors {
            let bytes = view.numel() as u64 * 4;
            if bytes > limits.max_tensor_bytes {
                return Err(CheckpointError::TooLarge {
                    tensor: Some(name.clone()),
                    bytes,
                    limit: limits.max_tensor_bytes,
                    device: limits.device.clone(),
                    held_as: "as f32",
                    advice: None,
                });
            }
        }
        let as_f32 = total(&|_| false);
        let file_f16 = |v: &crate::safetensors::TensorView| v.dtype == Dtype::F16;
        let keep_f16 = match limits.f16_matrices {
            F16Matrices::Widen => false,
            F16Matrices::Keep => true,
            F16Matrices::KeepIfNeeded => as_f32 > limits.max_total_bytes,
        } && file
            .tensors
            .values()
            .any(|v| file_f16(v) && v.shape.len() == 2);
        // The whole model over the budget, counted with or without f16 matrices.
        let over_budget = |bytes, keep_f16, advice| CheckpointError::TooLarge {
            tensor: None,
            bytes,
            limit: limits.max_total_bytes,
            device: limits.device.clone(),
            held_as: if keep_f16 {
                "with its f16 matrices kept in f16"
            } else {
                "as f32"
            },
            advice,
        };
        let needed = if keep_f16 { total(&file_f16) } else { as_f32 };
        if needed > limits.max_total_bytes {
            let in_f16 = total(&|_| true);
            let all_f16 = file.tensors.values().all(file_f16);
            let advice = (in_f16 <= limits.max_total_bytes).then(|| {
                format!(
                    "with its weight matrices kept in f16 it needs {}, which fits: {}",
                    error::human_bytes(in_f16),
                    if all_f16 {
                        "the CPU backend keeps an f16 file's matrices in f16 \
                         (unless told to widen them)"
                    } else {
                        "save the checkpoint in f16 (PyTorch: `model.half()`) \
                         and load that on the CPU backend"
                    }
                )
            });
            return Err(over_budget(needed, keep_f16, advice));
        }
        let layout = detect_layout(file.tensors.keys())?;

        let mut tensors = BTreeMap::new();
        let mut unused = std::collections::BTreeSet::new();
        let file_bytes: u64 = file.tensors.values().map(|v| v.byte_len() as u64).sum();
        let mut converted = 0u64;
        for (name, view) in &file.tensors {
            converted += view.byte_len() as u64;
            let timm = match layout {
                Layout::Timm => name.clone(),
                Layout::HuggingFace(family) => {
                    if let Some(why) = hf_unused(name, family) {
                        unused.insert(why);
                        continue;
                    }
                    hf_to_timm(name, family).unwrap_or_else(|| name.clone())
                }
            };
            let values = match view.dtype {
                Dtype::F16 => Stored::F16(view.to_halves()),
                _ => Stored::F32(view.to_f32()),
            };
            if let Some(report) = file_progress {
                report(LoadStage::Converting, converted, file_bytes);
            }
            if let Some((first, count, value)) = values.not_finite() {
                return Err(CheckpointError::NotFinite {
                    tensor: name.clone(),
                    count,
                    first,
                    value,
                });
            }
            let entry = Entry {
                shape: view.shape.clone(),
                values,
                original: name.clone(),
            };
            tensors.insert(timm, entry);
        }
        if let Layout::HuggingFace(family) = layout {
            fuse_qkv(&mut tensors, family)?;
        }
        // What the tensors will take as they are now held: q/k/v of mixed
        // types were fused in f32, and only matrices can stay f16.
        let f16_matrix = |e: &Entry| matches!(e.values, Stored::F16(_)) && e.shape.len() == 2;
        let keep_f16 = keep_f16 && tensors.values().any(f16_matrix);
        let held: u64 = tensors
            .values()
            .map(|e| e.values.len() as u64 * if keep_f16 && f16_matrix(e) { 2 } else { 4 })
            .sum();
        if held > limits.max_total_bytes {
            return Err(over_budget(held, keep_f16, None));
        }
        if keep_f16 && limits.f16_matrices == F16Matrices::KeepIfNeeded {
            notes.push(format!(
                "weight matrices kept in f16, as the file stores them ({} in memory): as f32 \
                 they would need {}, more than the {} {} allows; the results are the same",
                error::human_bytes(held),
                error::human_bytes(as_f32),
                error::human_bytes(limits.max_total_bytes),
                limits.device
            ));
        }
        notes.extend(unused.into_iter().map(String::from));
        let has_head = tensors.contains_key("head.weight");

        let config_json = config.map(|b| parse_json(b, "config.json")).transpose()?;
        let pre_json = preprocessor
            .map(|b| parse_json(b, "preprocessor_config.json"))
            .transpose()?;

        let (config, preprocess, labels, implied_by) = match &config_json {
            Some(json) if json.get("architecture").is_some() => {
                let (c, p, l) = timm_config(json)?;
                (c, p, l, "config.json".to_string())
            }
            Some(json) => {
                let Layout::HuggingFace(family) = layout else {
                    return Err(CheckpointError::BadConfig {
                        file: "config.json".into(),
                        reason: "a transformers config (no `architecture`) beside tensors \
                                 named as timm names them"
                            .into(),
                    });
                };
                let (c, l) = hf_config(json, family, has_head)?;
                let p = hf_preprocess(
                    pre_json.as_ref(),
                    c.in_chans,
                    default_processor(family),
                    c.img_size,
                )?;
                (c, p, l, "config.json".to_string())
            }
            None => {
                let (c, how) = infer_config(&tensors, layout)?;
                notes.push(format!("no config.json: {how}"));
                let p = match layout {
                    Layout::Timm => PreprocessConfig::timm_default(c.in_chans, c.img_size),
                    Layout::HuggingFace(family) => hf_preprocess(
                        pre_json.as_ref(),
                        c.in_chans,
                        default_processor(family),
                        c.img_size,
                    )?,
                };
                if layout == Layout::Timm || pre_json.is_none() {
                    notes.push(format!("preprocessing assumed: {}", p.describe()));
                }
                (c, p, None, "the other tensors".to_string())
            }
        };
        config
            .validate()
            .map_err(|reason| CheckpointError::BadConfig {
                file: "config.json".into(),
                reason,
            })?;
        let [_, input_h, input_w] = preprocess.input_size;
        // transformers' DINOv2 interpolates its position embeddings to any
        // input (its configs say 518 px, its processors crop 224): so does vitrine.
        let dinov2_elsewhere = layout == Layout::HuggingFace(HfFamily::Dinov2)
            && preprocess.input_size[0] == config.in_chans
            && [input_h, input_w] != config.img_size;
        if !dinov2_elsewhere
            && preprocess.input_size != [config.in_chans, config.img_size[0], config.img_size[1]]
        {
            let [c, h, w] = preprocess.input_size;
            let from = if pre_json.is_some() && layout.is_hf() {
                "preprocessor_config.json"
            } else {
                "config.json"
            };
            return Err(CheckpointError::BadConfig {
                file: from.into(),
                reason: format!(
                    "the preprocessing gives {c}×{h}×{w} inputs, but the model takes {}×{}×{}",
                    config.in_chans, config.img_size[0], config.img_size[1]
                ),
            });
        }

        tensors::check(&tensors, &config, layout, &implied_by)?;
        if !config.has_head() {
            let features = match config.global_pool {
                Pool::Token => "the class token's",
                Pool::TokenAndDistillation => "the class and distillation tokens' mean",
                Pool::TokenAndAvg => "the class token's and the patches' mean",
                Pool::Avg | Pool::Max | Pool::AvgMax => "the pooled patches'",
            };
            notes.push(format!(
                "no classifier: a backbone, whose output is {features} {} features; \
                 the attention maps show where it looks",
                config.pooled_dim()
            ));
        }
        // Made only now that the head's tensors bear the class count out.
        let labels = labels.unwrap_or_else(|| default_labels(config.num_classes));
        let checkpoint = Self {
            config,
            preprocess,
            labels,
            layout,
            notes,
            weights_key,
            weights_keys,
            weights: tensors,
            keep_f16,
        };
        if dinov2_elsewhere {
            return checkpoint.with_positions_for([input_h, input_w]);
        }
        Ok(checkpoint)
    }

    /// The same checkpoint at another input size [height, width]: its
    /// position embeddings interpolated to the new patch grid as the
    /// checkpoint's own library does it (timm: bicubic with antialias;
    /// transformers: bicubic), its preprocessing resizing to that size (a
    /// transformers resize before a centre crop is scaled with it).
    pub fn at_image_size(self, size: [usize; 2]) -> Result<Self, CheckpointError> {
        let [_, ih, iw] = self.preprocess.input_size;
        if size == self.config.img_size {
            return Ok(self);
        }
        let mut resized = self.with_positions_for(size)?;
        let p = &mut resized.preprocess;
        let c = p.input_size[0];
        let scale = |v: usize, new: usize, old: usize| (v * new + old / 2) / old;
        p.resize = p.resize.map(|r| match r {
            Resize::Exact([rh, rw]) => {
                Resize::Exact([scale(rh, size[0], ih), scale(rw, size[1], iw)])
            }
            Resize::ShortestEdge(e) => {
                Resize::ShortestEdge(scale(e, size[0].min(size[1]), ih.min(iw)))
            }
        });
        p.input_size = [c, size[0], size[1]];
        Ok(resized)
    }

    /// The model at input size `size`, its position embeddings interpolated
    /// as the checkpoint's library does it; the preprocessing unchanged.
    fn with_positions_for(mut self, size: [usize; 2]) -> Result<Self, CheckpointError> {
        let old = self.config.clone();
        let mut config = old.clone();
        config.img_size = size;
        config
            .validate()
            .map_err(|reason| CheckpointError::BadConfig {
                file: "the image size asked for".into(),
                reason,
            })?;
        let (from, to) = (old.grid(), config.grid());
        let how = match self.layout {
            Layout::Timm => pos_embed::PosResize::Timm,
            Layout::HuggingFace(_) => pos_embed::PosResize::Transformers,
        };
        let d = config.embed_dim;
        let entry = self
            .weights
            .get_mut("pos_embed")
            .expect("a checked checkpoint has position embeddings");
        let prefix = old.pos_embed_len() - old.num_patches();
        let mut values = std::mem::replace(&mut entry.values, Stored::F32(Vec::new())).into_f32();
        let grid = pos_embed::resize_grid(&values[prefix * d..], from, to, d, how);
        values.truncate(prefix * d);
        values.extend(grid);
        entry.values = Stored::F32(values);
        entry.shape = vec![1, config.pos_embed_len(), d];
        self.notes.push(format!(
            "running at {}×{} px: position embeddings interpolated from {}×{} to {}×{} patches ({})",
            size[0],
            size[1],
            from[0],
            from[1],
            to[0],
            to[1],
            match how {
                pos_embed::PosResize::Timm => "bicubic with antialias, as timm does",
                pos_embed::PosResize::Transformers => "bicubic, as transformers does",
            }
        ));
        self.config = config;
        Ok(self)
    }

    /// This checkpoint built with the weight matrices its file stores in f16
    /// (every block's query/key/value, projection and MLP weights, and the
    /// head's) kept in f16 on Burn's plain CPU device: half their memory,
    /// and the same results bit for bit in the browser, since the matrix
    /// kernel widens them exactly as it reads them (natively it is
    /// vitrine's kernel instead of the gemm crate's: equal within float32
    /// rounding). Other devices, and other tensors, get f32 as before.
    pub fn keeping_f16(mut self) -> Self {
        self.keep_f16 = true;
        self
    }

    /// Uploads the weights to `device` as a model. Each tensor's host copy
    /// is freed as soon as it is on the device, so loading never holds the
    /// weights twice.
    pub fn build(self, device: &Device) -> VisionTransformer {
        self.build_reporting(device, &|_, _, _| ())
    }

    /// [`Checkpoint::build`], telling `progress` how many weights are on
    /// the device so far ([`LoadStage::Building`]).
    pub fn build_reporting(self, device: &Device, progress: Progress) -> VisionTransformer {
        let keep_f16 = self.keep_f16 && crate::ops::kernels::is_plain_cpu(device);
        tensors::load(self.weights, &self.config, device, keep_f16, progress)
    }
}

/// A step of loading a checkpoint, for progress bars.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadStage {
    /// The file's tensors read (f16 kept as f16, others widened to f32) and
    /// checked; counted in the file's tensor bytes.
    Converting,
    /// The weights laid out for the model and put on its device (uploaded,
    /// on a GPU); counted in weights.
    Building,
}

impl LoadStage {
    /// The stage's name, as the page's worker reports it.
    pub fn name(self) -> &'static str {
        match self {
            LoadStage::Converting => "converting",
            LoadStage::Building => "building",
        }
    }
}

/// Told how far a load has come: `(stage, done, total)`.
pub type Progress<'a> = &'a dyn Fn(LoadStage, u64, u64);

/// What the loader knows of a weights file besides its bytes.
#[derive(Clone, Copy)]
pub struct WeightsFile<'a> {
    /// Its name, for messages (`model.pth`).
    pub name: &'a str,
    /// For a PyTorch checkpoint, the key its weights sit under (default:
    /// the first of [`crate::pytorch::STATE_DICT_KEYS`] it has).
    pub key: Option<&'a str>,
    /// Told how much of the file is converted ([`LoadStage::Converting`]).
    pub progress: Option<Progress<'a>>,
}

impl<'a> WeightsFile<'a> {
    /// A file of this name, its default key, no progress reports.
    pub fn named(name: &'a str) -> Self {
        Self {
            name,
            key: None,
            progress: None,
        }
    }
}

/// The weights file of a model folder: `model.safetensors`, else the
/// PyTorch files a hub repository or a training run leaves.
fn weights_in(dir: &Path) -> Result<std::path::PathBuf, CheckpointError> {
    for name in [
        "model.safetensors",
        "pytorch_model.bin",
        "model.pth",
        "model.pt",
    ] {
        if dir.join(name).is_file() {
            return Ok(dir.join(name));
        }
    }
    let mut others: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension().is_some_and(|e| {
                    ["safetensors", "pth", "pt", "bin"].contains(&&*e.to_string_lossy())
                })
        })
        .collect();
    others.sort();
    let io = |message: String| CheckpointError::Io {
        path: dir.display().to_string(),
        message,
    };
    match others.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(io(
            "no weights here: vitrine looks for model.safetensors, pytorch_model.bin, \
             model.pth, model.pt or one other .safetensors/.pth/.pt/.bin file"
                .into(),
        )),
        several => Err(io(format!(
            "{} weights files and none named model.safetensors, pytorch_model.bin, \
             model.pth or model.pt: name the one to load ({})",
            several.len(),
            several
                .iter()
                .filter_map(|p| p.file_name())
                .map(|n| n.to_string_lossy())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The image processor a transformers family's checkpoints use when their
/// `preprocessor_config.json` names none.
fn default_processor(family: HfFamily) -> &'static str {
    match family {
        HfFamily::Vit => "ViTImageProcessor",
        HfFamily::Deit => "DeiTImageProcessor",
        HfFamily::Dinov2 => "BitImageProcessor",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Tensor;

    /// A small random model and its timm files: weights (f16 or f32) and config.json.
    struct Exported {
        cfg: VitConfig,
        model: VisionTransformer,
        pre: PreprocessConfig,
        labels: Vec<String>,
        bytes: Vec<u8>,
        json: Vec<u8>,
    }

    fn exported(device: &Device, f16: bool) -> Exported {
        let cfg = VitConfig::new([16, 24], 8, 32, 2, 2, 48)
            .with_in_chans(1)
            .with_num_classes(3);
        let model = cfg.init(device);
        let pre = PreprocessConfig::timm_default(1, cfg.img_size);
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let bytes = crate::safetensors::serialize(&timm_tensors(&model), f16);
        let json = serde_json::to_vec(&timm_config_json(&cfg, &pre, &labels)).unwrap();
        Exported {
            cfg,
            model,
            pre,
            labels,
            bytes,
            json,
        }
    }

    #[test]
    fn export_round_trips_through_the_loader() {
        let device = Device::flex();
        let Exported {
            cfg,
            model,
            pre,
            labels,
            bytes,
            json,
        } = exported(&device, false);
        let ck = Checkpoint::from_bytes(&bytes, Some(&json), None).unwrap();
        assert_eq!(ck.config, cfg);
        assert_eq!((ck.preprocess.clone(), ck.labels.clone()), (pre, labels));
        let x = Tensor::<4>::random([1, 1, 16, 24], burn::tensor::Distribution::Default, &device);
        let a: Vec<f32> = model.forward(x.clone()).into_data().try_to_vec().unwrap();
        let b: Vec<f32> = ck
            .build(&device)
            .forward(x)
            .into_data()
            .try_to_vec()
            .unwrap();
        assert_eq!(a, b);
    }

    /// `keeping_f16` keeps exactly the weight matrices in f16, with the
    /// file's values: every tensor read back is the f32 model's, and the
    /// forward pass agrees within float32 rounding (natively the f16
    /// matrices go through vitrine's kernel, the f32 ones through gemm's).
    #[test]
    fn kept_f16_matrices_hold_the_same_weights_in_half_the_bytes() {
        use burn::tensor::DType;
        let device = Device::flex();
        let Exported { bytes, json, .. } = exported(&device, true);
        let ck = Checkpoint::from_bytes(&bytes, Some(&json), None).unwrap();
        let wide = ck.clone().build(&device);
        let kept = ck.keeping_f16().build(&device);
        for b in &kept.blocks {
            for w in [&b.attn.qkv, &b.attn.proj, &b.mlp.fc1, &b.mlp.fc2] {
                assert_eq!(w.weight.val().dtype(), DType::F16);
                assert_eq!(w.bias.as_ref().unwrap().val().dtype(), DType::F32);
            }
            assert_eq!(b.norm1.gamma.val().dtype(), DType::F32);
        }
        assert_eq!(kept.head.as_ref().unwrap().weight.val().dtype(), DType::F16);
        assert_eq!(kept.patch_embed.proj.weight.val().dtype(), DType::F32);
        assert_eq!(kept.pos_embed.val().dtype(), DType::F32);
        assert_eq!(timm_tensors(&kept), timm_tensors(&wide));

        let x = Tensor::<4>::random([2, 1, 16, 24], burn::tensor::Distribution::Default, &device);
        let a: Vec<f32> = wide.forward(x.clone()).into_data().try_to_vec().unwrap();
        let b: Vec<f32> = kept.forward(x).into_data().try_to_vec().unwrap();
        let largest = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (a, b) in a.iter().zip(&b) {
            assert!((a - b).abs() <= 1e-5 * largest, "{a} vs {b}");
        }
        // Elsewhere (autodiff, for training) the matrices stay f32.
        let ck = Checkpoint::from_bytes(&bytes, Some(&json), None).unwrap();
        let trained = ck.keeping_f16().build(&device.clone().autodiff());
        assert_eq!(trained.blocks[0].attn.qkv.weight.val().dtype(), DType::F32);
    }

    /// q, k and v fused: f16 when all three are, else every part widened.
    #[test]
    fn fused_parts_keep_f16_only_together() {
        let h = |v: &[f32]| Stored::F16(v.iter().map(|&x| half::f16::from_f32(x)).collect());
        let all = Stored::concat(vec![h(&[1.0]), h(&[2.0, -0.5]), h(&[3.0])]);
        assert!(matches!(&all, Stored::F16(v) if v.len() == 4));
        let mixed = Stored::concat(vec![h(&[1.0]), Stored::F32(vec![2.5]), h(&[-0.5])]);
        assert!(matches!(&mixed, Stored::F32(v) if v == &[1.0, 2.5, -0.5]));
    }

    #[test]
    fn a_load_reports_each_stage_to_its_end() {
        let device = Device::flex();
        // f16 in the file: two bytes a weight to convert.
        let Exported {
            model, bytes, json, ..
        } = exported(&device, true);
        let seen = std::cell::RefCell::new(Vec::new());
        let report = |stage, done, total| seen.borrow_mut().push((stage, done, total));
        let file = WeightsFile {
            progress: Some(&report),
            ..WeightsFile::named("model.safetensors")
        };
        let ck = Checkpoint::from_file_bytes(
            &bytes,
            Some(&json),
            None,
            &MemoryLimits::unlimited(),
            &file,
        )
        .unwrap();
        ck.build_reporting(&device, &report);
        let seen = seen.into_inner();
        let weights = burn::module::Module::num_params(&model) as u64;
        for (stage, total) in [
            (LoadStage::Converting, 2 * weights),
            (LoadStage::Building, weights),
        ] {
            let steps: Vec<_> = seen.iter().filter(|s| s.0 == stage).collect();
            assert!(steps.len() > 1, "{stage:?}: {steps:?}");
            assert!(steps.iter().all(|s| s.2 == total), "{stage:?}: {steps:?}");
            assert!(steps.windows(2).all(|w| w[0].1 <= w[1].1), "{stage:?}");
            assert_eq!(
                steps.last().unwrap().1,
                total,
                "{stage:?} ends at its total"
            );
        }
        // Converting comes first, then building.
        let first_building = seen.iter().position(|s| s.0 == LoadStage::Building);
        assert!(
            seen[first_building.unwrap()..]
                .iter()
                .all(|s| s.0 == LoadStage::Building)
        );
    }
}
