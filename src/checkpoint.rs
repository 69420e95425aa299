//! Checkpoints → model: the two layouts people download (timm's hub layout
//! and transformers' `ViTForImageClassification`), from paths or bytes.
//!
//! Loading is two steps. [`Checkpoint::from_bytes`] parses and checks
//! everything on the host (names, shapes, dtypes, configs) and fails with a
//! typed [`CheckpointError`] naming the tensor or field at fault;
//! [`Checkpoint::build`] then uploads the weights and cannot fail.
//! HF names are translated to timm's in one table, [`HF_TO_TIMM`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use burn::module::Param;
use burn::nn::{LayerNormConfig, Linear};
use burn::tensor::{Device, Tensor, TensorData};
use serde_json::Value;

use crate::model::{Attention, Block, Mlp, PatchEmbed, VisionTransformer, VitConfig};
use crate::preprocess::{CropMode, Interpolation, PreprocessConfig};
use crate::safetensors::SafeTensors;

/// Why a checkpoint could not be loaded. Every variant names what was wrong.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckpointError {
    /// A file could not be read.
    Io { path: String, message: String },
    /// The bytes are not a safetensors file at all.
    NotSafetensors { reason: String },
    /// The header length field claims more bytes than the file has.
    HeaderTooLarge { declared: u64, file_len: u64 },
    /// A tensor's data lies (partly) past the end of the file.
    Truncated {
        tensor: String,
        needed: u64,
        file_len: u64,
    },
    /// A header entry is malformed.
    BadHeader { tensor: String, reason: String },
    /// A tensor is stored in a type other than f32, f16, bf16 or f64.
    UnsupportedDtype { tensor: String, dtype: String },
    /// The tensor names are neither timm's nor transformers' ViT names.
    UnknownLayout { sample: Vec<String> },
    /// A tensor the model needs is absent.
    MissingKey { key: String },
    /// A tensor the model has no place for.
    UnexpectedKey { key: String },
    /// A tensor's shape disagrees with the config or with the other tensors.
    WrongShape {
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
        implied_by: String,
    },
    /// A config file is malformed, unsupported, or contradicts itself.
    BadConfig { file: String, reason: String },
    /// A weight is NaN or infinite (or an f64 beyond float32's range).
    NotFinite {
        tensor: String,
        /// How many of its values are not finite, and the first one's index.
        count: usize,
        first: usize,
        value: f32,
    },
    /// The model is larger than the device (or the browser) can hold.
    TooLarge {
        /// The tensor over the per-buffer limit, or `None` for the whole model.
        tensor: Option<String>,
        bytes: u64,
        limit: u64,
        device: String,
    },
}

/// 150 KB, 3.5 MB, 1024 MB: sizes as people read them.
fn human_bytes(b: u64) -> String {
    let mb = b as f64 / (1024.0 * 1024.0);
    match mb {
        m if m < 1.0 => format!("{:.0} KB", b as f64 / 1024.0),
        m if m < 10.0 => format!("{m:.1} MB"),
        m => format!("{m:.0} MB"),
    }
}

/// How much a device can hold, in bytes of f32 weights.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryLimits {
    /// The largest single buffer (WebGPU: `maxStorageBufferBindingSize`).
    pub max_tensor_bytes: u64,
    /// All weights together.
    pub max_total_bytes: u64,
    /// Named in messages, e.g. "this GPU" or "the browser's WebAssembly memory".
    pub device: String,
}

impl MemoryLimits {
    /// No limits (native).
    pub fn unlimited() -> Self {
        Self {
            max_tensor_bytes: u64::MAX,
            max_total_bytes: u64::MAX,
            device: "this machine".into(),
        }
    }
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use CheckpointError::*;
        match self {
            Io { path, message } => write!(f, "cannot read {path}: {message}"),
            TooLarge {
                tensor,
                bytes,
                limit,
                device,
            } => {
                let (bytes, limit) = (human_bytes(*bytes), human_bytes(*limit));
                match tensor {
                    Some(t) => write!(
                        f,
                        "the model is too large for {device}: tensor `{t}` needs {bytes} as f32, \
                         more than the {limit} one buffer may hold"
                    ),
                    None => write!(
                        f,
                        "the model is too large for {device}: its weights need {bytes} as f32, \
                         more than the {limit} available"
                    ),
                }
            }
            NotSafetensors { reason } => write!(f, "not a safetensors file: {reason}"),
            HeaderTooLarge { declared, file_len } => write!(
                f,
                "truncated or corrupt safetensors file: the header length field says {declared} bytes, \
                 but the whole file has {file_len}"
            ),
            Truncated {
                tensor,
                needed,
                file_len,
            } => write!(
                f,
                "truncated safetensors file: tensor `{tensor}` needs the file to be at least {needed} bytes, \
                 but it has {file_len}"
            ),
            BadHeader { tensor, reason } => {
                write!(
                    f,
                    "malformed safetensors header entry for `{tensor}`: {reason}"
                )
            }
            UnsupportedDtype { tensor, dtype } => write!(
                f,
                "tensor `{tensor}` has dtype {dtype}; only F32, F16, BF16 and F64 are supported"
            ),
            UnknownLayout { sample } => write!(
                f,
                "the tensor names are not a timm or transformers ViT (first names: {})",
                sample.join(", ")
            ),
            MissingKey { key } => write!(f, "missing tensor `{key}`"),
            UnexpectedKey { key } => write!(
                f,
                "unexpected tensor `{key}` (this ViT has no place for it)"
            ),
            WrongShape {
                tensor,
                expected,
                found,
                implied_by,
            } => write!(
                f,
                "tensor `{tensor}` has shape {found:?}, but {implied_by} implies {expected:?}"
            ),
            BadConfig { file, reason } => write!(f, "{file}: {reason}"),
            NotFinite {
                tensor,
                count,
                first,
                value,
            } => write!(
                f,
                "tensor `{tensor}` holds {count} values that are not finite numbers (the first, at \
                 index {first}, is {value}): the checkpoint is damaged"
            ),
        }
    }
}

