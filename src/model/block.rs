//! One pre-norm encoder block (paper eq. 2–3; timm `Block`):
//! `x = x + attn(norm1(x))`, then `x = x + mlp(norm2(x))`, each branch
//! optionally times a learned layer scale (CaiT; DeiT III, DINOv2).

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Tensor};

use super::attention::{Attention, AttentionOutput};
use super::config::VitConfig;
use super::mlp::Mlp;

/// A learned per-channel factor on a residual branch (CaiT's layer scale;
/// timm `LayerScale`, whose parameter is `gamma`).
#[derive(Module, Debug)]
pub struct LayerScale {
    /// [D]
    pub gamma: Param<Tensor<1>>,
}

impl LayerScale {
    fn init(dim: usize, value: f64, device: &Device) -> Self {
        Self {
            gamma: Param::from_tensor(Tensor::full([dim], value, device)),
        }
    }

    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let gamma = self.gamma.val();
        let [d] = gamma.dims();
        x * gamma.reshape([1, 1, d])
    }
}

/// Encoder block with timm's field names.
#[derive(Module, Debug)]
pub struct Block {
    pub norm1: LayerNorm,
    pub attn: Attention,
    /// Layer scale on the attention branch (timm `init_values`).
    pub ls1: Option<LayerScale>,
    pub norm2: LayerNorm,
    pub mlp: Mlp,
    /// Layer scale on the MLP branch.
    pub ls2: Option<LayerScale>,
}

impl Block {
    /// Random initialisation of one block of `c`.
    pub fn init(c: &VitConfig, device: &Device) -> Self {
        let d = c.embed_dim;
        let norm = LayerNormConfig::new(d).with_epsilon(c.norm_eps);
        let scale = || c.init_values.map(|v| LayerScale::init(d, v, device));
        Self {
            norm1: norm.init(device),
            attn: Attention::init(
                d,
                c.num_heads,
                c.qkv_bias,
                c.qk_norm.then_some(c.norm_eps),
                device,
            ),
            ls1: scale(),
            norm2: norm.init(device),
            mlp: Mlp::init(d, c.mlp_hidden, c.quick_gelu, device),
            ls2: scale(),
        }
    }

    /// [B, T, D] → [B, T, D], with every value on the way.
    pub fn forward(&self, x: Tensor<3>) -> BlockSteps {
        self.forward_probed(x, None)
    }

    /// [`Block::forward`] with a probe on the attention weights (see
    /// [`Attention::forward_probed`]).
    pub fn forward_probed(&self, x: Tensor<3>, probe: Option<Tensor<4>>) -> BlockSteps {
        let scaled = |ls: &Option<LayerScale>, x: Tensor<3>| match ls {
            Some(ls) => ls.forward(x),
            None => x,
        };
        let normed = self.norm1.forward(x.clone());
        let attention = self.attn.forward_probed(normed.clone(), probe);
        let after_attention = x + scaled(&self.ls1, attention.context.clone());
        let normed2 = self.norm2.forward(after_attention.clone());
        let (mlp, hidden) = self.mlp.forward_hidden(normed2.clone());
        let mlp = scaled(&self.ls2, mlp);
        let output = after_attention.clone() + mlp.clone();
        BlockSteps {
            normed,
            attention,
            after_attention,
            normed2,
            hidden,
            mlp,
            output,
        }
    }
}

/// One block's values, in the order it computes them, each [B, T, D] but
/// the attention's weights ([B, heads, T, T]): handles to buffers the block
/// computed anyway, alive until the caller drops them.
pub struct BlockSteps {
    /// What attention sees: `norm1(x)`.
    pub normed: Tensor<3>,
    /// The attention's output and its probabilities.
    pub attention: AttentionOutput,
    /// `x + attn(norm1(x))`.
    pub after_attention: Tensor<3>,
    /// What the MLP sees: `norm2(after_attention)`.
    pub normed2: Tensor<3>,
    /// The MLP's first layer's output, before its activation.
    pub hidden: Tensor<3>,
    /// What the second residual adds (after layer scale, if any).
    pub mlp: Tensor<3>,
    /// The block's output, `after_attention + mlp(normed2)`.
    pub output: Tensor<3>,
}
