//! Checkpoints → model, in stages, each in its own place:
//!
//! 1. bytes → named tensors: [`safetensors`], or [`pytorch`] (its zip
//!    reader and restricted unpickler) for what `torch.save` writes;
//! 2. the memory budget, before any value is read ([`budget`]), then the
//!    values, each checked finite ([`stored`]);
//! 3. the family's converter: the file's names → the model's (timm's), one
//!    pure pass over the name → tensor map ([`family`], a file a family);
//! 4. the model's config, from `config.json` and `preprocessor_config.json`
//!    or inferred from the shapes ([`config`]), and every tensor checked
//!    against it ([`tensors`]);
//! 5. at the input size asked for, position embeddings interpolated as the
//!    checkpoint's library does it ([`pos_embed`]);
//! 6. [`Checkpoint::build`]: the weights on a device, which cannot fail.
//!
//! Every step before the last fails with a typed [`CheckpointError`] naming
//! the tensor or field at fault. [`LoadOptions`] holds every choice a load
//! takes. docs/adding-a-family.md is the recipe for a new family.

mod budget;
mod config;
mod error;
mod family;
#[cfg(not(target_arch = "wasm32"))]
pub mod hf_cache;
pub mod pos_embed;
pub mod pytorch;
pub mod safetensors;
mod stored;
mod tensors;

use std::path::Path;

use burn::tensor::Device;

pub use budget::{F16Matrices, MemoryLimits};
pub use config::{IMAGENET_1K, IMAGENET_SETS, ImageNetSet, default_labels, timm_config_json};
pub use error::CheckpointError;
pub use family::{HF_TO_TIMM, HfFamily, Layout};
use stored::{Entry, Stored};
pub use tensors::timm_tensors;

use crate::model::{Pool, VisionTransformer, VitConfig};
use crate::preprocess::PreprocessConfig;

/// A checked checkpoint, ready to be built on a device.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The architecture.
    pub config: VitConfig,
    /// How images must be prepared for it.
    pub preprocess: PreprocessConfig,
    /// One label per class.
    pub labels: Vec<String>,
    /// Where `labels` are placeholders for names this build does not
    /// carry (the page's ImageNet-21k sets): the set, whose names the
    /// page fetches from `labels/{set}.txt`.
    pub labels_file: Option<&'static str>,
    /// The naming scheme the file used.
    pub layout: Layout,
    /// What was assumed or inferred rather than read from a config, for the user.
    pub notes: Vec<String>,
    /// The model's name as its config gives it: timm's architecture
    /// (`vit_small_patch16_224.dino`), transformers' repo
    /// (`facebook/dino-vits16`) or class; `None` without a config.
    pub name: Option<String>,
    /// For a PyTorch training checkpoint, the key its weights were read
    /// from (DINO's `teacher`), and every key that holds weights.
    pub weights_key: Option<String>,
    pub weights_keys: Vec<String>,
    /// The input size [height, width] the checkpoint runs at by itself,
    /// before [`LoadOptions::image_size`].
    pub native_size: [usize; 2],
    /// timm name → tensor, PyTorch layout.
    weights: std::collections::BTreeMap<String, Entry>,
    /// Whether [`Checkpoint::build`] keeps f16 weight matrices in f16.
    keep_f16: bool,
}

/// Every choice a load takes, each with its default, set one by one and
/// then used, as `std::fs::OpenOptions` is:
///
/// ```no_run
/// # use vitrine::checkpoint::{LoadOptions, F16Matrices};
/// let ck = LoadOptions::new()
///     .checkpoint_key("teacher")
///     .image_size([480, 480])
///     .f16_matrices(F16Matrices::Keep)
///     .open(std::path::Path::new("dino_deitsmall8_pretrain_full_checkpoint.pth"));
/// ```
#[derive(Clone)]
pub struct LoadOptions<'a> {
    file_name: &'a str,
    checkpoint_key: Option<&'a str>,
    image_size: Option<[usize; 2]>,
    f16_matrices: F16Matrices,
    limits: MemoryLimits,
    progress: Option<Progress<'a>>,
}

