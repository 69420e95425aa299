//! The config readers: timm's hub `config.json`, transformers' `config.json`
//! and `preprocessor_config.json`, and, without a config, what the tensor
//! shapes fix. Each checks its numbers before anything is sized from them.

use std::collections::BTreeMap;

use serde_json::Value;

use super::names::{blocks_named, display_name};
use super::{CheckpointError, Entry, Layout};
use crate::model::VitConfig;
use crate::preprocess::{CropMode, Interpolation, PreprocessConfig};
use crate::safetensors::SafetensorsError;

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

pub(super) fn parse_json(bytes: &[u8], file: &str) -> Result<Value, CheckpointError> {
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

/// Reads what the tensor shapes fix when there is no config.
pub(super) fn infer_config(
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
            return Err(CheckpointError::File(SafetensorsError::BadHeader {
                tensor: entry.original.clone(),
                reason: format!(
                    "expected a {rank}-dimensional tensor, found shape {:?}",
                    entry.shape
                ),
            }));
        }
        Ok(entry)
    };
    let patch = get("patch_embed.proj.weight", 4)?;
    let &[d, in_chans, p, p2] = patch.shape.as_slice() else {
        unreachable!()
    };
    if p != p2 {
        return Err(CheckpointError::File(SafetensorsError::BadHeader {
            tensor: patch.original.clone(),
            reason: format!("patches must be square, found {p}×{p2}"),
        }));
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
    let depth = blocks_named(tensors.keys());
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
pub(super) fn default_labels(n: usize) -> Vec<String> {
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
pub(super) fn timm_config(
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
pub(super) fn hf_config(json: &Value) -> Result<(VitConfig, Option<Vec<String>>), CheckpointError> {
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
pub(super) fn hf_preprocess(
    json: Option<&Value>,
    c: &VitConfig,
) -> Result<PreprocessConfig, CheckpointError> {
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
