//! Checkpoint families: how each library names a ViT's tensors, and the
//! converter that turns a file's name → tensor map into the model's own
//! names (timm's), in one pure pass, as timm's `checkpoint_filter_fn` does.
//! One file a family: [`timm`] (the model's own names), and the
//! transformers families [`vit`], [`deit`], [`dinov2`] and
//! [`dinov2_registers`], which share [`hf`]'s machinery (their prefixes,
//! name tables, the q/k/v fusion). docs/adding-a-family.md is the recipe.

mod deit;
mod dinov2;
mod dinov2_registers;
mod hf;
mod timm;
mod vit;

use std::collections::BTreeMap;

use super::config::Fields;
use super::pos_embed::PosResize;
use super::{CheckpointError, Entry};
use crate::model::{Pool, VitConfig};

pub use hf::HF_TO_TIMM;
pub(super) use hf::{blocks_named, display_name, torch_shape_as_stored};

/// The naming schemes a checkpoint may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// timm: `blocks.0.attn.qkv.weight`, …
    Timm,
    /// transformers: `vit.encoder.layer.0.attention.attention.query.weight`, …,
    /// in one of its model families.
    HuggingFace(HfFamily),
}

impl Layout {
    pub fn is_hf(self) -> bool {
        matches!(self, Layout::HuggingFace(_))
    }
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
    /// `Dinov2WithRegistersModel`, `…ForImageClassification`
    /// (`dinov2_with_registers`).
    Dinov2WithRegisters,
}

impl HfFamily {
    /// Every family, in the order their tensor names are recognised: the
    /// most specific first.
    pub(in crate::checkpoint) const ALL: [HfFamily; 4] = [
        HfFamily::Dinov2WithRegisters,
        HfFamily::Deit,
        HfFamily::Dinov2,
        HfFamily::Vit,
    ];

    /// What vitrine knows of the family, from its own file.
    pub(super) fn spec(self) -> &'static HfSpec {
        match self {
            HfFamily::Vit => &vit::SPEC,
            HfFamily::Deit => &deit::SPEC,
            HfFamily::Dinov2 => &dinov2::SPEC,
            HfFamily::Dinov2WithRegisters => &dinov2_registers::SPEC,
        }
    }

    /// The `model_type` of its configs, which is also the prefix of a task
    /// model's backbone names (`vit.`, `dinov2.`).
    pub fn model_type(self) -> &'static str {
        self.spec().model_type
    }
}

/// A transformers family, as its file describes it.
pub(super) struct HfSpec {
    /// `config.json`'s `model_type`, and the prefix of a task model's names.
    pub model_type: &'static str,
    /// Whether a tensor name (without the prefix) is one only this family
    /// has (DeiT's distillation token, DINOv2's layer scale).
    pub marks: fn(&str) -> bool,
    /// The family's names → timm's, first match wins (both ways), written
    /// with the `vit.` prefix, which the family's own replaces.
    pub tables: &'static [&'static [(&'static str, &'static str)]],
    /// The architectures it reads, and what each one's head does (`None`:
    /// a backbone).
    pub architectures: &'static [(&'static str, Option<Pool>)],
    /// A file with a classifier but no `architectures`: its pooling.
    pub head: Pool,
    /// The image processor its checkpoints use when their
    /// `preprocessor_config.json` names none.
    pub processor: &'static str,
    /// Defaults of its config class: patch size and LayerNorm epsilon.
    pub patch_size: usize,
    pub norm_eps: f64,
    /// Whether the model takes any input size (its position embeddings
    /// interpolated per input, as DINOv2's are), so that a processor that
    /// crops to another size than the config's is followed.
    pub any_size: bool,
    /// How it interpolates position embeddings to another input size.
    pub pos_resize: PosResize,
    /// Its own `config.json` fields, after the ones every family shares.
    pub configure: fn(&Fields, &mut VitConfig) -> Result<(), CheckpointError>,
    /// Its own pass over the tensors, after renaming and the q/k/v fusion.
    pub convert: fn(&mut BTreeMap<String, Entry>) -> Result<(), CheckpointError>,
}

/// Reads nothing beyond the shared fields.
fn no_fields(_: &Fields, _: &mut VitConfig) -> Result<(), CheckpointError> {
    Ok(())
}

/// Changes nothing beyond the renaming.
fn no_pass(_: &mut BTreeMap<String, Entry>) -> Result<(), CheckpointError> {
    Ok(())
}

/// The naming scheme of a file's tensor names, and for transformers the
/// family: the first whose prefix or own tensors the names show, else ViT.
pub(super) fn detect<'a>(
    names: impl Iterator<Item = &'a String> + Clone,
) -> Result<Layout, CheckpointError> {
    if hf::is_hf(names.clone()) {
        let family = HfFamily::ALL
            .into_iter()
            .find(|f| hf::shows(*f, names.clone()))
            .unwrap_or(HfFamily::Vit);
        Ok(Layout::HuggingFace(family))
    } else if timm::is_timm(names.clone()) {
        Ok(Layout::Timm)
    } else {
        Err(CheckpointError::UnknownLayout {
            sample: names.take(5).cloned().collect(),
        })
    }
}

/// The converter: the file's tensors under the model's (timm's) names,
/// with what was left out and why, for the user.
pub(super) fn convert(
    layout: Layout,
    tensors: BTreeMap<String, Entry>,
) -> Result<(BTreeMap<String, Entry>, Vec<&'static str>), CheckpointError> {
    match layout {
        Layout::Timm => Ok((timm::convert(tensors), Vec::new())),
        Layout::HuggingFace(family) => hf::convert(family, tensors),
    }
}
