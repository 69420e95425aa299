//! transformers' DINOv2 (`Dinov2Model`, `Dinov2ForImageClassification`;
//! model_type `dinov2`): ViT's embeddings and attention, its own norms, MLP
//! and layer scale; position embeddings interpolated to any input.

use super::super::config::Fields;
use super::super::pos_embed::PosResize;
use super::vit::HF_TO_TIMM;
use super::{CheckpointError, HfSpec, no_pass};
use crate::model::{Pool, VitConfig};

pub(super) const SPEC: HfSpec = HfSpec {
    model_type: "dinov2",
    marks: |n| n.contains(".layer_scale1."),
    tables: &[DINOV2_TO_TIMM, HF_TO_TIMM, DINOV2_V5_TO_TIMM],
    architectures: &[
        ("Dinov2Model", None),
        ("Dinov2ForImageClassification", Some(Pool::TokenAndAvg)),
    ],
    head: Pool::TokenAndAvg,
    processor: "BitImageProcessor",
    patch_size: 14,
    norm_eps: 1e-6,
    pos_resize: PosResize::Transformers,
    any_size: true,
    configure,
    convert: no_pass,
};

/// `Dinov2Config`'s own fields: the MLP sized by `mlp_ratio`
/// (`intermediate_size` is unused), layer scale, no SwiGLU.
pub(super) fn configure(f: &Fields, c: &mut VitConfig) -> Result<(), CheckpointError> {
    if f.bool("use_swiglu_ffn")? == Some(true) {
        return Err(f.err(
            "transformers DINOv2 with `use_swiglu_ffn` (ViT-g's SwiGLU MLP) is not supported"
                .into(),
        ));
    }
    let ratio = f.f64("mlp_ratio")?.unwrap_or(4.0);
    c.mlp_hidden = (c.embed_dim as f64 * ratio) as usize;
    c.init_values = Some(f.f64("layerscale_value")?.unwrap_or(1.0));
    Ok(())
}

/// transformers' DINOv2 names → timm's where they are not ViT's: its
/// norms, MLP and layer scale (its embeddings and attention are ViT's).
pub(super) const DINOV2_TO_TIMM: &[(&str, &str)] = &[
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
pub(super) const DINOV2_V5_TO_TIMM: &[(&str, &str)] = &[
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
