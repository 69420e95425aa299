//! One pre-norm encoder block (paper eq. 2–3; timm `Block`):
//! `x = x + attn(norm1(x))`, then `x = x + mlp(norm2(x))`.

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Tensor};

use super::attention::Attention;
use super::mlp::Mlp;

/// Encoder block with timm's field names.
#[derive(Module, Debug)]
pub struct Block {
    pub norm1: LayerNorm,
    pub attn: Attention,
    pub norm2: LayerNorm,
    pub mlp: Mlp,
}

impl Block {
    /// Random initialisation.
    pub fn init(
        embed_dim: usize,
        num_heads: usize,
        mlp_hidden: usize,
        qkv_bias: bool,
        norm_eps: f64,
        device: &Device,
    ) -> Self {
        let norm = LayerNormConfig::new(embed_dim).with_epsilon(norm_eps);
        Self {
            norm1: norm.init(device),
            attn: Attention::init(embed_dim, num_heads, qkv_bias, device),
            norm2: norm.init(device),
            mlp: Mlp::init(embed_dim, mlp_hidden, device),
        }
    }

    /// [B, T, D] → ([B, T, D], attention weights [B, heads, T, T]).
    pub fn forward(&self, x: Tensor<3>) -> (Tensor<3>, Tensor<4>) {
        let attn = self.attn.forward(self.norm1.forward(x.clone()));
        let x = x + attn.context;
        let x = x.clone() + self.mlp.forward(self.norm2.forward(x));
        (x, attn.weights)
    }
}
