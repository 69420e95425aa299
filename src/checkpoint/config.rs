//! The config readers: timm's hub `config.json`, transformers' `config.json`
//! and `preprocessor_config.json`, and, without a config, what the tensor
//! shapes fix. Each checks its numbers before anything is sized from them.

use std::collections::BTreeMap;

use serde_json::Value;

use super::names::HfFamily;
use super::names::{blocks_named, display_name};
use super::{CheckpointError, Entry, Layout};
use crate::model::{Pool, VitConfig};
use crate::preprocess::{CropMode, CropRounding, Interpolation, PreprocessConfig, Resize};
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
    // The options where they differ from timm's defaults.
    let args = &mut json["model_args"];
    let c = config;
    if let Some(v) = c.init_values {
        args["init_values"] = v.into();
    }
    for (key, on) in [
        ("qk_norm", c.qk_norm),
        ("pre_norm", c.pre_norm),
        ("no_embed_class", c.no_embed_class),
    ] {
        if on {
            args[key] = true.into();
        }
    }
    if c.fc_norm || c.global_pool != Pool::Token {
        args["fc_norm"] = c.fc_norm.into();
    }
    if !c.class_token {
        args["class_token"] = false.into();
    }
    if c.reg_tokens > 0 {
        args["reg_tokens"] = c.reg_tokens.into();
    }
    if c.global_pool != Pool::Token {
        args["global_pool"] = c.global_pool.timm_name().into();
    }
    if c.quick_gelu {
        args["act_layer"] = "quick_gelu".into();
    }
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
    let square = |n: usize| {
        let side = (n as f64).sqrt().round() as usize;
        (n > 0 && side * side == n).then_some(side)
    };
    let class_token = tensors.contains_key("cls_token");
    let distilled = tensors.contains_key("dist_token");
    let reg_tokens = match tensors.contains_key("reg_token") {
        true => get("reg_token", 3)?.shape[1],
        false => 0,
    };
    let prefix = usize::from(class_token) + usize::from(distilled) + reg_tokens;
    // N + prefix rows (the prefix tokens' first), or N (`no_embed_class`).
    let (n, no_embed_class) = match (square(tokens.saturating_sub(prefix)), square(tokens)) {
        (Some(_), _) => (tokens - prefix, false),
        (None, Some(_)) => (tokens, true),
        (None, None) => (tokens.saturating_sub(prefix), false),
    };
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
    // No head: a backbone.
    let num_classes = match tensors.contains_key("head.weight") {
        true => get("head.weight", 2)?.shape[0],
        false => 0,
    };
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
        Layout::Timm | Layout::HuggingFace(HfFamily::Dinov2) => 1e-6,
        Layout::HuggingFace(_) => 1e-12,
    };
    let layer_scale = tensors.contains_key("blocks.0.ls1.gamma");
    let qk_norm = tensors.contains_key("blocks.0.attn.q_norm.weight");
    let pre_norm = tensors.contains_key("norm_pre.weight");
    let fc_norm = tensors.contains_key("fc_norm.weight");
    let head_in = tensors.get("head.weight").map(|h| h.shape[1]);
    let global_pool = if tensors.contains_key("head_dist.weight") {
        Pool::TokenAndDistillation
    } else if head_in == Some(2 * d) {
        Pool::TokenAndAvg
    } else if !class_token || fc_norm {
        Pool::Avg
    } else {
        Pool::Token
    };
    let config = VitConfig::new([side * p, side * p], p, d, depth, num_heads, mlp_hidden)
        .with_in_chans(in_chans)
        .with_qkv_bias(qkv_bias)
        .with_norm_eps(norm_eps)
        .with_num_classes(num_classes)
        .with_init_values(layer_scale.then_some(1e-5))
        .with_qk_norm(qk_norm)
        .with_pre_norm(pre_norm)
        .with_no_embed_class(no_embed_class)
        .with_class_token(class_token)
        .with_distilled(distilled)
        .with_reg_tokens(reg_tokens)
        .with_global_pool(global_pool)
        .with_fc_norm(fc_norm);
    let registers = format!("{reg_tokens} register tokens");
    let pooling = format!("{} pooling", global_pool.timm_name());
    let options: Vec<&str> = [
        (!class_token, "no class token"),
        (distilled, "a distillation token"),
        (reg_tokens > 0, registers.as_str()),
        (global_pool != Pool::Token, pooling.as_str()),
        (fc_norm, "a norm after pooling"),
        (layer_scale, "layer scale"),
        (qk_norm, "QK norm"),
        (pre_norm, "a norm before the blocks"),
        (no_embed_class, "position embeddings for the patches only"),
    ]
    .iter()
    .filter_map(|&(on, what)| on.then_some(what))
    .collect();
    let options = if options.is_empty() {
        String::new()
    } else {
        format!(", with {}", options.join(", "))
    };
    let how = format!(
        "inferred from the tensor shapes D = {d}, P = {p}, C = {in_chans}, N = {n} ({side}×{side}, so {s}×{s} pixels), \
         depth = {depth}, MLP width = {mlp_hidden}, classes = {num_classes}{options}; {heads_note}; LayerNorm eps = {norm_eps:e}",
        s = side * p
    );
    Ok((config, how))
}