impl std::error::Error for CheckpointError {}

/// The two naming schemes a checkpoint may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// timm: `blocks.0.attn.qkv.weight`, …
    Timm,
    /// transformers: `vit.encoder.layer.0.attention.attention.query.weight`, …
    HuggingFace,
}

/// transformers' ViT names → timm's. `{i}` is a block index; query, key and
/// value become `attn.q|k|v` here and are fused into `attn.qkv` afterwards.
/// Order matters: the first matching prefix wins.
pub const HF_TO_TIMM: &[(&str, &str)] = &[
    ("vit.embeddings.cls_token", "cls_token"),
    ("vit.embeddings.position_embeddings", "pos_embed"),
    (
        "vit.embeddings.patch_embeddings.projection.",
        "patch_embed.proj.",
    ),
    (
        "vit.encoder.layer.{i}.layernorm_before.",
        "blocks.{i}.norm1.",
    ),
    (
        "vit.encoder.layer.{i}.attention.attention.query.",
        "blocks.{i}.attn.q.",
    ),
    (
        "vit.encoder.layer.{i}.attention.attention.key.",
        "blocks.{i}.attn.k.",
    ),
    (
        "vit.encoder.layer.{i}.attention.attention.value.",
        "blocks.{i}.attn.v.",
    ),
    (
        "vit.encoder.layer.{i}.attention.output.dense.",
        "blocks.{i}.attn.proj.",
    ),
    (
        "vit.encoder.layer.{i}.layernorm_after.",
        "blocks.{i}.norm2.",
    ),
    (
        "vit.encoder.layer.{i}.intermediate.dense.",
        "blocks.{i}.mlp.fc1.",
    ),
    ("vit.encoder.layer.{i}.output.dense.", "blocks.{i}.mlp.fc2."),
    ("vit.layernorm.", "norm."),
    ("classifier.", "head."),
];

/// Rewrites `name` from one side of [`HF_TO_TIMM`] to the other.
fn translate(name: &str, to_timm: bool) -> Option<String> {
    for &(hf, timm) in HF_TO_TIMM {
        let (from, to) = if to_timm { (hf, timm) } else { (timm, hf) };
        match from.split_once("{i}") {
            None => {
                if let Some(rest) = name.strip_prefix(from) {
                    return Some(format!("{to}{rest}"));
                }
            }
            Some((head, tail)) => {
                let Some(after) = name.strip_prefix(head) else {
                    continue;
                };
                let Some((index, rest)) = after.split_once('.') else {
                    continue;
                };
                if index.parse::<usize>().is_err() {
                    continue;
                }
                if let Some(rest) = format!(".{rest}").strip_prefix(tail) {
                    return Some(format!("{}{rest}", to.replace("{i}", index)));
                }
            }
        }
    }
    None
}

/// One tensor in PyTorch layout, widened to f32, with the name the file used.
#[derive(Clone, Debug)]
struct Entry {
    shape: Vec<usize>,
    values: Vec<f32>,
    original: String,
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
    /// timm name → tensor, PyTorch layout.
    weights: BTreeMap<String, Entry>,
}