impl Default for LoadOptions<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> LoadOptions<'a> {
    /// The defaults: no limits, f16 matrices widened, the checkpoint's own
    /// input size, a PyTorch checkpoint's first weights key.
    pub fn new() -> Self {
        Self {
            file_name: "the weights file",
            checkpoint_key: None,
            image_size: None,
            f16_matrices: F16Matrices::Widen,
            limits: MemoryLimits::unlimited(),
            progress: None,
        }
    }

    /// The weights file's name, for messages (`model.pth`); [`Self::open`]
    /// sets it from the path.
    pub fn file_name(mut self, name: &'a str) -> Self {
        self.file_name = name;
        self
    }

    /// For a PyTorch training checkpoint, the key its weights sit under
    /// (e.g. DINO's `student`; `None`, the default: the first of
    /// [`pytorch::STATE_DICT_KEYS`] the file has).
    pub fn checkpoint_key(mut self, key: impl Into<Option<&'a str>>) -> Self {
        self.checkpoint_key = key.into();
        self
    }

    /// Runs the model at `size` [height, width]: its position embeddings
    /// interpolated to the new patch grid as the checkpoint's own library
    /// does it (timm: bicubic with antialias; transformers: bicubic), its
    /// preprocessing resizing to that size (a transformers resize before a
    /// centre crop scaled with it).
    pub fn image_size(mut self, size: [usize; 2]) -> Self {
        self.image_size = Some(size);
        self
    }

    /// What happens to the matrices a file stores in f16.
    pub fn f16_matrices(mut self, policy: F16Matrices) -> Self {
        self.f16_matrices = policy;
        self
    }

    /// Refuses, before any weight is widened, a model these limits cannot hold.
    pub fn limits(mut self, limits: MemoryLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Told how much of the file is read ([`LoadStage::Converting`]).
    pub fn progress(mut self, progress: Progress<'a>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Loads a weights file or a directory holding one (`model.safetensors`,
    /// else `pytorch_model.bin`, `model.pth`, `model.pt` or a single other
    /// `.pth`/`.pt`/`.bin`) with `config.json` and, optionally,
    /// `preprocessor_config.json`. A file path picks up `config.json` and
    /// `preprocessor_config.json` beside it.
    pub fn open(&self, path: &Path) -> Result<Checkpoint, CheckpointError> {
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
        self.clone()
            .file_name(&name)
            .load(&weights, config.as_deref(), preprocessor.as_deref())
    }

    /// Loads from the bytes of the weights (safetensors, or what
    /// `torch.save` writes: told by their first bytes), `config.json` and
    /// `preprocessor_config.json` (the latter two optional).
    pub fn load(
        &self,
        weights: &[u8],
        config: Option<&[u8]>,
        preprocessor: Option<&[u8]>,
    ) -> Result<Checkpoint, CheckpointError> {
        let mut notes = Vec::new();
        // 1. Bytes → named tensors (views of the bytes).
        let (mut weights_key, mut weights_keys) = (None, Vec::new());
        let file = if pytorch::is_torch(weights) {
            let torch = pytorch::parse(weights, self.file_name, self.checkpoint_key)?;
            notes.extend(torch.notes);
            (weights_key, weights_keys) = (torch.key, torch.keys);
            torch.tensors
        } else {
            safetensors::SafeTensors::parse(weights).map_err(|e| {
                // Named as PyTorch's but neither of its formats: say so,
                // rather than that it is no safetensors file.
                let torch_name = [".bin", ".pth", ".pt"]
                    .iter()
                    .any(|ext| self.file_name.to_ascii_lowercase().ends_with(ext));
                match e {
                    safetensors::SafetensorsError::NotSafetensors { .. } if torch_name => {
                        CheckpointError::Torch(pytorch::TorchError(format!(
                            "{} is not a PyTorch checkpoint (neither the zip archive torch.save writes nor its legacy format), nor a safetensors file: is it damaged, or another kind of file?",
                            self.file_name
                        )))
                    }
                    e => e.into(),
                }
            })?
        };
        // 2. The budget, then the values.
        let plan = budget::plan(&file, &self.limits, self.f16_matrices)?;
        let layout = family::detect(file.tensors.keys())?;
        let tensors = stored::read(&file, self.progress)?;
        // 3. The family's names → the model's.
        let (tensors, unused) = family::convert(layout, tensors)?;
        let (keep_f16, note) =
            budget::check_held(&tensors, &plan, &self.limits, self.f16_matrices)?;
        notes.extend(note);
        notes.extend(unused.into_iter().map(String::from));
        // 4. The config, and every tensor checked against it.
        let configured = config::configure(layout, config, preprocessor, &tensors)?;
        notes.extend(configured.notes);
        tensors::check(&tensors, &configured.config, layout, &configured.implied_by)?;
        let config = configured.config;
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
        let (labels, labels_file) = match configured.labels {
            Some(labels) => (labels, None),
            // timm's rule: a classifier of 1,000 unnamed classes is
            // ImageNet-1k's, of 21,841–21,843 one of ImageNet-21k's.
            None => match ImageNetSet::of(config.num_classes) {
                Some(set) => {
                    notes.push(format!(
                        "its config names no classes: {}'s, as timm assumes for {} classes",
                        set.title,
                        thousands(set.classes)
                    ));
                    match set.names() {
                        Some(names) => (names, None),
                        None => (default_labels(config.num_classes), Some(set.name)),
                    }
                }
                None => (default_labels(config.num_classes), None),
            },
        };
        let mut checkpoint = Checkpoint {
            name: configured.name,
            native_size: config.img_size,
            config,
            preprocess: configured.preprocess,
            labels,
            labels_file,
            layout,
            notes,
            weights_key,
            weights_keys,
            weights: tensors,
            keep_f16,
        };
        // 5. At the input size its processor gives, or the one asked for.
        if let Some(size) = configured.positions_for {
            checkpoint = checkpoint.with_positions_for(size)?;
            checkpoint.native_size = size;
        }
        match self.image_size {
            Some(size) => checkpoint.at_image_size(size),
            None => Ok(checkpoint),
        }
    }
}

impl Checkpoint {
    /// [`LoadOptions::open`] with the defaults.
    pub fn from_path(path: &Path) -> Result<Self, CheckpointError> {
        LoadOptions::new().open(path)
    }

    /// [`LoadOptions::load`] with the defaults.
    pub fn from_bytes(
        weights: &[u8],
        config: Option<&[u8]>,
        preprocessor: Option<&[u8]>,
    ) -> Result<Self, CheckpointError> {
        LoadOptions::new().load(weights, config, preprocessor)
    }

    /// vitrine's own default model (trained on Fashion-MNIST, shipped in
    /// `www/models/fashion-vit/`), embedded in native builds so the CLI
    /// needs no `--model`. The page fetches the same files from the site.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn default_model() -> Self {
        Self::default_model_with(&LoadOptions::new()).expect("the shipped default model loads")
    }

    /// [`Checkpoint::default_model`] loaded with `options` (at another
    /// input size, say).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn default_model_with(options: &LoadOptions) -> Result<Self, CheckpointError> {
        const WEIGHTS: &[u8] = include_bytes!("../../www/models/fashion-vit/model.safetensors");
        const CONFIG: &[u8] = include_bytes!("../../www/models/fashion-vit/config.json");
        options.load(WEIGHTS, Some(CONFIG), None)
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

/// 21843 as "21,843".
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
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
        let bytes = crate::checkpoint::safetensors::serialize(&timm_tensors(&model), f16);
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

    /// `F16Matrices::Keep` keeps exactly the weight matrices in f16, with the
    /// file's values: every tensor read back is the f32 model's, and the
    /// forward pass agrees within float32 rounding (natively the f16
    /// matrices go through vitrine's kernel, the f32 ones through gemm's).
    #[test]
    fn kept_f16_matrices_hold_the_same_weights_in_half_the_bytes() {
        use burn::tensor::DType;
        let device = Device::flex();
        let Exported { bytes, json, .. } = exported(&device, true);
        let ck = Checkpoint::from_bytes(&bytes, Some(&json), None).unwrap();
        let wide = ck.build(&device);
        let keep = LoadOptions::new().f16_matrices(F16Matrices::Keep);
        let kept = keep.load(&bytes, Some(&json), None).unwrap().build(&device);
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
        let ck = keep.load(&bytes, Some(&json), None).unwrap();
        let trained = ck.build(&device.clone().autodiff());
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
        let ck = LoadOptions::new()
            .progress(&report)
            .load(&bytes, Some(&json), None)
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
