//! What the transformers families share: their prefixes (`vit.`, `deit.`,
//! …, or none in a bare backbone), the translation of their names through
//! each family's tables, the tensors inference leaves out, and the q/k/v
//! fusion (transformers keeps query, key and value apart).

use std::collections::{BTreeMap, BTreeSet};

use super::super::{CheckpointError, Entry, Stored};
use super::{HfFamily, Layout};

pub use super::vit::HF_TO_TIMM;

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
fn hf_unused(name: &str, family: HfFamily) -> Option<&'static str> {
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
fn hf_to_timm(name: &str, family: HfFamily) -> Option<String> {
    translate(&canonical(name, family), true, family)
}

/// Rewrites `name` from one side of `family`'s tables to the other; the
/// transformers side has the `vit.` prefix.
fn translate(name: &str, to_timm: bool, family: HfFamily) -> Option<String> {
    for &(hf, timm) in family.spec().tables.iter().flat_map(|t| t.iter()) {
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

/// Whether the names are transformers': a family's prefix, or a bare
/// backbone's first names.
pub(super) fn is_hf<'a>(mut names: impl Iterator<Item = &'a String>) -> bool {
    names.any(|n| {
        let prefixed = HfFamily::ALL
            .iter()
            .any(|f| n.starts_with(&format!("{}.", f.model_type())));
        prefixed
            || ["classifier.", "cls_classifier."]
                .iter()
                .chain(HF_BACKBONE_PREFIXES)
                .any(|p| n.starts_with(p))
    })
}

/// Whether the names show `family`: its prefix, or a tensor only it has.
pub(super) fn shows<'a>(family: HfFamily, mut names: impl Iterator<Item = &'a String>) -> bool {
    let spec = family.spec();
    let own = format!("{}.", spec.model_type);
    names.any(|n| n.starts_with(&own) || (spec.marks)(&canonical(n, family)))
}

/// The converter for a transformers family: each tensor renamed to timm's
/// name (or left out, with the reason), query, key and value fused, then
/// the family's own pass.
pub(super) fn convert(
    family: HfFamily,
    tensors: BTreeMap<String, Entry>,
) -> Result<(BTreeMap<String, Entry>, Vec<&'static str>), CheckpointError> {
    let mut out = BTreeMap::new();
    let mut unused = BTreeSet::new();
    for (name, entry) in tensors {
        if let Some(why) = hf_unused(&name, family) {
            unused.insert(why);
            continue;
        }
        let timm = hf_to_timm(&name, family).unwrap_or(name);
        out.insert(timm, entry);
    }
    fuse_qkv(&mut out, family)?;
    (family.spec().convert)(&mut out)?;
    Ok((out, unused.into_iter().collect()))
}

/// HF keeps query, key and value apart; timm fuses them as rows [q; k; v] of one matrix.
fn fuse_qkv(
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
pub(in crate::checkpoint) fn display_name(timm: &str, layout: Layout) -> String {
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
pub(in crate::checkpoint) fn blocks_named<'a>(names: impl Iterator<Item = &'a String>) -> usize {
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
pub(in crate::checkpoint) fn torch_shape_as_stored(
    name: &str,
    shape: &[usize],
    layout: Layout,
) -> Vec<usize> {
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