impl Checkpoint {
    /// Loads a `.safetensors` file or a directory holding `model.safetensors`
    /// with `config.json` and, optionally, `preprocessor_config.json`. A file
    /// path picks up `config.json` and `preprocessor_config.json` beside it.
    pub fn from_path(path: &Path) -> Result<Self, CheckpointError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| CheckpointError::Io {
                path: p.display().to_string(),
                message: e.to_string(),
            })
        };
        let (weights_path, dir) = if path.is_dir() {
            (path.join("model.safetensors"), path)
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
        Self::from_bytes(&weights, config.as_deref(), preprocessor.as_deref())
    }

    /// vitrine's own default model (trained on Fashion-MNIST, shipped in
    /// `www/models/fashion-vit/`), embedded in native builds so the CLI
    /// needs no `--model`. The page fetches the same files from the site.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn default_model() -> Self {
        const WEIGHTS: &[u8] = include_bytes!("../www/models/fashion-vit/model.safetensors");
        const CONFIG: &[u8] = include_bytes!("../www/models/fashion-vit/config.json");
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
        let file = SafeTensors::parse(weights)?;
        let mut total = 0u64;
        for (name, view) in &file.tensors {
            let bytes = view.numel() as u64 * 4;
            total += bytes;
            if bytes > limits.max_tensor_bytes {
                return Err(CheckpointError::TooLarge {
                    tensor: Some(name.clone()),
                    bytes,
                    limit: limits.max_tensor_bytes,
                    device: limits.device.clone(),
                });
            }
        }
        if total > limits.max_total_bytes {
            return Err(CheckpointError::TooLarge {
                tensor: None,
                bytes: total,
                limit: limits.max_total_bytes,
                device: limits.device.clone(),
            });
        }
        let layout = detect_layout(file.tensors.keys())?;
        let mut notes = Vec::new();

        let mut tensors = BTreeMap::new();
        for (name, view) in &file.tensors {
            let timm = match layout {
                Layout::Timm => name.clone(),
                Layout::HuggingFace => translate(name, true).unwrap_or_else(|| name.clone()),
            };
            let values = view.to_f32();
            if let Some(first) = values.iter().position(|v| !v.is_finite()) {
                return Err(CheckpointError::NotFinite {
                    tensor: name.clone(),
                    count: values.iter().filter(|v| !v.is_finite()).count(),
                    first,
                    value: values[first],
                });
            }
            let entry = Entry {
                shape: view.shape.clone(),
                values,
                original: name.clone(),
            };
            tensors.insert(timm, entry);
        }
        if layout == Layout::HuggingFace {
            fuse_qkv(&mut tensors)?;
        }

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
                let (c, l) = hf_config(json)?;
                let p = hf_preprocess(pre_json.as_ref(), &c)?;
                (c, p, l, "config.json".to_string())
            }
            None => {
                let (c, how) = infer_config(&tensors, layout)?;
                notes.push(format!("no config.json: {how}"));
                let p = match layout {
                    Layout::Timm => PreprocessConfig::timm_default(c.in_chans, c.img_size),
                    Layout::HuggingFace => hf_preprocess(pre_json.as_ref(), &c)?,
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
        if preprocess.input_size != [config.in_chans, config.img_size[0], config.img_size[1]] {
            return Err(CheckpointError::BadConfig {
                file: "config.json".into(),
                reason: format!(
                    "preprocessing input size {:?} does not match the model's [{}, {}, {}]",
                    preprocess.input_size, config.in_chans, config.img_size[0], config.img_size[1]
                ),
            });
        }

        check_tensors(&tensors, &config, layout, &implied_by)?;
        // Made only now that the head's tensors bear the class count out.
        let labels = labels.unwrap_or_else(|| default_labels(config.num_classes));
        Ok(Self {
            config,
            preprocess,
            labels,
            layout,
            notes,
            weights: tensors,
        })
    }

    /// Uploads the weights to `device` as a model.
    pub fn build(&self, device: &Device) -> VisionTransformer {
        let c = &self.config;
        let w = |name: &str| &self.weights[name];
        let linear = |prefix: &str| {
            let weight = w(&format!("{prefix}.weight"));
            let bias = self.weights.get(&format!("{prefix}.bias"));
            linear_from_torch(weight, bias, device)
        };
        let norm = |prefix: &str| {
            let mut ln = LayerNormConfig::new(c.embed_dim)
                .with_epsilon(c.norm_eps)
                .init(device);
            ln.gamma = param1(&w(&format!("{prefix}.weight")).values, device);
            ln.beta = Some(param1(&w(&format!("{prefix}.bias")).values, device));
            ln
        };
        let blocks = (0..c.depth)
            .map(|i| Block {
                norm1: norm(&format!("blocks.{i}.norm1")),
                attn: Attention {
                    qkv: linear(&format!("blocks.{i}.attn.qkv")),
                    proj: linear(&format!("blocks.{i}.attn.proj")),
                    num_heads: c.num_heads,
                },
                norm2: norm(&format!("blocks.{i}.norm2")),
                mlp: Mlp {
                    fc1: linear(&format!("blocks.{i}.mlp.fc1")),
                    fc2: linear(&format!("blocks.{i}.mlp.fc2")),
                },
            })
            .collect();
        let [grid_rows, grid_cols] = c.grid();
        let tokens = c.num_patches() + 1;
        VisionTransformer {
            patch_embed: PatchEmbed {
                proj: patch_proj(
                    w("patch_embed.proj.weight"),
                    w("patch_embed.proj.bias"),
                    device,
                ),
                patch_size: c.patch_size,
            },
            cls_token: param3(&w("cls_token").values, [1, 1, c.embed_dim], device),
            pos_embed: param3(&w("pos_embed").values, [1, tokens, c.embed_dim], device),
            blocks,
            norm: norm("norm"),
            head: linear("head"),
            grid_rows,
            grid_cols,
        }
    }
}

/// The model's tensors under timm's names in PyTorch layouts: the inverse of
/// [`Checkpoint::build`], for writing a timm-layout `model.safetensors`.
pub fn timm_tensors(model: &VisionTransformer) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    fn read<const D: usize>(t: Tensor<D>) -> (Vec<usize>, Vec<f32>) {
        let data = t.into_data();
        (
            data.shape().to_vec(),
            data.convert::<f32>()
                .try_into_vec::<f32>()
                .expect("f32 parameters"),
        )
    }
    fn linear(out: &mut Vec<(String, Vec<usize>, Vec<f32>)>, prefix: &str, l: &Linear) {
        let (shape, w) = read(l.weight.val());
        let [inp, o] = [shape[0], shape[1]];
        let mut t = vec![0.0; inp * o];
        for i in 0..inp {
            for j in 0..o {
                t[j * inp + i] = w[i * o + j];
            }
        }
        out.push((format!("{prefix}.weight"), vec![o, inp], t));
        if let Some(b) = &l.bias {
            let (shape, v) = read(b.val());
            out.push((format!("{prefix}.bias"), shape, v));
        }
    }
    fn norm(out: &mut Vec<(String, Vec<usize>, Vec<f32>)>, prefix: &str, n: &burn::nn::LayerNorm) {
        let (shape, g) = read(n.gamma.val());
        out.push((format!("{prefix}.weight"), shape, g));
        let (shape, b) = read(n.beta.as_ref().expect("LayerNorm with bias").val());
        out.push((format!("{prefix}.bias"), shape, b));
    }
    let mut out = Vec::new();
    let (shape, v) = read(model.cls_token.val());
    out.push(("cls_token".to_string(), shape, v));
    let (shape, v) = read(model.pos_embed.val());
    out.push(("pos_embed".to_string(), shape, v));
    // [P·P·C, D] back to the convolution kernel [D, C, P, P].
    let p = model.patch_embed.patch_size;
    let (shape, w) = read(model.patch_embed.proj.weight.val());
    let [len, d] = [shape[0], shape[1]];
    let c = len / (p * p);
    let mut kernel = vec![0.0; len * d];
    for o in 0..d {
        for ch in 0..c {
            for y in 0..p {
                for x in 0..p {
                    kernel[((o * c + ch) * p + y) * p + x] = w[((y * p + x) * c + ch) * d + o];
                }
            }
        }
    }
    out.push((
        "patch_embed.proj.weight".to_string(),
        vec![d, c, p, p],
        kernel,
    ));
    let (shape, b) = read(
        model
            .patch_embed
            .proj
            .bias
            .as_ref()
            .expect("patch bias")
            .val(),
    );
    out.push(("patch_embed.proj.bias".to_string(), shape, b));
    for (i, blk) in model.blocks.iter().enumerate() {
        norm(&mut out, &format!("blocks.{i}.norm1"), &blk.norm1);
        linear(&mut out, &format!("blocks.{i}.attn.qkv"), &blk.attn.qkv);
        linear(&mut out, &format!("blocks.{i}.attn.proj"), &blk.attn.proj);
        norm(&mut out, &format!("blocks.{i}.norm2"), &blk.norm2);
        linear(&mut out, &format!("blocks.{i}.mlp.fc1"), &blk.mlp.fc1);
        linear(&mut out, &format!("blocks.{i}.mlp.fc2"), &blk.mlp.fc2);
    }
    norm(&mut out, "norm", &model.norm);
    linear(&mut out, "head", &model.head);
    out
}

