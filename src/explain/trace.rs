//! The attention maps gathered on the device as the encoder runs: each
//! layer's class-token row, the full matrix of one layer when asked, and
//! attention rollout (Abnar & Zuidema 2020, the paper's Figure 6), so only
//! these small tensors are read back.

use burn::tensor::{Tensor, TensorData};

/// Collects what the page and the CLI show from each block's attention
/// weights ([B, heads, T, T]); see [`AttentionTrace::record`].
pub struct AttentionTrace {
    keep_layer: Option<usize>,
    cls_rows: Vec<Tensor<4>>,
    head_means: Vec<Tensor<3>>,
    kept: Option<Tensor<4>>,
}

/// The gathered maps.
pub struct TracedMaps {
    /// Attention of the class token to each patch, [B, L, heads, N].
    pub cls_attention: Tensor<4>,
    /// Rollout of the class token to each patch, [B, N].
    pub rollout: Tensor<2>,
    /// The full attention of the kept layer, [B, heads, T, T].
    pub layer_attention: Option<Tensor<4>>,
}

impl AttentionTrace {
    /// A trace that also keeps the full matrix of `keep_layer`.
    pub fn new(keep_layer: Option<usize>) -> Self {
        Self {
            keep_layer,
            cls_rows: Vec::new(),
            head_means: Vec::new(),
            kept: None,
        }
    }

    /// Layer `layer`'s attention weights [B, heads, T, T] (token 0 is the class token).
    pub fn record(&mut self, layer: usize, weights: &Tensor<4>) {
        let [b, h, t, _] = weights.dims();
        self.cls_rows
            .push(
                weights
                    .clone()
                    .slice([0..b, 0..h, 0..1, 1..t])
                    .reshape([b, 1, h, t - 1]),
            );
        self.head_means
            .push(weights.clone().mean_dim(1).reshape([b, t, t]));
        if self.keep_layer == Some(layer) {
            self.kept = Some(weights.clone());
        }
    }

    /// The maps of every recorded layer (at least one).
    pub fn finish(self) -> TracedMaps {
        TracedMaps {
            cls_attention: Tensor::cat(self.cls_rows, 1),
            rollout: rollout(self.head_means),
            layer_attention: self.kept,
        }
    }
}

/// Rollout: the class token's row of Â_L ⋯ Â_1 with Â = (mean over heads +
/// I) / 2, over the patches: per-layer head means [B, T, T] → [B, N]. Rows
/// of Â already sum to 1, so vit-explain's renormalisation changes nothing.
/// Carrying only that row, r ← (r·A + r) / 2, from the last layer down.
pub fn rollout(head_means: Vec<Tensor<3>>) -> Tensor<2> {
    let [b, t, _] = head_means[0].dims();
    let device = head_means[0].device();
    let one_hot: Vec<f32> = (0..b * t)
        .map(|i| if i % t == 0 { 1.0 } else { 0.0 })
        .collect();
    let mut r = Tensor::<3>::from_data(TensorData::new(one_hot, [b, 1, t]), &device); // [B, 1, T]
    for a in head_means.into_iter().rev() {
        r = (crate::ops::matmul(r.clone(), a) + r).mul_scalar(0.5);
    }
    r.slice([0..b, 0..1, 1..t]).reshape([b, t - 1])
}
