//! How a model runs, chosen once when it is loaded: the model (`model/`)
//! says what a ViT computes, in the paper's order, through Burn's
//! operations; an [`Executor`] says what runs it.
//!
//! - [`Executor::Fused`]: on Burn's plain CPU device, the encoder's blocks
//!   through the fused kernels of [`crate::ops::encoder`] (two passes a
//!   block over the weights in place, natively and in the browser's CPU
//!   module);
//! - [`Executor::Operations`]: everywhere else (WebGPU, autodiff for
//!   training, a model whose weights the fused kernels cannot read in
//!   place), Burn's operations, the model's own `forward`.
//!
//! Both give the same trace for classification: the final tokens, and each
//! block's attention weights when asked; and for a relevance map, a forward
//! pass that keeps what the backward pass needs, then ∂logit/∂A of every
//! layer (on the fused path, both on the fused kernels: `ops::backward`).
//! The walk-through runs the blocks before and after the one it shows on
//! the executor, and that block through the model's operations, which
//! expose every step of it.

use burn::tensor::{Tensor, TensorData};

use crate::explain::relevance::{self, RelevanceTensors};
use crate::explain::{MapQueries, gradient};
use crate::model::VisionTransformer;
#[cfg(feature = "cpu")]
use crate::ops::encoder::{BlockParams, FusedEncoder};
#[cfg(feature = "cpu")]
use crate::ops::host::Values;
#[cfg(feature = "cpu")]
use crate::ops::keep::Kept;

pub use crate::ops::LookAttention;

/// What runs a model's encoder. One per model, so the fused variant's size
/// (its weights' handles) costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Executor {
    /// The fused CPU kernels, with the model's weights read in place.
    #[cfg(feature = "cpu")]
    Fused(FusedEncoder),
    /// Burn's operations, on the model's device.
    Operations,
}

impl Executor {
    /// The fastest executor that can run `model` where it is: the fused
    /// kernels where it lives on Burn's plain CPU device with every weight
    /// readable in place and its blocks all of one size, else Burn's
    /// operations.
    pub fn for_model(model: &VisionTransformer) -> Self {
        #[cfg(feature = "cpu")]
        {
            let blocks: Vec<BlockParams> = model
                .blocks
                .iter()
                .map(|b| BlockParams {
                    norm1: &b.norm1,
                    qkv: &b.attn.qkv,
                    q_norm: b.attn.q_norm.as_ref(),
                    k_norm: b.attn.k_norm.as_ref(),
                    proj: &b.attn.proj,
                    ls1: b.ls1.as_ref().map(|ls| ls.gamma.val()),
                    norm2: &b.norm2,
                    fc1: &b.mlp.fc1,
                    fc2: &b.mlp.fc2,
                    ls2: b.ls2.as_ref().map(|ls| ls.gamma.val()),
                    quick_gelu: b.mlp.quick_gelu,
                    heads: b.attn.num_heads,
                })
                .collect();
            if let Some(fused) = FusedEncoder::of(&blocks, model.norm.as_ref(), model.norm_eps) {
                return Executor::Fused(fused);
            }
        }
        Executor::Operations
    }