/// An f32 as the shortest decimal that reads back as it (0.286, not 0.28600001335144043).
fn short(v: f32) -> f64 {
    v.to_string()
        .parse()
        .expect("a float's own decimal form parses")
}

/// A timm hub `config.json` describing `config` exactly through `model_args`.
pub fn timm_config_json(
    config: &VitConfig,
    preprocess: &PreprocessConfig,
    labels: &[String],
) -> Value {
    let p = preprocess;
    let mut json = serde_json::json!({
        "architecture": "vit_tiny_patch16_224",
        "num_classes": config.num_classes,
        "num_features": config.embed_dim,
        "model_args": {
            "img_size": config.img_size,
            "patch_size": config.patch_size,
            "in_chans": config.in_chans,
            "embed_dim": config.embed_dim,
            "depth": config.depth,
            "num_heads": config.num_heads,
            "mlp_ratio": config.mlp_hidden as f64 / config.embed_dim as f64,
            "qkv_bias": config.qkv_bias,
        },
        "pretrained_cfg": {
            "input_size": p.input_size,
            "interpolation": serde_json::to_value(p.interpolation).expect("serialisable"),
            "crop_pct": p.crop_pct,
            "crop_mode": serde_json::to_value(p.crop_mode).expect("serialisable"),
            "mean": p.mean.iter().map(|&v| short(v)).collect::<Vec<_>>(),
            "std": p.std.iter().map(|&v| short(v)).collect::<Vec<_>>(),
            "num_classes": config.num_classes,
        },
        "label_names": labels,
    });
    if p.photo.active() {
        json["vitrine_preprocess"] = serde_json::to_value(&p.photo).expect("serialisable");
    }
    json
}

fn parse_json(bytes: &[u8], file: &str) -> Result<Value, CheckpointError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| CheckpointError::BadConfig {
        file: file.into(),
        reason: format!("not valid JSON ({e})"),
    })?;
    if !value.is_object() {
        return Err(CheckpointError::BadConfig {
            file: file.into(),
            reason: "not a JSON object".into(),
        });
    }
    Ok(value)
}

fn detect_layout<'a>(
    names: impl Iterator<Item = &'a String> + Clone,
) -> Result<Layout, CheckpointError> {
    if names
        .clone()
        .any(|n| n.starts_with("vit.") || n.starts_with("classifier."))
    {
        Ok(Layout::HuggingFace)
    } else if names
        .clone()
        .any(|n| n.starts_with("patch_embed.") || n.starts_with("blocks."))
    {
        Ok(Layout::Timm)
    } else {
        Err(CheckpointError::UnknownLayout {
            sample: names.take(5).cloned().collect(),
        })
    }
}

/// HF keeps query, key and value apart; timm fuses them as rows [q; k; v] of one matrix.
fn fuse_qkv(tensors: &mut BTreeMap<String, Entry>) -> Result<(), CheckpointError> {
    let prefixes: Vec<String> = tensors
        .keys()
        .filter_map(|k| k.strip_suffix(".attn.q.weight").map(str::to_string))
        .collect();
    for prefix in prefixes {
        for kind in ["weight", "bias"] {
            let names = ["q", "k", "v"].map(|p| format!("{prefix}.attn.{p}.{kind}"));
            if kind == "bias" && names.iter().all(|n| !tensors.contains_key(n)) {
                continue;
            }
            let mut parts = Vec::new();
            for name in &names {
                let Some(entry) = tensors.remove(name) else {
                    let key = translate(name, false).unwrap_or_else(|| name.clone());
                    return Err(CheckpointError::MissingKey { key });
                };
                parts.push(entry);
            }
            for p in &parts[1..] {
                if p.shape != parts[0].shape {
                    return Err(CheckpointError::WrongShape {
                        tensor: p.original.clone(),
                        expected: parts[0].shape.clone(),
                        found: p.shape.clone(),
                        implied_by: format!("`{}`", parts[0].original),
                    });
                }
            }
            let mut shape = parts[0].shape.clone();
            shape[0] *= 3;
            let original = parts[0].original.replace(".query.", ".{query,key,value}.");
            let values = parts.into_iter().flat_map(|p| p.values).collect();
            tensors.insert(
                format!("{prefix}.attn.qkv.{kind}"),
                Entry {
                    shape,
                    values,
                    original,
                },
            );
        }
    }
    Ok(())
}

/// The name to show the user for a timm name, in the file's own scheme.
fn display_name(timm: &str, layout: Layout) -> String {
    match layout {
        Layout::Timm => timm.to_string(),
        Layout::HuggingFace => {
            let hf = timm.replace(".attn.qkv.", ".attn.q.");
            translate(&hf, false)
                .map(|n| n.replace(".query.", ".{query,key,value}."))
                .unwrap_or_else(|| timm.to_string())
        }
    }
}

