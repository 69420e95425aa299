//! Multi-head self-attention (paper eq. 5–8; timm `Attention`):
//! softmax(Q·Kᵀ/√d)·V per head, heads concatenated, then a linear projection.
//!
//! Unlike Burn's built-in layer, the probabilities are returned: the
//! attention maps are what vitrine shows.

use burn::module::Module;
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

/// Attention with a fused query/key/value projection, as timm stores it.
#[derive(Module, Debug)]
pub struct Attention {
    /// D → 3D: queries, keys and values of all heads (timm: `attn.qkv`).
    pub qkv: Linear,
    /// D → D after the heads are concatenated (timm: `attn.proj`).
    pub proj: Linear,
    /// LayerNorms over each head's queries and keys (timm `qk_norm`: `attn.q_norm`, `attn.k_norm`).
    pub q_norm: Option<LayerNorm>,
    pub k_norm: Option<LayerNorm>,
    /// Number of heads.
    pub num_heads: usize,
}

/// What attention produces: the mixed tokens and the probabilities that mixed them.
pub struct AttentionOutput {
    /// [B, T, D]
    pub context: Tensor<3>,
    /// [B, heads, T, T]; each row sums to 1.
    pub weights: Tensor<4>,
    /// The queries, keys and values the weights came from, [B, heads, T,
    /// head width] each (queries and keys after `qk_norm`, if any).
    pub queries: Tensor<4>,
    pub keys: Tensor<4>,
    pub values: Tensor<4>,
    /// With `qk_norm`: the queries and keys before their LayerNorms.
    pub raw_queries_keys: Option<(Tensor<4>, Tensor<4>)>,
}

impl Attention {
    /// Random initialisation (timm: truncated normal, std 0.02); `qk_norm`
    /// with that LayerNorm epsilon.
    pub fn init(
        embed_dim: usize,
        num_heads: usize,
        qkv_bias: bool,
        qk_norm: Option<f64>,
        device: &Device,
    ) -> Self {
        let init = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        let norm = |eps: f64| {
            LayerNormConfig::new(embed_dim / num_heads)
                .with_epsilon(eps)
                .init(device)
        };
        Self {
            q_norm: qk_norm.map(norm),
            k_norm: qk_norm.map(norm),
            qkv: LinearConfig::new(embed_dim, 3 * embed_dim)
                .with_bias(qkv_bias)
                .with_initializer(init.clone())
                .init(device),
            proj: LinearConfig::new(embed_dim, embed_dim)
                .with_initializer(init)
                .init(device),
            num_heads,
        }
    }

    /// [B, T, D] → context [B, T, D] and weights [B, heads, T, T].
    pub fn forward(&self, x: Tensor<3>) -> AttentionOutput {
        self.forward_probed(x, None)
    }

    /// [`Attention::forward`] with `probe` ([B, heads, T, T], zeros that
    /// require a gradient) added to the weights before they mix the values:
    /// the value is unchanged, and under autodiff the probe's gradient is
    /// the gradient with respect to the attention weights (what the tests
    /// of the relevance maps' hand-written backward pass compare with;
    /// a non-zero probe nudges the weights, for finite differences).
    pub fn forward_probed(&self, x: Tensor<3>, probe: Option<Tensor<4>>) -> AttentionOutput {
        let [b, t, d] = x.dims();
        let h = self.num_heads;
        let hd = d / h;
        let qkv = crate::ops::linear(&self.qkv, x) // [B, T, 3D]
            .reshape([b, t, 3, h, hd])
            .permute([2, 0, 3, 1, 4]); // [3, B, H, T, hd]
        let mut qkv = qkv.chunk(3, 0).into_iter().map(|m| m.squeeze_dim::<4>(0));
        let (mut q, mut k, v) = (
            qkv.next().unwrap(),
            qkv.next().unwrap(),
            qkv.next().unwrap(),
        );
        let mut raw_queries_keys = None;
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            raw_queries_keys = Some((q.clone(), k.clone()));
            q = qn.forward(q);
            k = kn.forward(k);
        }

        let scale = (hd as f64).powf(-0.5);
        let scores = crate::ops::matmul(q.clone().mul_scalar(scale), k.clone().swap_dims(2, 3)); // [B, H, T, T]
        let weights = crate::ops::softmax_last(scores);
        let mixing = match probe {
            Some(probe) => weights.clone() + probe,
            None => weights.clone(),
        };
        let context = crate::ops::matmul(mixing, v.clone()) // [B, H, T, hd]
            .swap_dims(1, 2) // [B, T, H, hd]
            .reshape([b, t, d]);
        AttentionOutput {
            context: crate::ops::linear(&self.proj, context),
            weights,
            queries: q,
            keys: k,
            values: v,
            raw_queries_keys,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn shapes_and_rows_sum_to_one() {
        let device = Device::flex();
        let attn = Attention::init(24, 3, true, None, &device);
        let x = Tensor::<3>::random([2, 5, 24], Distribution::Normal(0.0, 3.0), &device);
        let out = attn.forward(x);
        assert_eq!(out.context.dims(), [2, 5, 24]);
        assert_eq!(out.weights.dims(), [2, 3, 5, 5]);
        let sums: Vec<f32> = out.weights.sum_dim(3).into_data().try_to_vec().unwrap();
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
    }
}
