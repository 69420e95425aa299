//! The config stage: the model's architecture and preprocessing from
//! timm's hub `config.json` ([`timm`]), transformers' `config.json` and
//! `preprocessor_config.json` ([`hf`]), or, without a config, what the
//! tensor shapes fix ([`infer`]). Each checks its numbers before anything
//! is sized from them.

mod hf;
mod infer;
mod timm;

use std::collections::BTreeMap;

use serde_json::Value;

use super::{CheckpointError, Entry, Layout};
use crate::model::VitConfig;
use crate::preprocess::PreprocessConfig;
pub use timm::timm_config_json;

/// What the config stage settled.
pub(super) struct Configured {
    pub config: VitConfig,
    pub preprocess: PreprocessConfig,
    /// `None` where the files name no classes.
    pub labels: Option<Vec<String>>,
    /// What sized the model, for shape errors ("config.json").
    pub implied_by: String,
    /// What was assumed, for the user.
    pub notes: Vec<String>,
    /// The model's name as its config gives it ([`model_name`]).
    pub name: Option<String>,
    /// An input size other than the config's that the processor gives and
    /// the family takes (DINOv2's configs say 518 px, its processors crop
    /// 224): the position embeddings are interpolated to it.
    pub positions_for: Option<[usize; 2]>,
}

