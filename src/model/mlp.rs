//! The block's MLP (paper eq. 3): Linear → GELU → Linear (timm `Mlp`).

use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

/// Two-layer perceptron with an exact (erf) GELU, as timm's `nn.GELU` and
/// HF's `"gelu"`, or OpenAI CLIP's QuickGELU.
#[derive(Module, Debug)]
pub struct Mlp {
    /// D → hidden (timm: `mlp.fc1`).
    pub fc1: Linear,
    /// hidden → D (timm: `mlp.fc2`).
    pub fc2: Linear,
    /// x·σ(1.702x) instead of GELU.
    pub quick_gelu: bool,
}

impl Mlp {
    /// Random initialisation (timm: truncated normal, std 0.02).
    pub fn init(embed_dim: usize, hidden: usize, quick_gelu: bool, device: &Device) -> Self {
        let init = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        Self {
            fc1: LinearConfig::new(embed_dim, hidden)
                .with_initializer(init.clone())
                .init(device),
            fc2: LinearConfig::new(hidden, embed_dim)
                .with_initializer(init)
                .init(device),
            quick_gelu,
        }
    }

    /// [B, T, D] → [B, T, D].
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.forward_hidden(x).0
    }

    /// [`Mlp::forward`], and the first layer's output before the activation
    /// [B, T, hidden] (what the activation's slope needs).
    pub fn forward_hidden(&self, x: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        use crate::ops::linear;
        let h = linear(&self.fc1, x);
        let a = if self.quick_gelu {
            // timm's QuickGELU: x · sigmoid(1.702 x).
            h.clone() * burn::tensor::activation::sigmoid(h.clone().mul_scalar(1.702))
        } else {
            crate::ops::gelu(h.clone())
        };
        (linear(&self.fc2, a), h)
    }
}