/// `class 0`, `class 1`, …: the labels of a checkpoint that names none.
pub fn default_labels(n: usize) -> Vec<String> {
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

/// timm model arguments vitrine knows but does not build yet: the feature each names.
fn unsupported_arg(key: &str) -> Option<&'static str> {
    Some(match key {
        "global_pool" => "pooling other than token, avg, max or avgmax",
        "dynamic_img_pad" => "padding inputs to a multiple of the patch (`dynamic_img_pad`)",
        "attn_pool" | "attn_pool_num_heads" => "the attention-pool head (`attn_pool`)",
        "mlp_layer" | "ffn_layer" => "an MLP other than Linear, GELU, Linear",
        "pos_embed" => "position embeddings other than learned ones",
        "act_layer" => "an activation other than GELU or QuickGELU",
        "norm_layer" => "a norm other than LayerNorm",
        _ => return None,
    })
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
        top.err(VitConfig::unsupported_preset(arch).unwrap_or_else(|| {
            format!(
                "architecture `{arch}` is not supported; supported: \
                 vit_{{tiny,small,medium,base,large,huge}}_patch{{8,14,16,32}}_{{224,256,384,448,518}}, \
                 deit_* and deit3_* of those sizes, vit_*_dinov2 and vit_*_clip[_quickgelu]_*, \
                 with model_args overrides"
            )
        }))
    })?;
    let mut mlp_ratio = 4.0;
    // timm's `fc_norm=None`: a norm after pooling exactly when pooling the
    // patches; the `*_gap_*` presets say `fc_norm=False`.
    let base = arch.split('.').next().unwrap_or(arch);
    let mut fc_norm = base.contains("_gap_").then_some(false);
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
                "init_values" => c.init_values = a.f64(key)?,
                "qk_norm" => c.qk_norm = a.bool(key)?.unwrap_or(c.qk_norm),
                "pre_norm" => c.pre_norm = a.bool(key)?.unwrap_or(c.pre_norm),
                "no_embed_class" => c.no_embed_class = a.bool(key)?.unwrap_or(c.no_embed_class),
                "act_layer" if value == "quick_gelu" => c.quick_gelu = true,
                "act_layer" if value == "gelu" => c.quick_gelu = false,
                "class_token" => c.class_token = a.bool(key)?.unwrap_or(c.class_token),
                "reg_tokens" => c.reg_tokens = a.usize(key)?.unwrap_or(c.reg_tokens),
                "fc_norm" => fc_norm = a.bool(key)?,
                // The position embeddings are resized when the model loads
                // at another size (`--image-size`), as timm does per input.
                "dynamic_img_size" => {
                    a.bool(key)?;
                }
                "dynamic_img_pad" if value == false => {}
                "global_pool" if value == "token" && c.distilled => {
                    c.global_pool = Pool::TokenAndDistillation
                }
                "global_pool" if value == "token" => c.global_pool = Pool::Token,
                "global_pool" if value == "avg" => c.global_pool = Pool::Avg,
                "global_pool" if value == "max" => c.global_pool = Pool::Max,
                "global_pool" if value == "avgmax" => c.global_pool = Pool::AvgMax,
                "global_pool" if value == "map" => {
                    return Err(top.err(format!(
                        "timm `{arch}`: the attention-pool head (`attn_pool`, model_args.global_pool = \"map\") is not supported"
                    )));
                }
                k if HARMLESS_MODEL_ARGS.contains(&k) => {}
                k if unsupported_arg(k).is_some() => {
                    return Err(top.err(format!(
                        "timm `{arch}`: {} (model_args.{key} = {value}) is not supported",
                        unsupported_arg(k).expect("just matched")
                    )));
                }
                _ => {
                    return Err(top.err(format!(
                        "model_args.{key} = {value} changes the architecture in a way vitrine does not support"
                    )));
                }
            }
        }
    }
    c.fc_norm = fc_norm.unwrap_or(matches!(
        c.global_pool,
        Pool::Avg | Pool::Max | Pool::AvgMax
    ));
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

