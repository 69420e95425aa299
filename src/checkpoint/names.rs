//! The naming schemes: timm's, which the model's fields carry, and
//! transformers', translated to it in one table, [`HF_TO_TIMM`].

use std::collections::BTreeMap;

use super::{CheckpointError, Entry};

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

/// The names a bare transformers `ViTModel` (DINO, in21k backbones) writes
/// start where `ViTForImageClassification`'s do after `vit.`.
const HF_BACKBONE_PREFIXES: &[&str] = &[
    "embeddings.",
    "encoder.",
    "layers.",
    "layernorm.",
    "pooler.",
];

/// A transformers name as `ViTForImageClassification` writes it.
pub(super) fn hf_full_name(name: &str) -> String {
    if HF_BACKBONE_PREFIXES.iter().any(|p| name.starts_with(p)) {
        format!("vit.{name}")
    } else {
        name.to_string()
    }
}

/// The pooler of a transformers `ViTModel` (dense + tanh on the class
/// token), which classification does not use: vitrine leaves it out.
pub(super) fn is_hf_pooler(name: &str) -> bool {
    hf_full_name(name).starts_with("vit.pooler.")
}

/// Rewrites `name` from one side of [`HF_TO_TIMM`] to the other.
pub(super) fn translate(name: &str, to_timm: bool) -> Option<String> {
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

pub(super) fn detect_layout<'a>(
    names: impl Iterator<Item = &'a String> + Clone,
) -> Result<Layout, CheckpointError> {
    if names.clone().any(|n| {
        n.starts_with("vit.")
            || n.starts_with("classifier.")
            || HF_BACKBONE_PREFIXES.iter().any(|p| n.starts_with(p))
    }) {
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
pub(super) fn fuse_qkv(tensors: &mut BTreeMap<String, Entry>) -> Result<(), CheckpointError> {
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
pub(super) fn display_name(timm: &str, layout: Layout) -> String {
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
    if layout == Layout::HuggingFace && name.contains(".attn.qkv.") && !s.is_empty() {
        s[0] /= 3;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

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
