//! Without a config: the architecture the tensor shapes fix.

use std::collections::BTreeMap;

use super::super::family::{blocks_named, display_name};
use super::super::safetensors::SafetensorsError;
use super::{CheckpointError, Entry, Layout};
use crate::model::{Pool, VitConfig};

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
        Layout::Timm => 1e-6,
        Layout::HuggingFace(family) => family.spec().norm_eps,
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