/// The transformers architectures vitrine reads, by family: the name, and
/// what its head does (`None`: a backbone).
const HF_ARCHITECTURES: &[(HfFamily, &str, Option<Pool>)] = &[
    (HfFamily::Vit, "ViTModel", None),
    (
        HfFamily::Vit,
        "ViTForImageClassification",
        Some(Pool::Token),
    ),
    (HfFamily::Deit, "DeiTModel", None),
    (
        HfFamily::Deit,
        "DeiTForImageClassification",
        Some(Pool::Token),
    ),
    (
        HfFamily::Deit,
        "DeiTForImageClassificationWithTeacher",
        Some(Pool::TokenAndDistillation),
    ),
    (HfFamily::Dinov2, "Dinov2Model", None),
    (
        HfFamily::Dinov2,
        "Dinov2ForImageClassification",
        Some(Pool::TokenAndAvg),
    ),
];

/// transformers' `ViTConfig`, `DeiTConfig` or `Dinov2Config`, with the
/// family's defaults for absent fields; the labels are `None` without
/// `id2label` (see [`default_labels`]). `family` is what the tensor names
/// say; `model_type` and `architectures` are read first, so that a file of
/// another kind is named for what it is. Without `architectures`, a file
/// with no classifier is a backbone. `has_head`: whether the file holds
/// the classifier (`head.weight` once translated).
pub(super) fn hf_config(
    json: &Value,
    family: HfFamily,
    has_head: bool,
) -> Result<(VitConfig, Option<Vec<String>>), CheckpointError> {
    let f = Fields {
        json,
        file: "config.json",
    };
    let architectures: Vec<&str> = match json.get("architectures") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            a.iter().filter_map(Value::as_str).collect()
        }
        Some(v) => {
            return Err(f.err(format!(
                "`architectures` must be a list of names, found {v}"
            )));
        }
    };
    let named = architectures
        .first()
        .map_or(String::new(), |a| format!(" `{a}`"));
    let supported = "vitrine reads ViT, DeiT and DINOv2 (model_type `vit`, `deit`, `dinov2`)";
    if let Some(t) = f.str("model_type")? {
        if t == "dinov2_with_registers" {
            return Err(f.err(format!(
                "transformers{named}: register tokens in transformers' layout are not supported \
                 yet; timm's `vit_*_reg4_dinov2` checkpoints of the same models are"
            )));
        }
        if !["vit", "deit", "dinov2"].contains(&t) {
            return Err(f.err(format!(
                "transformers{named} (model_type `{t}`) is not supported: {supported}"
            )));
        }
        if t != family.model_type() {
            return Err(f.err(format!(
                "model_type `{t}` does not match the tensors, which are named as transformers' \
                 `{}` models name them",
                family.model_type()
            )));
        }
    }
    let head = if architectures.is_empty() {
        match family {
            _ if !has_head => None,
            HfFamily::Dinov2 => Some(Pool::TokenAndAvg),
            _ => Some(Pool::Token),
        }
    } else {
        let known = HF_ARCHITECTURES
            .iter()
            .find(|(fam, name, _)| *fam == family && architectures.contains(name));
        match known {
            Some(&(_, _, head)) => head,
            None => {
                let ours: Vec<&str> = HF_ARCHITECTURES
                    .iter()
                    .filter(|(fam, ..)| *fam == family)
                    .map(|(_, name, _)| *name)
                    .collect();
                return Err(f.err(format!(
                    "transformers{named} is not supported: for model_type `{}`, vitrine reads {}",
                    family.model_type(),
                    ours.join(", ")
                )));
            }
        }
    };
    if let Some(act) = f.str("hidden_act")?
        && act != "gelu"
    {
        return Err(f.err(format!(
            "hidden_act `{act}` is not supported (only the exact `gelu`)"
        )));
    }
    if family == HfFamily::Dinov2 && f.bool("use_swiglu_ffn")? == Some(true) {
        return Err(f.err(
            "transformers DINOv2 with `use_swiglu_ffn` (ViT-g's SwiGLU MLP) is not supported"
                .into(),
        ));
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
    // A backbone's config still carries transformers' default two labels.
    let (num_classes, labels, pool) = match head {
        None => (0, None, Pool::Token),
        Some(pool) => (num_classes, labels, pool),
    };
    let (patch, eps, mlp_hidden) = match family {
        // DINOv2 sizes its MLP by `mlp_ratio` (`intermediate_size` is unused).
        HfFamily::Dinov2 => {
            let ratio = f.f64("mlp_ratio")?.unwrap_or(4.0);
            (14, 1e-6, (d as f64 * ratio) as usize)
        }
        _ => (16, 1e-12, f.usize("intermediate_size")?.unwrap_or(3072)),
    };
    let mut c = VitConfig::new(
        f.size2("image_size")?.unwrap_or([224, 224]),
        f.usize("patch_size")?.unwrap_or(patch),
        d,
        f.usize("num_hidden_layers")?.unwrap_or(12),
        f.usize("num_attention_heads")?.unwrap_or(12),
        mlp_hidden,
    )
    .with_in_chans(f.usize("num_channels")?.unwrap_or(3))
    .with_qkv_bias(f.bool("qkv_bias")?.unwrap_or(true))
    .with_norm_eps(f.f64("layer_norm_eps")?.unwrap_or(eps))
    .with_num_classes(num_classes)
    .with_global_pool(pool)
    .with_distilled(family == HfFamily::Deit);
    if family == HfFamily::Dinov2 {
        c.init_values = Some(f.f64("layerscale_value")?.unwrap_or(1.0));
    }
    c.validate().map_err(|r| f.err(r))?;
    Ok((c, labels))
}

