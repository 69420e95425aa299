//! transformers' DINOv2 with registers (`Dinov2WithRegistersModel`,
//! `Dinov2WithRegistersForImageClassification`; model_type
//! `dinov2_with_registers`; Darcet et al. 2024): DINOv2's names plus
//! `embeddings.register_tokens`, laid out as no timm model is: the class
//! token gets its position embedding and the registers, inserted after it,
//! get none. timm's `no_embed_class` layout (positions for the patches
//! only, every prefix token without) computes the same once the class
//! token's position is added to the class token itself, which is this
//! family's pass.

use std::collections::BTreeMap;

use super::super::config::Fields;
use super::super::pos_embed::PosResize;
use super::super::{Entry, Stored};
use super::dinov2::{DINOV2_TO_TIMM, DINOV2_V5_TO_TIMM};
use super::vit::HF_TO_TIMM;
use super::{CheckpointError, HfSpec};
use crate::model::{Pool, VitConfig};

pub(super) const SPEC: HfSpec = HfSpec {
    model_type: "dinov2_with_registers",
    marks: |n| n.starts_with("vit.embeddings.register_tokens"),
    tables: &[
        REGISTERS_TO_TIMM,
        DINOV2_TO_TIMM,
        HF_TO_TIMM,
        DINOV2_V5_TO_TIMM,
    ],
    architectures: &[
        ("Dinov2WithRegistersModel", None),
        (
            "Dinov2WithRegistersForImageClassification",
            Some(Pool::TokenAndAvg),
        ),
    ],
    head: Pool::TokenAndAvg,
    processor: "BitImageProcessor",
    patch_size: 14,
    norm_eps: 1e-6,
    pos_resize: PosResize::Timm,
    any_size: true,
    configure,
    convert: fold_class_position,
};

/// What the registers add to DINOv2's names.
const REGISTERS_TO_TIMM: &[(&str, &str)] = &[("vit.embeddings.register_tokens", "reg_token")];

/// DINOv2's fields, the number of registers, and timm's layout for them.
fn configure(f: &Fields, c: &mut VitConfig) -> Result<(), CheckpointError> {
    super::dinov2::configure(f, c)?;
    c.reg_tokens = f.usize("num_register_tokens")?.unwrap_or(4);
    c.no_embed_class = true;
    Ok(())
}

/// `cls_token` += `pos_embed[:, 0]`, which then holds the patches' rows
/// only. Tensors of other shapes are left for the shape check to name.
fn fold_class_position(t: &mut BTreeMap<String, Entry>) -> Result<(), CheckpointError> {
    let (Some(cls), Some(pos)) = (t.get("cls_token"), t.get("pos_embed")) else {
        return Ok(());
    };
    let d = cls.values.len();
    if cls.shape != [1, 1, d]
        || pos.shape.len() != 3
        || pos.shape[0] != 1
        || pos.shape[1] < 2
        || pos.shape[2] != d
    {
        return Ok(());
    }
    let mut pos = t.remove("pos_embed").expect("just seen");
    let mut rows = std::mem::replace(&mut pos.values, Stored::F32(Vec::new())).into_f32();
    let cls = t.get_mut("cls_token").expect("just seen");
    let token = std::mem::replace(&mut cls.values, Stored::F32(Vec::new())).into_f32();
    cls.values = Stored::F32(token.iter().zip(&rows[..d]).map(|(c, p)| c + p).collect());
    rows.drain(..d); // [1, N, D]
    pos.shape[1] -= 1;
    pos.values = Stored::F32(rows);
    t.insert("pos_embed".into(), pos);
    Ok(())
}