/// Every tensor the config implies, in model order, with its PyTorch shape,
/// made one at a time: a config's depth is only trusted as far as the file
/// bears it out (see [`check_tensors`]).
fn expected_tensors(c: &VitConfig) -> impl Iterator<Item = (String, Vec<usize>)> + '_ {
    let d = c.embed_dim;
    let stem = [
        ("cls_token".to_string(), vec![1, 1, d]),
        ("pos_embed".to_string(), vec![1, c.num_patches() + 1, d]),
        (
            "patch_embed.proj.weight".to_string(),
            vec![d, c.in_chans, c.patch_size, c.patch_size],
        ),
        ("patch_embed.proj.bias".to_string(), vec![d]),
    ];
    let blocks = (0..c.depth).flat_map(move |i| {
        let b = format!("blocks.{i}");
        let mut out = vec![
            (format!("{b}.norm1.weight"), vec![d]),
            (format!("{b}.norm1.bias"), vec![d]),
            (format!("{b}.attn.qkv.weight"), vec![3 * d, d]),
        ];
        if c.qkv_bias {
            out.push((format!("{b}.attn.qkv.bias"), vec![3 * d]));
        }
        out.extend([
            (format!("{b}.attn.proj.weight"), vec![d, d]),
            (format!("{b}.attn.proj.bias"), vec![d]),
            (format!("{b}.norm2.weight"), vec![d]),
            (format!("{b}.norm2.bias"), vec![d]),
            (format!("{b}.mlp.fc1.weight"), vec![c.mlp_hidden, d]),
            (format!("{b}.mlp.fc1.bias"), vec![c.mlp_hidden]),
            (format!("{b}.mlp.fc2.weight"), vec![d, c.mlp_hidden]),
            (format!("{b}.mlp.fc2.bias"), vec![d]),
        ]);
        out
    });
    let tail = [
        ("norm.weight".to_string(), vec![d]),
        ("norm.bias".to_string(), vec![d]),
        ("head.weight".to_string(), vec![c.num_classes, d]),
        ("head.bias".to_string(), vec![c.num_classes]),
    ];
    stem.into_iter().chain(blocks).chain(tail)
}

/// Every tensor the config implies is present with its shape, and nothing
/// else is. Stops at the first problem, so a config that claims far more
/// than the file holds (a depth of 2⁶³) costs no more than the file does.
fn check_tensors(
    tensors: &BTreeMap<String, Entry>,
    config: &VitConfig,
    layout: Layout,
    implied_by: &str,
) -> Result<(), CheckpointError> {
    let mut known = std::collections::HashSet::new();
    for (name, shape) in expected_tensors(config) {
        let Some((key, entry)) = tensors.get_key_value(&name) else {
            return Err(CheckpointError::MissingKey {
                key: display_name(&name, layout),
            });
        };
        if entry.shape != shape {
            return Err(CheckpointError::WrongShape {
                tensor: entry.original.clone(),
                expected: torch_shape_as_stored(&name, &shape, layout),
                found: torch_shape_as_stored(&name, &entry.shape, layout),
                implied_by: implied_by.to_string(),
            });
        }
        known.insert(key.as_str());
    }
    if let Some((_, entry)) = tensors.iter().find(|(n, _)| !known.contains(n.as_str())) {
        return Err(CheckpointError::UnexpectedKey {
            key: entry.original.clone(),
        });
    }
    Ok(())
}

/// HF stores q, k and v separately: report their shape, not the fused one.
fn torch_shape_as_stored(name: &str, shape: &[usize], layout: Layout) -> Vec<usize> {
    let mut s = shape.to_vec();
    if layout == Layout::HuggingFace && name.contains(".attn.qkv.") && !s.is_empty() {
        s[0] /= 3;
    }
    s
}

/// Reads what the tensor shapes fix when there is no config.
fn infer_config(
    tensors: &BTreeMap<String, Entry>,
    layout: Layout,
) -> Result<(VitConfig, String), CheckpointError> {
    let get = |name: &str, rank: usize| -> Result<&Entry, CheckpointError> {
        let entry = tensors
            .get(name)
            .ok_or_else(|| CheckpointError::MissingKey {
                key: display_name(name, layout),
            })?;
        if entry.shape.len() != rank {
            return Err(CheckpointError::BadHeader {
                tensor: entry.original.clone(),
                reason: format!(
                    "expected a {rank}-dimensional tensor, found shape {:?}",
                    entry.shape
                ),
            });
        }
        Ok(entry)
    };
    let patch = get("patch_embed.proj.weight", 4)?;
    let &[d, in_chans, p, p2] = patch.shape.as_slice() else {
        unreachable!()
    };
    if p != p2 {
        return Err(CheckpointError::BadHeader {
            tensor: patch.original.clone(),
            reason: format!("patches must be square, found {p}×{p2}"),
        });
    }
    let pos = get("pos_embed", 3)?;
    let tokens = pos.shape[1];
    let n = tokens.saturating_sub(1);
    let side = (n as f64).sqrt().round() as usize;
    if side * side != n || n == 0 {
        return Err(CheckpointError::BadConfig {
            file: "config.json (absent)".into(),
            reason: format!(
                "`{}` holds {n} patch positions, not a square grid; add a config.json giving the image size",
                pos.original
            ),
        });
    }
    let depth = tensors
        .keys()
        .filter_map(|k| {
            k.strip_prefix("blocks.")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .map_or(0, |m| m + 1);
    let mlp_hidden = get("blocks.0.mlp.fc1.weight", 2)?.shape[0];
    let num_classes = get("head.weight", 2)?.shape[0];
    let qkv_bias = tensors.contains_key("blocks.0.attn.qkv.bias");
    let (num_heads, heads_note) = if d % 64 == 0 {
        (d / 64, format!("heads = D/64 = {}", d / 64))
    } else {
        (
            1,
            format!("D = {d} is not a multiple of 64, so 1 head was assumed"),
        )
    };
    let norm_eps = match layout {
        Layout::Timm => 1e-6,
        Layout::HuggingFace => 1e-12,
    };
    let config = VitConfig::new([side * p, side * p], p, d, depth, num_heads, mlp_hidden)
        .with_in_chans(in_chans)
        .with_qkv_bias(qkv_bias)
        .with_norm_eps(norm_eps)
        .with_num_classes(num_classes);
    let how = format!(
        "inferred from the tensor shapes D = {d}, P = {p}, C = {in_chans}, N = {n} ({side}×{side}, so {s}×{s} pixels), \
         depth = {depth}, MLP width = {mlp_hidden}, classes = {num_classes}; {heads_note}; LayerNorm eps = {norm_eps:e}",
        s = side * p
    );
    Ok((config, how))
}

/// `class 0`, `class 1`, …: the labels of a checkpoint that names none.
fn default_labels(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("class {i}")).collect()
}

/// A JSON integer that fits this platform's `usize` (32 bits in wasm).
fn as_usize(v: &Value) -> Option<usize> {
    v.as_u64().and_then(|n| usize::try_from(n).ok())
}

/// Field access with the file named in every error.
struct Fields<'a> {
    json: &'a Value,
    file: &'static str,
}