/// OpenAI CLIP's statistics (`OPENAI_CLIP_MEAN`/`STD`), written as transformers writes them.
#[allow(clippy::excessive_precision)]
const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
#[allow(clippy::excessive_precision)]
const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// What a transformers image processor class does when its file leaves a
/// key out (the class's `__init__` defaults).
struct ProcessorDefaults {
    size: Value,
    /// Whether an integer `size` means height = width (else: the shorter side).
    square_int: bool,
    resample: usize,
    crop: Option<usize>,
    mean: [f32; 3],
    std: [f32; 3],
}

fn processor_defaults(class: &str) -> Option<ProcessorDefaults> {
    let exact = |s: usize| serde_json::json!({ "height": s, "width": s });
    let edge = |s: usize| serde_json::json!({ "shortest_edge": s });
    let d = match class.trim_end_matches("Fast") {
        "ViTImageProcessor" | "ViTFeatureExtractor" => ProcessorDefaults {
            size: exact(224),
            square_int: true,
            resample: 2,
            crop: None,
            mean: [0.5; 3],
            std: [0.5; 3],
        },
        "DeiTImageProcessor" | "DeiTFeatureExtractor" => ProcessorDefaults {
            size: exact(256),
            square_int: true,
            resample: 3,
            crop: Some(224),
            mean: [0.5; 3],
            std: [0.5; 3],
        },
        "BitImageProcessor" | "CLIPImageProcessor" | "CLIPFeatureExtractor" => ProcessorDefaults {
            size: edge(224),
            square_int: false,
            resample: 3,
            crop: Some(224),
            mean: CLIP_MEAN,
            std: CLIP_STD,
        },
        _ => return None,
    };
    Some(d)
}

/// `{height, width}`, `{shortest_edge}` or an integer, as transformers'
/// `get_size_dict` reads them.
fn size_dict(
    v: &Value,
    square_int: bool,
    key: &str,
    f: &Fields,
) -> Result<Resize, CheckpointError> {
    let s = Fields {
        json: v,
        file: f.file,
    };
    if let Some(n) = as_usize(v) {
        return Ok(if square_int {
            Resize::Exact([n, n])
        } else {
            Resize::ShortestEdge(n)
        });
    }
    match (
        s.usize("height")?,
        s.usize("width")?,
        s.usize("shortest_edge")?,
    ) {
        (Some(h), Some(w), _) => Ok(Resize::Exact([h, w])),
        (None, None, Some(e)) if v.get("longest_edge").is_none() => Ok(Resize::ShortestEdge(e)),
        _ => Err(f.err(format!(
            "`{key}` must be an integer, {{height, width}} or {{shortest_edge}}, found {v}"
        ))),
    }
}

