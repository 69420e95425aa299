//! timm's layout, which the model's fields carry (`patch_embed.proj`,
//! `cls_token`, `pos_embed`, `blocks.N.attn.qkv`, …): nothing to convert.

use std::collections::BTreeMap;

use super::super::Entry;

/// Whether the names are timm's.
pub(super) fn is_timm<'a>(mut names: impl Iterator<Item = &'a String>) -> bool {
    names.any(|n| n.starts_with("patch_embed.") || n.starts_with("blocks."))
}

/// timm's files already use the model's names.
pub(super) fn convert(tensors: BTreeMap<String, Entry>) -> BTreeMap<String, Entry> {
    tensors
}
