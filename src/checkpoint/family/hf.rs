//! The naming schemes: timm's, which the model's fields carry, and
//! transformers', translated to it in one table, [`HF_TO_TIMM`].

use std::collections::BTreeMap;

use super::{CheckpointError, Entry, Stored};

/// The naming schemes a checkpoint may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// timm: `blocks.0.attn.qkv.weight`, …
    Timm,
    /// transformers: `vit.encoder.layer.0.attention.attention.query.weight`, …,
    /// in one of its model families.
    HuggingFace(HfFamily),
}

/// The transformers model families vitrine reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HfFamily {
    /// `ViTModel`, `ViTForImageClassification` (model_type `vit`).
    Vit,
    /// `DeiTModel`, `DeiTForImageClassification(WithTeacher)` (`deit`).
    Deit,
    /// `Dinov2Model`, `Dinov2ForImageClassification` (`dinov2`).
    Dinov2,
}

impl HfFamily {
    /// The prefix of a task model's backbone names, and the `model_type`.
    pub fn model_type(self) -> &'static str {
        match self {
            HfFamily::Vit => "vit",
            HfFamily::Deit => "deit",
            HfFamily::Dinov2 => "dinov2",
        }
    }

    /// The family's names → timm's, first match wins (both ways): the
    /// tables below, written with the `vit.` prefix, which each family's
    /// own replaces.
    fn tables(self) -> &'static [&'static [(&'static str, &'static str)]] {
        match self {
            HfFamily::Vit => &[HF_TO_TIMM],
            HfFamily::Deit => &[DEIT_TO_TIMM, HF_TO_TIMM],
            HfFamily::Dinov2 => &[DINOV2_TO_TIMM, HF_TO_TIMM, DINOV2_V5_TO_TIMM],
        }
    }
}

impl Layout {
    pub fn is_hf(self) -> bool {
        matches!(self, Layout::HuggingFace(_))
    }
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
    // transformers 5's names inside a model (what `save_file(model.state_dict())`
    // writes); after the hub's, so that messages name tensors as the hub does.
    ("vit.layers.{i}.layernorm_before.", "blocks.{i}.norm1."),
    ("vit.layers.{i}.attention.q_proj.", "blocks.{i}.attn.q."),
    ("vit.layers.{i}.attention.k_proj.", "blocks.{i}.attn.k."),
    ("vit.layers.{i}.attention.v_proj.", "blocks.{i}.attn.v."),
    ("vit.layers.{i}.attention.o_proj.", "blocks.{i}.attn.proj."),
    ("vit.layers.{i}.layernorm_after.", "blocks.{i}.norm2."),
    ("vit.layers.{i}.mlp.fc1.", "blocks.{i}.mlp.fc1."),
    ("vit.layers.{i}.mlp.fc2.", "blocks.{i}.mlp.fc2."),
];

/// What DeiT adds to ViT's names: the distillation token and, in
/// `DeiTForImageClassificationWithTeacher`, the two heads.
const DEIT_TO_TIMM: &[(&str, &str)] = &[
    ("vit.embeddings.distillation_token", "dist_token"),
    ("cls_classifier.", "head."),
    ("distillation_classifier.", "head_dist."),
];

/// transformers' DINOv2 names → timm's where they are not ViT's: its
/// norms, MLP and layer scale (its embeddings and attention are ViT's).
const DINOV2_TO_TIMM: &[(&str, &str)] = &[
    ("vit.encoder.layer.{i}.norm1.", "blocks.{i}.norm1."),
    (
        "vit.encoder.layer.{i}.layer_scale1.lambda1",
        "blocks.{i}.ls1.gamma",
    ),
    ("vit.encoder.layer.{i}.norm2.", "blocks.{i}.norm2."),
    ("vit.encoder.layer.{i}.mlp.fc1.", "blocks.{i}.mlp.fc1."),
    ("vit.encoder.layer.{i}.mlp.fc2.", "blocks.{i}.mlp.fc2."),
    (
        "vit.encoder.layer.{i}.layer_scale2.lambda1",
        "blocks.{i}.ls2.gamma",
    ),
];

/// transformers 5's DINOv2 names inside the model (after the hub's, so
/// that messages name tensors as the hub does).
const DINOV2_V5_TO_TIMM: &[(&str, &str)] = &[
    (
        "vit.encoder.layer.{i}.attention.q_proj.",
        "blocks.{i}.attn.q.",
    ),
    (
        "vit.encoder.layer.{i}.attention.k_proj.",
        "blocks.{i}.attn.k.",
    ),
    (
        "vit.encoder.layer.{i}.attention.v_proj.",
        "blocks.{i}.attn.v.",
    ),
    (
        "vit.encoder.layer.{i}.attention.o_proj.",
        "blocks.{i}.attn.proj.",
    ),
];

/// The names a bare transformers backbone (`ViTModel`: DINO, in21k;
/// `DeiTModel`, `Dinov2Model`) writes start where a task model's do after
/// its family's prefix (`vit.`, `deit.`, `dinov2.`).
const HF_BACKBONE_PREFIXES: &[&str] = &[
    "embeddings.",
    "encoder.",
    "layers.",
    "layernorm.",
    "pooler.",
];

/// A transformers name as the family's task model writes it, its prefix
/// then written `vit.` as the tables are.
fn canonical(name: &str, family: HfFamily) -> String {
    let own = format!("{}.", family.model_type());
    if HF_BACKBONE_PREFIXES.iter().any(|p| name.starts_with(p)) {
        format!("vit.{name}")
    } else if let Some(rest) = name.strip_prefix(&own) {
        format!("vit.{rest}")
    } else {
        name.to_string()
    }
}

