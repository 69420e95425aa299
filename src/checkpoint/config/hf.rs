//! transformers' `config.json` (`ViTConfig` and the other families') and
//! `preprocessor_config.json` (its image processors).

use serde_json::Value;

use super::super::family::HfFamily;
use super::{CheckpointError, Fields, as_usize};
use crate::model::{Pool, VitConfig};
use crate::preprocess::{CropMode, CropRounding, Interpolation, PreprocessConfig, Resize};

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
    let supported = "vitrine reads ViT, DeiT and DINOv2, with or without registers \
                     (model_type `vit`, `deit`, `dinov2`, `dinov2_with_registers`)";
    let spec = family.spec();
    if let Some(t) = f.str("model_type")? {
        if !HfFamily::ALL.iter().any(|f| f.model_type() == t) {
            return Err(f.err(format!(
                "transformers{named} (model_type `{t}`) is not supported: {supported}"
            )));
        }
        if t != spec.model_type {
            return Err(f.err(format!(
                "model_type `{t}` does not match the tensors, which are named as transformers' \
                 `{}` models name them",
                spec.model_type
            )));
        }
    }
    let head = if architectures.is_empty() {
        has_head.then_some(spec.head)
    } else {
        let known = spec
            .architectures
            .iter()
            .find(|(name, _)| architectures.contains(name));
        match known {
            Some(&(_, head)) => head,
            None => {
                let ours: Vec<&str> = spec.architectures.iter().map(|(name, _)| *name).collect();
                return Err(f.err(format!(
                    "transformers{named} is not supported: for model_type `{}`, vitrine reads {}",
                    spec.model_type,
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
    let mut c = VitConfig::new(
        f.size2("image_size")?.unwrap_or([224, 224]),
        f.usize("patch_size")?.unwrap_or(spec.patch_size),
        d,
        f.usize("num_hidden_layers")?.unwrap_or(12),
        f.usize("num_attention_heads")?.unwrap_or(12),
        f.usize("intermediate_size")?.unwrap_or(3072),
    )
    .with_in_chans(f.usize("num_channels")?.unwrap_or(3))
    .with_qkv_bias(f.bool("qkv_bias")?.unwrap_or(true))
    .with_norm_eps(f.f64("layer_norm_eps")?.unwrap_or(spec.norm_eps))
    .with_num_classes(num_classes)
    .with_global_pool(pool);
    (spec.configure)(&f, &mut c)?;
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
        // In the form of google/vit-base-patch16-224's file: `size` an integer.
        let p = read(
            r#"{"do_normalize": true, "do_resize": true, "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5], "resample": 2, "size": 224,
                "feature_extractor_type": "ViTFeatureExtractor"}"#,
        )
        .unwrap();
        assert_eq!(p.input_size, [3, 224, 224]);
        assert_eq!(p.resize, Some(Resize::Exact([224, 224])));
        assert_eq!(p.interpolation, Interpolation::Bilinear);
        // A ViT feature extractor that crops: resize to 256×256, then the centre crop it asks for.
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