impl Fields<'_> {
    fn err(&self, reason: String) -> CheckpointError {
        CheckpointError::BadConfig {
            file: self.file.into(),
            reason,
        }
    }
    fn usize(&self, key: &str) -> Result<Option<usize>, CheckpointError> {
        match self.json.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    self.err(format!("`{key}` must be a non-negative integer, found {v}"))
                }),
        }
    }
    fn f64(&self, key: &str) -> Result<Option<f64>, CheckpointError> {
        match self.json.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.err(format!("`{key}` must be a number, found {v}"))),
        }
    }
    fn bool(&self, key: &str) -> Result<Option<bool>, CheckpointError> {
        match self.json.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.err(format!("`{key}` must be true or false, found {v}"))),
        }
    }
    fn str(&self, key: &str) -> Result<Option<&str>, CheckpointError> {
        match self.json.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.err(format!("`{key}` must be a string, found {v}"))),
        }
    }
    /// An int or an [h, w] pair.
    fn size2(&self, key: &str) -> Result<Option<[usize; 2]>, CheckpointError> {
        match self.json.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(a)) if a.len() == 2 && a.iter().all(|x| as_usize(x).is_some()) => {
                Ok(Some([as_usize(&a[0]).unwrap(), as_usize(&a[1]).unwrap()]))
            }
            Some(v) => as_usize(v).map(|n| Some([n; 2])).ok_or_else(|| {
                self.err(format!(
                    "`{key}` must be an integer or [height, width], found {v}"
                ))
            }),
        }
    }
    fn floats(&self, key: &str) -> Result<Option<Vec<f32>>, CheckpointError> {
        match self.json.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(Some(vec![n.as_f64().unwrap_or(0.0) as f32])),
            Some(Value::Array(a)) if a.iter().all(Value::is_number) => {
                Ok(Some(a.iter().map(|x| x.as_f64().unwrap() as f32).collect()))
            }
            Some(v) => Err(self.err(format!("`{key}` must be a list of numbers, found {v}"))),
        }
    }
}

/// timm model arguments that do not change the inference forward pass.
const HARMLESS_MODEL_ARGS: &[&str] = &[
    "drop_rate",
    "pos_drop_rate",
    "patch_drop_rate",
    "proj_drop_rate",
    "attn_drop_rate",
    "drop_path_rate",
    "weight_init",
    "pretrained_cfg",
    "pretrained_cfg_overlay",
    "features_only",
];

