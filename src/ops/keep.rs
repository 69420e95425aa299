//! What the fused forward pass keeps for the relevance maps' backward pass
//! (`super::backward`), and the buffers a dropped pass hands to the next.

use std::sync::{Arc, Mutex};

use burn::backend::Flex;
use burn::tensor::Tensor;

use super::attention::SendPtr;

/// Buffers a dropped [`Kept`] hands back, taken by the next forward pass
/// that keeps instead of fresh zeroed memory (it writes every element
/// before anything reads it): at most one pass's worth.
pub(super) struct Spare {
    buffers: Mutex<Vec<Vec<f32>>>,
    limit: usize,
}

impl Spare {
    /// Room for `limit` buffers.
    pub(super) fn new(limit: usize) -> Self {
        Self {
            buffers: Mutex::default(),
            limit,
        }
    }

    /// A buffer of `len` values: a spare one, else a new one.
    pub(super) fn take(&self, len: usize) -> Vec<f32> {
        let mut buffers = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        match buffers.iter().position(|v| v.len() == len) {
            Some(i) => buffers.swap_remove(i),
            None => vec![0.0; len],
        }
    }

    pub(super) fn give(&self, buffer: Vec<f32>) {
        let mut buffers = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        if buffers.len() < self.limit && !buffer.is_empty() {
            buffers.push(buffer);
        }
    }
}

/// What the backward pass needs of one block's forward pass, row-major.
pub struct BlockKeep {
    /// The block's input x, [B·T, D].
    pub input: Vec<f32>,
    /// Queries, keys and values as attention used them (after QK norm),
    /// [B·T, 3D].
    pub qkv: Vec<f32>,
    /// The attention weights, [B·H, T, T], held as the tensor the maps
    /// read (no copy on the way) and read in place by the backward pass.
    pub weights: Tensor<3>,
    /// x + attention, [B·T, D].
    pub mid: Vec<f32>,
    /// The MLP activation's slope at its input (the first layer's
    /// output), [B·T, hidden].
    pub slope: Vec<f32>,
}

/// What [`FusedEncoder::encode_keeping`] kept.
pub struct Kept {
    pub blocks: Vec<BlockKeep>,
    /// The last block's output, before the final norm, [B·T, D].
    pub last: Vec<f32>,
    spare: Arc<Spare>,
}

impl Kept {
    /// Room for `blocks` blocks, their buffers taken from (and given back
    /// to) `spare`.
    pub(super) fn new(blocks: usize, spare: Arc<Spare>) -> Self {
        Self {
            blocks: Vec::with_capacity(blocks),
            last: Vec::new(),
            spare,
        }
    }

    /// A buffer of `len` values for what is kept.
    pub(super) fn buffer(&self, len: usize) -> Vec<f32> {
        self.spare.take(len)
    }
}

impl Drop for Kept {
    /// The buffers go back to the encoder for its next forward pass that
    /// keeps; so do the attention weights' where nothing else holds their
    /// tensor.
    fn drop(&mut self) {
        for b in self.blocks.drain(..) {
            for buffer in [b.input, b.qkv, b.mid, b.slope] {
                self.spare.give(buffer);
            }
            if let Some(weights) = sole_buffer(b.weights) {
                self.spare.give(weights);
            }
        }
        self.spare.give(std::mem::take(&mut self.last));
    }
}

/// `t`'s buffer as a vector, without a copy, when `t` is its only owner.
fn sole_buffer(t: Tensor<3>) -> Option<Vec<f32>> {
    let p = t.try_into_primitive::<Flex>().ok()?;
    if !p.is_unique() {
        return None;
    }
    p.into_data().try_into_vec::<f32>().ok()
}

/// Where the chunks of one block write what is kept.
#[derive(Clone, Copy)]
pub(super) struct KeepAt {
    pub(super) input: SendPtr,
    pub(super) mid: SendPtr,
    pub(super) slope: SendPtr,
    pub(super) last: SendPtr,
}