/// The config of a checkpoint whose tensors, under timm's names, are
/// `tensors`, from its `config.json` and `preprocessor_config.json` bytes
/// where it has them; the preprocessing's input size checked against the
/// model's.
pub(super) fn configure(
    layout: Layout,
    config: Option<&[u8]>,
    preprocessor: Option<&[u8]>,
    tensors: &BTreeMap<String, Entry>,
) -> Result<Configured, CheckpointError> {
    let config_json = config.map(|b| parse_json(b, "config.json")).transpose()?;
    let pre_json = preprocessor
        .map(|b| parse_json(b, "preprocessor_config.json"))
        .transpose()?;
    let has_head = tensors.contains_key("head.weight");
    let mut notes = Vec::new();
    let (config, preprocess, labels, implied_by) = match &config_json {
        Some(json) if json.get("architecture").is_some() => {
            let (c, p, l) = timm::timm_config(json)?;
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
            let (c, l) = hf::hf_config(json, family, has_head)?;
            let p = hf::hf_preprocess(
                pre_json.as_ref(),
                c.in_chans,
                family.spec().processor,
                c.img_size,
            )?;
            (c, p, l, "config.json".to_string())
        }
        None => {
            let (c, how) = infer::infer_config(tensors, layout)?;
            notes.push(format!("no config.json: {how}"));
            let p = match layout {
                Layout::Timm => PreprocessConfig::timm_default(c.in_chans, c.img_size),
                Layout::HuggingFace(family) => hf::hf_preprocess(
                    pre_json.as_ref(),
                    c.in_chans,
                    family.spec().processor,
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
    let [c, h, w] = preprocess.input_size;
    let any_size = matches!(layout, Layout::HuggingFace(f) if f.spec().any_size);
    let positions_for =
        (any_size && c == config.in_chans && [h, w] != config.img_size).then_some([h, w]);
    if positions_for.is_none()
        && [c, h, w] != [config.in_chans, config.img_size[0], config.img_size[1]]
    {
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
    Ok(Configured {
        config,
        preprocess,
        labels,
        implied_by,
        notes,
        positions_for,
        name: config_json.as_ref().and_then(model_name),
    })
}

/// What a config calls its model: timm's `architecture` (with its
/// pretrained tag, `vit_small_patch16_224.dino`), or transformers' hub repo
/// (`_name_or_path` when it is `org/name`), else its architecture
/// (`ViTForImageClassification`).
pub(super) fn model_name(json: &Value) -> Option<String> {
    fn text(v: Option<&Value>) -> Option<&str> {
        v.and_then(Value::as_str).filter(|s| !s.trim().is_empty())
    }
    if let Some(arch) = text(json.get("architecture")) {
        let tag = text(json.pointer("/pretrained_cfg/tag"));
        return Some(match tag {
            Some(tag) if !arch.contains('.') => format!("{arch}.{tag}"),
            _ => arch.to_string(),
        });
    }
    let repo = text(json.get("_name_or_path")).filter(|p| {
        let parts: Vec<&str> = p.split('/').collect();
        parts.len() == 2 && parts.iter().all(|s| !s.is_empty() && !s.starts_with('.'))
    });
    repo.or_else(|| text(json.pointer("/architectures/0")))
        .map(str::to_string)
}

/// An f32 as the shortest decimal that reads back as it (0.286, not 0.28600001335144043).
pub(super) fn short(v: f32) -> f64 {
    v.to_string()
        .parse()
        .expect("a float's own decimal form parses")
}

/// A config file's JSON object.
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

/// ImageNet-1k's class names in class order, timm's
/// (`tests/fixtures/make_imagenet_labels.py` writes the file).
pub static IMAGENET_1K: std::sync::LazyLock<Vec<&'static str>> =
    std::sync::LazyLock::new(|| include_str!("../imagenet-1k.txt").lines().collect());

/// An ImageNet class set whose names timm assumes, by the class count,
/// for a classifier whose config names no classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageNetSet {
    /// The file's name: `src/checkpoint/imagenet-1k.txt`, else
    /// `www/labels/{name}.txt` (which the page fetches).
    pub name: &'static str,
    /// As a note names it.
    pub title: &'static str,
    pub classes: usize,
}

/// timm's sets by class count (`timm.data.ImageNetInfo`).
pub const IMAGENET_SETS: [ImageNetSet; 4] = [
    ImageNetSet {
        name: "imagenet-1k",
        title: "ImageNet-1k",
        classes: 1000,
    },
    ImageNetSet {
        name: "imagenet-22k",
        title: "ImageNet-22k (fall 2011)",
        classes: 21841,
    },
    ImageNetSet {
        name: "imagenet-22k-ms",
        title: "ImageNet-22k as Microsoft ordered it",
        classes: 21842,
    },
    ImageNetSet {
        name: "imagenet-21k-goog",
        title: "Google's ImageNet-21k",
        classes: 21843,
    },
];

impl ImageNetSet {
    /// The set timm assumes for `classes` classes, if any.
    pub fn of(classes: usize) -> Option<Self> {
        IMAGENET_SETS.into_iter().find(|s| s.classes == classes)
    }

    /// Its names in class order, where this build carries them: ImageNet-1k
    /// everywhere; the 21k sets natively only (half a megabyte each, which
    /// the page fetches instead, only for such a model).
    pub fn names(self) -> Option<Vec<String>> {
        if self.name == "imagenet-1k" {
            return Some(IMAGENET_1K.iter().map(|s| s.to_string()).collect());
        }
        let text = imagenet_21k_text(self.name)?;
        Some(text.lines().map(str::to_string).collect())
    }
}

/// The 21k sets' files, built into the CLI.
#[cfg(not(target_arch = "wasm32"))]
fn imagenet_21k_text(name: &str) -> Option<&'static str> {
    match name {
        "imagenet-22k" => Some(include_str!("../../../www/labels/imagenet-22k.txt")),
        "imagenet-22k-ms" => Some(include_str!("../../../www/labels/imagenet-22k-ms.txt")),
        "imagenet-21k-goog" => Some(include_str!("../../../www/labels/imagenet-21k-goog.txt")),
        _ => None,
    }
}

/// In the page's module, none: the worker fetches them.
#[cfg(target_arch = "wasm32")]
fn imagenet_21k_text(_: &str) -> Option<&'static str> {
    None
}

/// `class 0`, `class 1`, …: the labels of a checkpoint that names none.
pub fn default_labels(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("class {i}")).collect()
}

/// A JSON integer that fits this platform's `usize` (32 bits in wasm).
pub(super) fn as_usize(v: &Value) -> Option<usize> {
    v.as_u64().and_then(|n| usize::try_from(n).ok())
}

/// Field access with the file named in every error.
pub(in crate::checkpoint) struct Fields<'a> {
    pub(super) json: &'a Value,
    pub(super) file: &'static str,
}