/// timm hub layout: `architecture`, `num_classes`, `model_args`, `pretrained_cfg`, `label_names`.
/// The labels are `None` where the file gives none (see [`default_labels`]).
fn timm_config(
    json: &Value,
) -> Result<(VitConfig, PreprocessConfig, Option<Vec<String>>), CheckpointError> {
    let top = Fields {
        json,
        file: "config.json",
    };
    let arch = top.str("architecture")?.unwrap_or_default();
    let mut c = VitConfig::preset(arch).ok_or_else(|| {
        top.err(format!(
            "architecture `{arch}` is not supported; supported: vit_{{tiny,small,base,large}}_patch{{8,14,16,32}}_{{224,384}} \
             and deit_{{tiny,small,base}}_patch16_{{224,384}}, with model_args overrides"
        ))
    })?;
    let mut mlp_ratio = 4.0;
    if let Some(args) = json.get("model_args") {
        let a = Fields {
            json: args,
            file: "config.json",
        };
        let Some(obj) = args.as_object() else {
            return Err(top.err("`model_args` must be an object".into()));
        };
        for (key, value) in obj {
            match key.as_str() {
                "img_size" => c.img_size = a.size2(key)?.unwrap_or(c.img_size),
                "patch_size" => c.patch_size = a.usize(key)?.unwrap_or(c.patch_size),
                "in_chans" => c.in_chans = a.usize(key)?.unwrap_or(c.in_chans),
                "embed_dim" => c.embed_dim = a.usize(key)?.unwrap_or(c.embed_dim),
                "depth" => c.depth = a.usize(key)?.unwrap_or(c.depth),
                "num_heads" => c.num_heads = a.usize(key)?.unwrap_or(c.num_heads),
                "mlp_ratio" => mlp_ratio = a.f64(key)?.unwrap_or(mlp_ratio),
                "qkv_bias" => c.qkv_bias = a.bool(key)?.unwrap_or(c.qkv_bias),
                "num_classes" => c.num_classes = a.usize(key)?.unwrap_or(c.num_classes),
                "global_pool" if value == "token" => {}
                "class_token" if value == true => {}
                k if HARMLESS_MODEL_ARGS.contains(&k) => {}
                _ => {
                    return Err(top.err(format!(
                        "model_args.{key} = {value} changes the architecture in a way vitrine does not support"
                    )));
                }
            }
        }
    }
    c.mlp_hidden = (c.embed_dim as f64 * mlp_ratio).round() as usize;
    if let Some(n) = top.usize("num_classes")? {
        c.num_classes = n;
    }
    // Before anything is sized from these numbers (the preprocessing's
    // per-channel mean and std, to begin with).
    c.validate().map_err(|r| top.err(r))?;
    let defaults = PreprocessConfig::timm_default(c.in_chans, c.img_size);
    let preprocess = match json.get("pretrained_cfg") {
        None => defaults,
        Some(cfg) => {
            let p = Fields {
                json: cfg,
                file: "config.json",
            };
            let input_size = match cfg.get("input_size") {
                None => defaults.input_size,
                Some(Value::Array(a))
                    if a.len() == 3 && a.iter().all(|x| as_usize(x).is_some()) =>
                {
                    [0, 1, 2].map(|i| as_usize(&a[i]).unwrap())
                }
                Some(v) => {
                    return Err(top.err(format!(
                        "pretrained_cfg.input_size must be [C, H, W], found {v}"
                    )));
                }
            };
            let interpolation = match p.str("interpolation")? {
                None => defaults.interpolation,
                Some(s) => Interpolation::parse(s)
                    .ok_or_else(|| top.err(format!("pretrained_cfg.interpolation `{s}` is not one of nearest, bilinear, bicubic, lanczos")))?,
            };
            let crop_mode = match p.str("crop_mode")? {
                None => defaults.crop_mode,
                Some(s) => CropMode::parse(s).ok_or_else(|| {
                    top.err(format!(
                        "pretrained_cfg.crop_mode `{s}` is not one of center, squash, border"
                    ))
                })?,
            };
            PreprocessConfig {
                input_size,
                interpolation,
                crop_pct: p.f64("crop_pct")?.unwrap_or(defaults.crop_pct),
                crop_mode,
                mean: p.floats("mean")?.unwrap_or(defaults.mean),
                std: p.floats("std")?.unwrap_or(defaults.std),
                ..defaults
            }
        }
    };
    let mut preprocess = preprocess;
    if let Some(steps) = json.get("vitrine_preprocess") {
        preprocess.photo = serde_json::from_value(steps.clone())
            .map_err(|e| top.err(format!("vitrine_preprocess: {e}")))?;
    }
    preprocess
        .validate()
        .map_err(|r| top.err(format!("pretrained_cfg: {r}")))?;
    let labels = match json.get("label_names") {
        None => None,
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            let labels: Vec<String> = a.iter().map(|s| s.as_str().unwrap().to_string()).collect();
            if labels.len() != c.num_classes {
                return Err(top.err(format!(
                    "label_names has {} entries but the model has {} classes",
                    labels.len(),
                    c.num_classes
                )));
            }
            Some(labels)
        }
        Some(_) => return Err(top.err("`label_names` must be a list of strings".into())),
    };
    Ok((c, preprocess, labels))
}

/// transformers' `ViTConfig`, with its defaults for absent fields; the
/// labels are `None` without `id2label` (see [`default_labels`]).
fn hf_config(json: &Value) -> Result<(VitConfig, Option<Vec<String>>), CheckpointError> {
    let f = Fields {
        json,
        file: "config.json",
    };
    if let Some(t) = f.str("model_type")?
        && t != "vit"
    {
        return Err(f.err(format!("model_type `{t}` is not supported (only `vit`)")));
    }
    if let Some(act) = f.str("hidden_act")?
        && act != "gelu"
    {
        return Err(f.err(format!(
            "hidden_act `{act}` is not supported (only the exact `gelu`)"
        )));
    }
    let d = f.usize("hidden_size")?.unwrap_or(768);
    let (num_classes, labels) = match json.get("id2label") {
        None => (f.usize("num_labels")?.unwrap_or(2), None),
        Some(Value::Object(map)) => {
            let mut labels = vec![None; map.len()];
            for (k, v) in map {
                let i = k
                    .parse::<usize>()
                    .ok()
                    .filter(|&i| i < map.len())
                    .ok_or_else(|| {
                        f.err(format!(
                            "id2label key `{k}` is not an index below {}",
                            map.len()
                        ))
                    })?;
                let label = v
                    .as_str()
                    .ok_or_else(|| f.err(format!("id2label[{k}] must be a string")))?;
                labels[i] = Some(label.to_string());
            }
            let labels: Vec<String> = labels
                .into_iter()
                .map(|l| l.expect("indices are unique and in range"))
                .collect();
            (labels.len(), Some(labels))
        }
        Some(_) => return Err(f.err("`id2label` must be an object".into())),
    };
    let c = VitConfig::new(
        f.size2("image_size")?.unwrap_or([224, 224]),
        f.usize("patch_size")?.unwrap_or(16),
        d,
        f.usize("num_hidden_layers")?.unwrap_or(12),
        f.usize("num_attention_heads")?.unwrap_or(12),
        f.usize("intermediate_size")?.unwrap_or(3072),
    )
    .with_in_chans(f.usize("num_channels")?.unwrap_or(3))
    .with_qkv_bias(f.bool("qkv_bias")?.unwrap_or(true))
    .with_norm_eps(f.f64("layer_norm_eps")?.unwrap_or(1e-12))
    .with_num_classes(num_classes);
    c.validate().map_err(|r| f.err(r))?;
    Ok((c, labels))
}