/// transformers' image processors (`ViTImageProcessor`, `DeiTImageProcessor`,
/// `BitImageProcessor`, `CLIPImageProcessor`): resize (exactly, or the
/// shorter side), an optional centre crop, rescale, normalise. Keys the
/// file leaves out take its class's defaults; without a file, those of
/// `default_class` (the model's own processor) resizing to the model's own
/// `img_size`. The result's input size is what the crop (or the exact
/// resize) gives.
pub(super) fn hf_preprocess(
    json: Option<&Value>,
    channels: usize,
    default_class: &str,
    img_size: [usize; 2],
) -> Result<PreprocessConfig, CheckpointError> {
    let no_file = serde_json::json!({
        "size": { "height": img_size[0], "width": img_size[1] },
        "do_center_crop": false,
    });
    let json = json.unwrap_or(&no_file);
    let f = Fields {
        json,
        file: "preprocessor_config.json",
    };
    let class = match f.str("image_processor_type")? {
        Some(c) => c,
        None => f.str("feature_extractor_type")?.unwrap_or(default_class),
    };
    let d = processor_defaults(class).ok_or_else(|| {
        f.err(format!(
            "the image processor `{class}` is not supported (ViTImageProcessor, \
             DeiTImageProcessor, BitImageProcessor and CLIPImageProcessor are)"
        ))
    })?;
    if f.bool("do_resize")? == Some(false) {
        return Err(
            f.err("do_resize = false is not supported: the model needs a fixed input size".into())
        );
    }
    let resize = size_dict(
        json.get("size").unwrap_or(&d.size),
        d.square_int,
        "size",
        &f,
    )?;
    let crop = match (f.bool("do_center_crop")?, d.crop) {
        (Some(false), _) | (None, None) => None,
        (Some(true), _) | (None, Some(_)) => Some(match json.get("crop_size") {
            None => [d.crop.unwrap_or(224); 2],
            Some(v) => match size_dict(v, true, "crop_size", &f)? {
                Resize::Exact(hw) => hw,
                Resize::ShortestEdge(_) => {
                    return Err(f.err(format!("`crop_size` must give height and width, found {v}")));
                }
            },
        }),
    };
    let [h, w] = match (crop, resize) {
        (Some(hw), _) | (None, Resize::Exact(hw)) => hw,
        (None, Resize::ShortestEdge(e)) => {
            return Err(f.err(format!(
                "`size` {{shortest_edge: {e}}} without a centre crop gives each image its own \
                 input size; vitrine needs a fixed one (set do_center_crop and crop_size)"
            )));
        }
    };
    let code = f.usize("resample")?.unwrap_or(d.resample);
    // PIL's codes: 0 nearest, 1 lanczos, 2 bilinear, 3 bicubic.
    let interpolation = match code {
        0 => Interpolation::Nearest,
        1 => Interpolation::Lanczos,
        2 => Interpolation::Bilinear,
        3 => Interpolation::Bicubic,
        _ => return Err(f.err(format!("resample = {code} is not supported (0, 1, 2 or 3)"))),
    };
    let rescale = match (f.bool("do_rescale")?, f.f64("rescale_factor")?) {
        (Some(false), _) => 1.0,
        (_, Some(r)) => r as f32,
        (_, None) => 1.0 / 255.0,
    };
    let fit = |v: [f32; 3]| {
        if channels == 1 {
            vec![v[0]]
        } else {
            v.to_vec()
        }
    };
    let (mean, std) = if f.bool("do_normalize")? == Some(false) {
        (vec![0.0; channels], vec![1.0; channels])
    } else {
        (
            f.floats("image_mean")?.unwrap_or(fit(d.mean)),
            f.floats("image_std")?.unwrap_or(fit(d.std)),
        )
    };
    let p = PreprocessConfig {
        input_size: [channels, h, w],
        interpolation,
        crop_pct: 1.0,
        crop_mode: CropMode::Center,
        mean,
        std,
        resize: Some(resize),
        crop_rounding: CropRounding::Floor,
        rescale,
        ..PreprocessConfig::timm_default(channels, [h, w])
    };
    p.validate().map_err(|r| f.err(r))?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<PreprocessConfig, String> {
        let json: Value = serde_json::from_str(text).unwrap();
        hf_preprocess(Some(&json), 3, "ViTImageProcessor", [224, 224]).map_err(|e| e.to_string())
    }

    /// The forms transformers writes and the hub holds, read as
    /// transformers reads them.
    #[test]
    fn preprocessor_files_in_every_form() {
        // google/vit-base-patch16-224's own file: `size` an integer.
        let p = read(
            r#"{"do_normalize": true, "do_resize": true, "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5], "resample": 2, "size": 224,
                "feature_extractor_type": "ViTFeatureExtractor"}"#,
        )
        .unwrap();
        assert_eq!(p.input_size, [3, 224, 224]);
        assert_eq!(p.resize, Some(Resize::Exact([224, 224])));
        assert_eq!(p.interpolation, Interpolation::Bilinear);
        // facebook/dino-vits16's: resize to 256×256, then the centre crop it asks for.
        let p = read(
            r#"{"crop_size": 224, "do_center_crop": true, "do_normalize": true, "do_resize": true,
                "feature_extractor_type": "ViTFeatureExtractor", "image_mean": [0.485, 0.456, 0.406],
                "image_std": [0.229, 0.224, 0.225], "resample": 3, "size": 256}"#,
        )
        .unwrap();
        assert_eq!(p.input_size, [3, 224, 224]);
        assert_eq!(p.resize, Some(Resize::Exact([256, 256])));
        assert_eq!(p.crop_rounding, CropRounding::Floor);
        // DeiT's class defaults: 256×256, crop 224, bicubic, mean and std 0.5.
        let p = read(r#"{"image_processor_type": "DeiTImageProcessor"}"#).unwrap();
        assert_eq!(
            (p.input_size, p.resize),
            ([3, 224, 224], Some(Resize::Exact([256, 256])))
        );
        assert_eq!(
            (p.interpolation, p.mean.clone()),
            (Interpolation::Bicubic, vec![0.5; 3])
        );
        // DINOv2's (BitImageProcessor): an integer is the shorter side; CLIP's statistics.
        let p = read(r#"{"image_processor_type": "BitImageProcessor", "size": 256}"#).unwrap();
        assert_eq!(
            (p.input_size, p.resize),
            ([3, 224, 224], Some(Resize::ShortestEdge(256)))
        );
        assert_eq!(p.mean, CLIP_MEAN.to_vec());
        // Rescaling switched off or changed; normalisation switched off.
        let p = read(r#"{"do_rescale": false, "do_normalize": false}"#).unwrap();
        assert_eq!(
            (p.rescale, p.mean.clone(), p.std.clone()),
            (1.0, vec![0.0; 3], vec![1.0; 3])
        );
        let p = read(r#"{"rescale_factor": 0.5}"#).unwrap();
        assert_eq!(p.rescale, 0.5);
        // A missing file: the class's defaults.
        let p = hf_preprocess(None, 1, "ViTImageProcessor", [96, 64]).unwrap();
        assert_eq!((p.input_size, p.mean.clone()), ([1, 96, 64], vec![0.5]));
    }

    #[test]
    fn preprocessor_files_refused_with_their_reason() {
        let cases = [
            (
                r#"{"size": {"shortest_edge": 224}}"#,
                "without a centre crop",
            ),
            (
                r#"{"size": {"longest_edge": 224}}"#,
                "must be an integer, {height, width} or {shortest_edge}",
            ),
            (
                r#"{"image_processor_type": "SiglipImageProcessor"}"#,
                "`SiglipImageProcessor` is not supported",
            ),
            (r#"{"do_resize": false}"#, "do_resize = false"),
            (r#"{"resample": 9}"#, "resample = 9"),
            (
                r#"{"do_center_crop": true, "crop_size": {"shortest_edge": 3}}"#,
                "`crop_size` must give height and width",
            ),
            (r#"{"rescale_factor": -1}"#, "not positive"),
        ];
        for (text, want) in cases {
            let e = read(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
            assert!(e.contains("preprocessor_config.json"), "{text}: {e}");
        }
    }
}
