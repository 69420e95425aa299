//! transformers' ViT (`ViTModel`, `ViTForImageClassification`; model_type
//! `vit`): google/vit-*, DINO's `facebook/dino-*`. Its names are the base
//! the other transformers families' tables build on.

use super::super::pos_embed::PosResize;
use super::{HfSpec, no_fields, no_pass};
use crate::model::Pool;

pub(super) const SPEC: HfSpec = HfSpec {
    model_type: "vit",
    marks: |_| false,
    tables: &[HF_TO_TIMM],
    architectures: &[
        ("ViTModel", None),
        ("ViTForImageClassification", Some(Pool::Token)),
    ],
    head: Pool::Token,
    processor: "ViTImageProcessor",
    patch_size: 16,
    norm_eps: 1e-12,
    pos_resize: PosResize::Transformers,
    any_size: false,
    configure: no_fields,
    convert: no_pass,
};

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