impl Fields<'_> {
    pub(in crate::checkpoint) fn err(&self, reason: String) -> CheckpointError {
        CheckpointError::BadConfig {
            file: self.file.into(),
            reason,
        }
    }
    pub(in crate::checkpoint) fn usize(&self, key: &str) -> Result<Option<usize>, CheckpointError> {
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
    pub(in crate::checkpoint) fn f64(&self, key: &str) -> Result<Option<f64>, CheckpointError> {
        match self.json.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.err(format!("`{key}` must be a number, found {v}"))),
        }
    }
    pub(in crate::checkpoint) fn bool(&self, key: &str) -> Result<Option<bool>, CheckpointError> {
        match self.json.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.err(format!("`{key}` must be true or false, found {v}"))),
        }
    }
    pub(in crate::checkpoint) fn str(&self, key: &str) -> Result<Option<&str>, CheckpointError> {
        match self.json.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.err(format!("`{key}` must be a string, found {v}"))),
        }
    }
    /// An int or an [h, w] pair.
    pub(in crate::checkpoint) fn size2(
        &self,
        key: &str,
    ) -> Result<Option<[usize; 2]>, CheckpointError> {
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
    pub(in crate::checkpoint) fn floats(
        &self,
        key: &str,
    ) -> Result<Option<Vec<f32>>, CheckpointError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// timm's class counts get their sets, each with a name a class (the
    /// CLI carries all four), and nothing else gets one.
    #[test]
    fn imagenet_names_follow_the_class_count() {
        for set in IMAGENET_SETS {
            let names = set.names().expect("built into the CLI");
            assert_eq!(names.len(), set.classes, "{}", set.name);
            assert!(names.iter().all(|n| !n.is_empty()), "{}", set.name);
            assert_eq!(ImageNetSet::of(set.classes), Some(set));
        }
        assert_eq!(
            ImageNetSet::of(1000).unwrap().names().unwrap()[0],
            "tench, Tinca tinca"
        );
        // Google's 21k and fall 2011 order their classes alike; Microsoft's
        // puts ImageNet-1k's first.
        assert_eq!(
            ImageNetSet::of(21843).unwrap().names().unwrap()[0],
            "organism, being"
        );
        assert_eq!(
            ImageNetSet::of(21842).unwrap().names().unwrap()[0],
            "tench, Tinca tinca"
        );
        for n in [0, 10, 999, 1001, 11821, 21840, 21844] {
            assert_eq!(ImageNetSet::of(n), None, "{n} classes");
        }
    }

    #[test]
    fn a_model_is_named_by_its_config() {
        let name = |j: Value| model_name(&j);
        let timm = serde_json::json!({"architecture": "vit_small_patch16_224",
            "pretrained_cfg": {"tag": "dino"}});
        assert_eq!(name(timm).as_deref(), Some("vit_small_patch16_224.dino"));
        let tagged = serde_json::json!({"architecture": "vit_base_patch16_224.augreg_in21k",
            "pretrained_cfg": {"tag": "other"}});
        assert_eq!(
            name(tagged).as_deref(),
            Some("vit_base_patch16_224.augreg_in21k")
        );
        let hub = serde_json::json!({"_name_or_path": "facebook/dino-vits16",
            "architectures": ["ViTModel"]});
        assert_eq!(name(hub).as_deref(), Some("facebook/dino-vits16"));
        // A local path is no repo: the class names it.
        let local = serde_json::json!({"_name_or_path": "/tmp/run/checkpoint-500",
            "architectures": ["ViTForImageClassification"]});
        assert_eq!(name(local).as_deref(), Some("ViTForImageClassification"));
        assert_eq!(name(serde_json::json!({"model_type": "vit"})), None);
    }
}