/// transformers' `ViTImageProcessor`: resize to exactly (height, width), rescale, normalise.
fn hf_preprocess(json: Option<&Value>, c: &VitConfig) -> Result<PreprocessConfig, CheckpointError> {
    let channels = c.in_chans;
    let mut p = PreprocessConfig {
        input_size: [channels, c.img_size[0], c.img_size[1]],
        interpolation: Interpolation::Bilinear,
        crop_pct: 1.0,
        crop_mode: CropMode::Squash,
        mean: vec![0.5; channels],
        std: vec![0.5; channels],
        ..PreprocessConfig::timm_default(channels, c.img_size)
    };
    let Some(json) = json else { return Ok(p) };
    let f = Fields {
        json,
        file: "preprocessor_config.json",
    };
    if f.bool("do_resize")? == Some(false) {
        return Err(
            f.err("do_resize = false is not supported: the model needs a fixed input size".into())
        );
    }
    if let Some(size) = json.get("size") {
        let s = Fields {
            json: size,
            file: "preprocessor_config.json",
        };
        match (s.usize("height")?, s.usize("width")?) {
            (Some(h), Some(w)) => p.input_size = [channels, h, w],
            _ => return Err(f.err(format!("`size` must give height and width, found {size}"))),
        }
    }
    if let Some(code) = f.usize("resample")? {
        // PIL's codes: 0 nearest, 1 lanczos, 2 bilinear, 3 bicubic.
        p.interpolation = match code {
            0 => Interpolation::Nearest,
            1 => Interpolation::Lanczos,
            2 => Interpolation::Bilinear,
            3 => Interpolation::Bicubic,
            _ => return Err(f.err(format!("resample = {code} is not supported (0, 1, 2 or 3)"))),
        };
    }
    if f.bool("do_rescale")? == Some(false) {
        return Err(f.err("do_rescale = false is not supported".into()));
    }
    if let Some(r) = f.f64("rescale_factor")?
        && (r - 1.0 / 255.0).abs() > 1e-9
    {
        return Err(f.err(format!(
            "rescale_factor = {r} is not supported (only 1/255)"
        )));
    }
    if f.bool("do_normalize")? == Some(false) {
        p.mean = vec![0.0; channels];
        p.std = vec![1.0; channels];
    } else {
        p.mean = f.floats("image_mean")?.unwrap_or(p.mean);
        p.std = f.floats("image_std")?.unwrap_or(p.std);
    }
    p.validate().map_err(|r| f.err(r))?;
    Ok(p)
}

fn param1(values: &[f32], device: &Device) -> Param<Tensor<1>> {
    Param::from_tensor(Tensor::from_data(
        TensorData::new(values.to_vec(), [values.len()]),
        device,
    ))
}

fn param3(values: &[f32], shape: [usize; 3], device: &Device) -> Param<Tensor<3>> {
    Param::from_tensor(Tensor::from_data(
        TensorData::new(values.to_vec(), shape),
        device,
    ))
}

/// Burn keeps `Linear` weights as [in, out]; PyTorch as [out, in].
fn linear_from_torch(weight: &Entry, bias: Option<&Entry>, device: &Device) -> Linear {
    let [out, inp] = [weight.shape[0], weight.shape[1]];
    let mut t = vec![0.0; out * inp];
    for o in 0..out {
        for i in 0..inp {
            t[i * out + o] = weight.values[o * inp + i];
        }
    }
    Linear {
        weight: Param::from_tensor(Tensor::from_data(TensorData::new(t, [inp, out]), device)),
        bias: bias.map(|b| param1(&b.values, device)),
    }
}

/// The patch convolution kernel [D, C, P, P] as the linear map of flattened
/// (row, column, channel) patches, [P·P·C, D].
fn patch_proj(weight: &Entry, bias: &Entry, device: &Device) -> Linear {
    let [d, c, p, _] = [
        weight.shape[0],
        weight.shape[1],
        weight.shape[2],
        weight.shape[3],
    ];
    let mut t = vec![0.0; p * p * c * d];
    for o in 0..d {
        for ch in 0..c {
            for y in 0..p {
                for x in 0..p {
                    let row = (y * p + x) * c + ch;
                    t[row * d + o] = weight.values[((o * c + ch) * p + y) * p + x];
                }
            }
        }
    }
    Linear {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(t, [p * p * c, d]),
            device,
        )),
        bias: Some(param1(&bias.values, device)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_round_trips_through_the_loader() {
        let device = Device::flex();
        let cfg = VitConfig::new([16, 24], 8, 32, 2, 2, 48)
            .with_in_chans(1)
            .with_num_classes(3);
        let model = cfg.init(&device);
        let pre = PreprocessConfig::timm_default(1, cfg.img_size);
        let labels: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let bytes = crate::safetensors::serialize(&timm_tensors(&model), false);
        let json = serde_json::to_vec(&timm_config_json(&cfg, &pre, &labels)).unwrap();
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

    #[test]
    fn hf_names_translate_both_ways() {
        for (hf, timm) in [
            (
                "vit.encoder.layer.11.attention.output.dense.weight",
                "blocks.11.attn.proj.weight",
            ),
            (
                "vit.encoder.layer.0.output.dense.bias",
                "blocks.0.mlp.fc2.bias",
            ),
            ("vit.embeddings.position_embeddings", "pos_embed"),
            ("classifier.weight", "head.weight"),
        ] {
            assert_eq!(translate(hf, true).as_deref(), Some(timm));
            assert_eq!(translate(timm, false).as_deref(), Some(hf));
        }
        assert_eq!(translate("vit.pooler.dense.weight", true), None);
    }
}
