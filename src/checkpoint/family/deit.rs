//! transformers' DeiT (`DeiTModel`, `DeiTForImageClassification`,
//! `DeiTForImageClassificationWithTeacher`; model_type `deit`): ViT's names
//! plus the distillation token and, with the teacher, two heads.

use super::super::config::Fields;
use super::super::pos_embed::PosResize;
use super::vit::HF_TO_TIMM;
use super::{CheckpointError, HfSpec, no_pass};
use crate::model::{Pool, VitConfig};

pub(super) const SPEC: HfSpec = HfSpec {
    model_type: "deit",
    marks: |n| n.ends_with("distillation_token"),
    tables: &[DEIT_TO_TIMM, HF_TO_TIMM],
    architectures: &[
        ("DeiTModel", None),
        ("DeiTForImageClassification", Some(Pool::Token)),
        (
            "DeiTForImageClassificationWithTeacher",
            Some(Pool::TokenAndDistillation),
        ),
    ],
    head: Pool::Token,
    processor: "DeiTImageProcessor",
    patch_size: 16,
    norm_eps: 1e-12,
    pos_resize: PosResize::Transformers,
    any_size: false,
    configure,
    convert: no_pass,
};

/// Every DeiT has its distillation token.
fn configure(_: &Fields, c: &mut VitConfig) -> Result<(), CheckpointError> {
    c.distilled = true;
    Ok(())
}

/// What DeiT adds to ViT's names: the distillation token and, in
/// `DeiTForImageClassificationWithTeacher`, the two heads.
const DEIT_TO_TIMM: &[(&str, &str)] = &[
    ("vit.embeddings.distillation_token", "dist_token"),
    ("cls_classifier.", "head."),
    ("distillation_classifier.", "head_dist."),
];
