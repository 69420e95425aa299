//! timm's hub `config.json`: `architecture`, `num_classes`, `model_args`,
//! `pretrained_cfg`, `label_names`; written for export, read for loading.

use serde_json::Value;

use super::{CheckpointError, Fields, as_usize, short};
use crate::model::{Pool, VitConfig};
use crate::preprocess::{CropMode, Interpolation, PreprocessConfig};

/// The name of timm's plain ViT preset that `config` is (its class count
/// aside), or `vit_tiny_patch16_224`, which `model_args` then reshape.
fn architecture_of(config: &VitConfig) -> String {
    let [h, w] = config.img_size;
    let sizes = ["tiny", "small", "medium", "base", "large", "huge"];
    let names = sizes
        .iter()
        .flat_map(|s| [8, 14, 16, 32].map(move |p| format!("vit_{s}_patch{p}_{h}")));
    names
        .filter(|_| h == w)
        .find(|name| {
            VitConfig::preset(name).is_some_and(|mut preset| {
                preset.num_classes = config.num_classes;
                &preset == config
            })
        })
        .unwrap_or_else(|| "vit_tiny_patch16_224".into())
}

/// A timm hub `config.json` describing `config` exactly through `model_args`.
pub fn timm_config_json(
    config: &VitConfig,
    preprocess: &PreprocessConfig,
    labels: &[String],
) -> Value {
    let p = preprocess;
    let mut json = serde_json::json!({
        "architecture": architecture_of(config),
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