    /// Its name, as the model's status line shows it.
    pub fn name(&self) -> &'static str {
        match self {
            #[cfg(feature = "cpu")]
            Executor::Fused(_) => "fused CPU kernels",
            Executor::Operations => "Burn's operations",
        }
    }

    /// The L blocks and the final norm of `model`: tokens [B, T, D] →
    /// [B, T, D]; `look(i, A)`, when given, sees block i's attention
    /// weights [B, heads, T, T].
    pub fn encode(
        &self,
        model: &VisionTransformer,
        tokens: Tensor<3>,
        mut look: Option<LookAttention>,
    ) -> Tensor<3> {
        match self {
            #[cfg(feature = "cpu")]
            Executor::Fused(fused) => fused.encode(tokens, look),
            Executor::Operations => model.encode(tokens, |i, steps| {
                if let Some(look) = look.as_mut() {
                    look(i, &steps.attention.weights);
                }
            }),
        }
    }

    /// Blocks `range` alone, without the final norm: tokens [B, T, D] →
    /// [B, T, D]; `look(i, A)`, when given, sees block i's attention
    /// weights.
    pub fn encode_blocks(
        &self,
        model: &VisionTransformer,
        tokens: Tensor<3>,
        range: std::ops::Range<usize>,
        mut look: Option<LookAttention>,
    ) -> Tensor<3> {
        match self {
            #[cfg(feature = "cpu")]
            Executor::Fused(fused) => fused.encode_blocks(tokens, range, look),
            Executor::Operations => model.encode_blocks(tokens, range, |i, steps| {
                if let Some(look) = look.as_mut() {
                    look(i, &steps.attention.weights);
                }
            }),
        }
    }

    /// Logits (or a backbone's features): images [B, C, H, W] → [B, classes].
    pub fn forward(&self, model: &VisionTransformer, images: Tensor<4>) -> Tensor<2> {
        model.forward_head(self.encode(model, model.embed(images), None))
    }

    /// One image's forward pass ([1, C, H, W]), keeping what the backward
    /// pass of [`Executor::attention_gradients`] needs.
    pub fn forward_keeping(&self, model: &VisionTransformer, images: Tensor<4>) -> KeptForward {
        #[cfg(feature = "cpu")]
        if let Executor::Fused(fused) = self
            && fused.can_go_back()
        {
            assert_eq!(images.dims()[0], 1, "one image at a time");
            let (encoded, kept) = fused.encode_keeping(model.embed(images));
            let [_, t, d] = encoded.dims();
            let device = encoded.device();
            let last = Tensor::from_data(TensorData::new(kept.last.clone(), [t, d]), &device);
            return KeptForward::Fused {
                logits: model.forward_head(encoded.clone()),
                tokens: encoded.squeeze_dim(0),
                last,
                kept,
            };
        }
        KeptForward::Operations(gradient::forward(model, images))
    }

    /// The bytes the backward pass keeps for its speed when allowed to
    /// (`transpose` of [`Executor::attention_gradients`]): the weight
    /// matrices' transposes on the fused path, nothing on the other.
    pub fn transposed_bytes(&self) -> u64 {
        match self {
            #[cfg(feature = "cpu")]
            Executor::Fused(fused) => fused.transposed_bytes(),
            Executor::Operations => 0,
        }
    }

    /// Each layer's attention weights and the gradient of logit `class`
    /// with respect to them, [H, T, T] each, first layer first; `eps` is
    /// the model's LayerNorm epsilon. `transpose` lets the fused path make
    /// and keep [`Executor::transposed_bytes`] more.
    pub fn attention_gradients(
        &self,
        model: &VisionTransformer,
        forward: &KeptForward,
        class: usize,
        eps: f64,
        transpose: bool,
    ) -> Vec<(Tensor<3>, Tensor<3>)> {
        match (self, forward) {
            #[cfg(feature = "cpu")]
            (Executor::Fused(fused), KeptForward::Fused { last, .. }) => {
                let grads = fused_gradients(fused, model, forward, class, eps, transpose);
                let [t, _] = last.dims();
                let device = last.device();
                let square = |v: Vec<f32>| {
                    let h = v.len() / (t * t);
                    Tensor::<3>::from_data(TensorData::new(v, [h, t, t]), &device)
                };
                forward
                    .weights()
                    .into_iter()
                    .zip(grads.into_iter().map(square))
                    .collect()
            }
            (_, KeptForward::Operations(forward)) => forward
                .weights()
                .into_iter()
                .zip(gradient::attention_gradients(model, forward, class, eps))
                .collect(),
            #[cfg(feature = "cpu")]
            (Executor::Operations, KeptForward::Fused { .. }) => {
                unreachable!("a fused forward pass comes from the fused executor")
            }
        }
    }

    /// The relevance maps of logit `class` up to the host's last step
    /// ([`RelevanceTensors::finish`]): from [`Executor::attention_gradients`]
    /// on the device, or on the fused path on the host, where its
    /// gradients and the kept attention weights are already.
    pub fn relevance_maps(
        &self,
        model: &VisionTransformer,
        forward: &KeptForward,
        class: usize,
        eps: f64,
        transpose: bool,
    ) -> RelevanceTensors {
        let q = MapQueries::of(model);
        #[cfg(feature = "cpu")]
        if let (Executor::Fused(fused), KeptForward::Fused { .. }) = (self, forward) {
            let grads = fused_gradients(fused, model, forward, class, eps, transpose);
            let weights = forward.weights();
            let heads = weights[0].dims()[0];
            let weights: Vec<Values> = weights
                .into_iter()
                .map(|w| Values::of(w).expect("kept weights are f32 on the CPU"))
                .collect();
            let layers: Vec<(&[f32], &[f32])> = weights
                .iter()
                .map(Values::get)
                .zip(grads.iter().map(Vec::as_slice))
                .collect();
            let maps = relevance::host_maps(&layers, heads, q);
            fused.give_back(grads);
            return maps;
        }
        relevance::device_maps(
            self.attention_gradients(model, forward, class, eps, transpose),
            q,
        )
    }
}

/// The fused path's ∂logit/∂A, [H·T·T] a layer: the head's backward pass
/// in Burn's operations, then the blocks' on the fused kernels.
#[cfg(feature = "cpu")]
fn fused_gradients(
    fused: &FusedEncoder,
    model: &VisionTransformer,
    forward: &KeptForward,
    class: usize,
    eps: f64,
    transpose: bool,
) -> Vec<Vec<f32>> {
    let KeptForward::Fused {
        tokens, last, kept, ..
    } = forward
    else {
        unreachable!("a fused forward pass")
    };
    let g = gradient::head_back(model, last, tokens, class, eps);
    let g = g.into_data().try_into_vec::<f32>().expect("f32 gradient");
    fused
        .attention_gradients(kept, g, transpose)
        .expect("checked when the forward pass was kept")
}

/// One image's forward pass, with what its backward pass needs.
pub enum KeptForward {
    /// Burn's operations' values ([`gradient::forward`]).
    Operations(gradient::Forward),
    /// The fused kernels' buffers.
    #[cfg(feature = "cpu")]
    Fused {
        /// [1, classes]
        logits: Tensor<2>,
        /// The final norm's output [T, D], and its input [T, D].
        tokens: Tensor<2>,
        last: Tensor<2>,
        kept: Kept,
    },
}

impl KeptForward {
    /// Each layer's attention weights, [H, T, T], first layer first.
    pub fn weights(&self) -> Vec<Tensor<3>> {
        match self {
            KeptForward::Operations(f) => f.weights(),
            #[cfg(feature = "cpu")]
            KeptForward::Fused { kept, .. } => {
                kept.blocks.iter().map(|b| b.weights.clone()).collect()
            }
        }
    }

    /// The logits of the pass, [1, classes].
    pub fn logits(&self) -> Tensor<2> {
        match self {
            KeptForward::Operations(f) => f.logits.clone(),
            #[cfg(feature = "cpu")]
            KeptForward::Fused { logits, .. } => logits.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
