//! The memory budget: checked on the file's tensors before any value is
//! read, then on the tensors as the converter left them (q/k/v parts of
//! mixed types are fused in f32), so a model too large for the device is
//! refused with its size, and what would fit it, before it is built.

use std::collections::BTreeMap;

use super::CheckpointError;
use super::error::human_bytes;
use super::safetensors::{Dtype, SafeTensors, TensorView};
use super::stored::{Entry, Stored};

/// How much a device can hold, in bytes of weights.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryLimits {
    /// The largest single buffer (WebGPU: `maxStorageBufferBindingSize`), in f32.
    pub max_tensor_bytes: u64,
    /// All weights together.
    pub max_total_bytes: u64,
    /// Named in messages, e.g. "this GPU" or "the browser's WebAssembly memory".
    pub device: String,
}

impl MemoryLimits {
    /// No limits (native).
    pub fn unlimited() -> Self {
        Self {
            max_tensor_bytes: u64::MAX,
            max_total_bytes: u64::MAX,
            device: "this machine".into(),
        }
    }
}

/// What loading does with the weight matrices a file stores in f16: every
/// `Linear` weight (the blocks' q/k/v, projection and MLP, and the head),
/// 99% of a ViT's weights. Kept, they take half the memory on Burn's plain
/// CPU device, with the same results bit for bit in the browser, since the
/// matrix kernel widens them exactly as it packs them (natively they go
/// through vitrine's kernel instead of the gemm crate's: equal within
/// float32 rounding). Other devices, and other tensors, get f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum F16Matrices {
    /// Widens them to f32.
    #[default]
    Widen,
    /// Keeps them in f16; widening them as the kernel packs them costs
    /// some time (docs/performance.md).
    Keep,
    /// Keeps them in f16 only when the f32 weights would not fit.
    KeepIfNeeded,
}

/// Bytes the weights take in memory: f32, but two bytes for each value of
/// a matrix for which `f16` holds.
fn total(file: &SafeTensors, f16: &dyn Fn(&TensorView) -> bool) -> u64 {
    file.tensors
        .values()
        .map(|v| v.numel() as u64 * if v.shape.len() == 2 && f16(v) { 2 } else { 4 })
        .sum()
}

fn file_f16(v: &TensorView) -> bool {
    v.dtype == Dtype::F16
}

/// The whole model over the budget, counted with or without f16 matrices.
fn over_budget(
    limits: &MemoryLimits,
    bytes: u64,
    keep_f16: bool,
    advice: Option<String>,
) -> CheckpointError {
    CheckpointError::TooLarge {
        tensor: None,
        bytes,
        limit: limits.max_total_bytes,
        device: limits.device.clone(),
        held_as: if keep_f16 {
            "with its f16 matrices kept in f16"
        } else {
            "as f32"
        },
        advice,
    }
}

/// The plan for a file, before any value is read: whether its f16
/// matrices stay f16, or why the model cannot be held.
pub(super) struct Plan {
    pub keep_f16: bool,
    /// The weights' bytes as f32.
    pub as_f32: u64,
}

pub(super) fn plan(
    file: &SafeTensors,
    limits: &MemoryLimits,
    policy: F16Matrices,
) -> Result<Plan, CheckpointError> {
    for (name, view) in &file.tensors {
        let bytes = view.numel() as u64 * 4;
        if bytes > limits.max_tensor_bytes {
            return Err(CheckpointError::TooLarge {
                tensor: Some(name.clone()),
                bytes,
                limit: limits.max_tensor_bytes,
                device: limits.device.clone(),
                held_as: "as f32",
                advice: None,
            });
        }
    }
    let as_f32 = total(file, &|_| false);
    let keep_f16 = match policy {
        F16Matrices::Widen => false,
        F16Matrices::Keep => true,
        F16Matrices::KeepIfNeeded => as_f32 > limits.max_total_bytes,
    } && file
        .tensors
        .values()
        .any(|v| file_f16(v) && v.shape.len() == 2);
    let needed = if keep_f16 {
        total(file, &file_f16)
    } else {
        as_f32
    };
    if needed > limits.max_total_bytes {
        let in_f16 = total(file, &|_| true);
        let all_f16 = file.tensors.values().all(file_f16);
        let advice = (in_f16 <= limits.max_total_bytes).then(|| {
            format!(
                "with its weight matrices kept in f16 it needs {}, which fits: {}",
                human_bytes(in_f16),
                if all_f16 {
                    "the CPU backend keeps an f16 file's matrices in f16 \
                     (unless told to widen them)"
                } else {
                    "save the checkpoint in f16 (PyTorch: `model.half()`) \
                     and load that on the CPU backend"
                }
            )
        });
        return Err(over_budget(limits, needed, keep_f16, advice));
    }
    Ok(Plan { keep_f16, as_f32 })
}

/// The converted tensors as they are now held, against the budget: whether
/// f16 matrices are still kept (there may be none left), and the note for
/// the user when they were kept only because the f32 weights would not fit.
pub(super) fn check_held(
    tensors: &BTreeMap<String, Entry>,
    plan: &Plan,
    limits: &MemoryLimits,
    policy: F16Matrices,
) -> Result<(bool, Option<String>), CheckpointError> {
    let f16_matrix = |e: &Entry| matches!(e.values, Stored::F16(_)) && e.shape.len() == 2;
    let keep_f16 = plan.keep_f16 && tensors.values().any(f16_matrix);
    let held: u64 = tensors
        .values()
        .map(|e| e.values.len() as u64 * if keep_f16 && f16_matrix(e) { 2 } else { 4 })
        .sum();
    if held > limits.max_total_bytes {
        return Err(over_budget(limits, held, keep_f16, None));
    }
    let note = (keep_f16 && policy == F16Matrices::KeepIfNeeded).then(|| {
        format!(
            "weight matrices kept in f16, as the file stores them ({} in memory): as f32 \
             they would need {}, more than the {} {} allows; the results are the same",
            human_bytes(held),
            human_bytes(plan.as_f32),
            human_bytes(limits.max_total_bytes),
            limits.device
        )
    });
    Ok((keep_f16, note))
}