/// Tensors of a transformers file that inference does not use, which
/// vitrine leaves out, and why: a backbone's pooler (dense + tanh on the
/// class token) and DINOv2's and DeiT's mask token (for masked-image
/// training).
pub(super) fn hf_unused(name: &str, family: HfFamily) -> Option<&'static str> {
    let name = canonical(name, family);
    if name.starts_with("vit.pooler.") {
        Some(
            "the pooler (`pooler.dense`) is left out: the features are the class token \
             after the final LayerNorm, as DINO uses them",
        )
    } else if name == "vit.embeddings.mask_token" {
        Some("the mask token (`embeddings.mask_token`, for masked-image training) is left out")
    } else {
        None
    }
}

/// A transformers name of `family` → timm's, where the tables know it.
pub(super) fn hf_to_timm(name: &str, family: HfFamily) -> Option<String> {
    translate(&canonical(name, family), true, family)
}

/// Rewrites `name` from one side of `family`'s tables to the other; the
/// transformers side has the `vit.` prefix.
fn translate(name: &str, to_timm: bool, family: HfFamily) -> Option<String> {
    for &(hf, timm) in family.tables().iter().flat_map(|t| t.iter()) {
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

/// A timm name → the family's task-model name, as the hub writes it.
fn timm_to_hf(timm: &str, family: HfFamily) -> Option<String> {
    let hf = translate(timm, false, family)?;
    Some(match hf.strip_prefix("vit.") {
        Some(rest) => format!("{}.{rest}", family.model_type()),
        None => hf,
    })
}

/// The naming scheme of a file's tensor names, and for transformers the
/// family: DeiT by its prefix or distillation token, DINOv2 by its prefix
/// or layer scale, else ViT.
pub(super) fn detect_layout<'a>(
    names: impl Iterator<Item = &'a String> + Clone,
) -> Result<Layout, CheckpointError> {
    let any = |f: &dyn Fn(&str) -> bool| names.clone().any(|n| f(n));
    if any(&|n| {
        ["vit.", "deit.", "dinov2.", "classifier.", "cls_classifier."]
            .iter()
            .chain(HF_BACKBONE_PREFIXES)
            .any(|p| n.starts_with(p))
    }) {
        let family = if any(&|n| n.starts_with("deit.") || n.ends_with("distillation_token")) {
            HfFamily::Deit
        } else if any(&|n| n.starts_with("dinov2.") || n.contains(".layer_scale1.")) {
            HfFamily::Dinov2
        } else {
            HfFamily::Vit
        };
        Ok(Layout::HuggingFace(family))
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
pub(super) fn fuse_qkv(
    tensors: &mut BTreeMap<String, Entry>,
    family: HfFamily,
) -> Result<(), CheckpointError> {
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
                    let key = timm_to_hf(name, family).unwrap_or_else(|| name.clone());
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
            let values = Stored::concat(parts.into_iter().map(|p| p.values).collect());
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
pub(super) fn display_name(timm: &str, layout: Layout) -> String {
    match layout {
        Layout::Timm => timm.to_string(),
        Layout::HuggingFace(family) => {
            let hf = timm.replace(".attn.qkv.", ".attn.q.");
            timm_to_hf(&hf, family)
                .map(|n| n.replace(".query.", ".{query,key,value}."))
                .unwrap_or_else(|| timm.to_string())
        }
    }
}

/// How many encoder blocks the tensors' timm names reach (`blocks.N.…`).
pub(super) fn blocks_named<'a>(names: impl Iterator<Item = &'a String>) -> usize {
    names
        .filter_map(|k| {
            k.strip_prefix("blocks.")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .map_or(0, |m| m + 1)
}

/// HF stores q, k and v separately: report their shape, not the fused one.
pub(super) fn torch_shape_as_stored(name: &str, shape: &[usize], layout: Layout) -> Vec<usize> {
    let mut s = shape.to_vec();
    if layout.is_hf() && name.contains(".attn.qkv.") && !s.is_empty() {
        s[0] /= 3;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_names_translate_both_ways() {
        use HfFamily::*;
        for (family, hf, timm) in [
            (
                Vit,
                "vit.encoder.layer.11.attention.output.dense.weight",
                "blocks.11.attn.proj.weight",
            ),
            (
                Vit,
                "vit.encoder.layer.0.output.dense.bias",
                "blocks.0.mlp.fc2.bias",
            ),
            (Vit, "vit.embeddings.position_embeddings", "pos_embed"),
            (Vit, "classifier.weight", "head.weight"),
            (Deit, "deit.embeddings.distillation_token", "dist_token"),
            (
                Deit,
                "deit.encoder.layer.1.layernorm_after.bias",
                "blocks.1.norm2.bias",
            ),
            (Deit, "distillation_classifier.weight", "head_dist.weight"),
            (
                Dinov2,
                "dinov2.encoder.layer.2.layer_scale1.lambda1",
                "blocks.2.ls1.gamma",
            ),
            (
                Dinov2,
                "dinov2.encoder.layer.0.mlp.fc1.weight",
                "blocks.0.mlp.fc1.weight",
            ),
            (Dinov2, "dinov2.layernorm.weight", "norm.weight"),
        ] {
            assert_eq!(hf_to_timm(hf, family).as_deref(), Some(timm));
            assert_eq!(timm_to_hf(timm, family).as_deref(), Some(hf));
        }
        // Backbones' bare names.
        assert_eq!(
            hf_to_timm("encoder.layer.0.norm1.weight", Dinov2).as_deref(),
            Some("blocks.0.norm1.weight")
        );
        assert_eq!(hf_to_timm("vit.pooler.dense.weight", Vit), None);
        assert!(hf_unused("pooler.dense.weight", Vit).is_some());
        assert!(hf_unused("embeddings.mask_token", Dinov2).is_some());
    }
}
