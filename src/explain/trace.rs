//! The attention maps gathered on the device as the encoder runs: each
//! layer's map over the patches, the full matrix of one layer when asked,
//! and attention rollout (Abnar & Zuidema 2020, the paper's Figure 6), so
//! only these small tensors are read back.
//!
//! The maps follow the token the head reads. With a class token, they are
//! its row over the patches (DINO's figures; registers and the distillation
//! token are left out of the image, as in Darcet et al. 2024's). A model
//! without one pools every patch equally, so its map is the attention each
//! patch receives, averaged over all the patches asking.

use burn::tensor::{Tensor, TensorData};

use crate::model::VisionTransformer;

/// Which queries a map averages: the class token's row, or every patch's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapQueries {
    /// Tokens before the patches (class, distillation, registers).
    pub prefix: usize,
    /// Whether token 0 is a class token (else the patches' mean row).
    pub class_token: bool,
}

impl MapQueries {
    pub fn of(model: &VisionTransformer) -> Self {
        Self {
            prefix: model.num_prefix_tokens(),
            class_token: model.cls_token.is_some(),
        }
    }

    /// The map rows of attention weights [B, heads, T, T]: [B, heads, 1, N].
    pub fn rows(self, weights: Tensor<4>) -> Tensor<4> {
        let [b, h, t, _] = weights.dims();
        let p = self.prefix;
        if self.class_token {
            weights.slice([0..b, 0..h, 0..1, p..t])
        } else {
            weights.slice([0..b, 0..h, p..t, p..t]).mean_dim(2)
        }
    }
}

/// Collects what the page and the CLI show from each block's attention
/// weights ([B, heads, T, T]); see [`AttentionTrace::record`].
pub struct AttentionTrace {
    keep_layer: Option<usize>,
    queries: MapQueries,
    cls_rows: Vec<Tensor<4>>,
    head_means: Vec<Tensor<3>>,
    kept: Option<Tensor<4>>,
}

/// The gathered maps.
pub struct TracedMaps {
    /// Attention to each patch, [B, L, heads, N] (see the module's note).
    pub cls_attention: Tensor<4>,
    /// Rollout to each patch, [B, N].
    pub rollout: Tensor<2>,
    /// The full attention of the kept layer, [B, heads, T, T].
    pub layer_attention: Option<Tensor<4>>,
}

impl AttentionTrace {
    /// A trace whose maps read `queries`, that also keeps the full matrix of `keep_layer`.
    pub fn new(queries: MapQueries, keep_layer: Option<usize>) -> Self {
        Self {
            keep_layer,
            queries,
            cls_rows: Vec::new(),
            head_means: Vec::new(),
            kept: None,
        }
    }

    /// Layer `layer`'s attention weights [B, heads, T, T].
    pub fn record(&mut self, layer: usize, weights: &Tensor<4>) {
        let [b, h, t, _] = weights.dims();
        let n = t - self.queries.prefix;
        self.cls_rows
            .push(self.queries.rows(weights.clone()).reshape([b, 1, h, n]));
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
            rollout: rollout(self.head_means, self.queries),
            layer_attention: self.kept,
        }
    }
}

/// Rollout: the map row (the class token's, or the patches' mean) of
/// Â_L ⋯ Â_1 with Â = (mean over heads + I) / 2, over the patches:
/// per-layer head means [B, T, T] → [B, N]. Rows of Â already sum to 1, so
/// vit-explain's renormalisation changes nothing. Carrying only that row,
/// r ← (r·A + r) / 2, from the last layer down.
pub fn rollout(head_means: Vec<Tensor<3>>, queries: MapQueries) -> Tensor<2> {
    let [b, t, _] = head_means[0].dims();
    let device = head_means[0].device();
    let p = queries.prefix;
    let start: Vec<f32> = (0..b * t)
        .map(|i| match (queries.class_token, i % t) {
            (true, 0) => 1.0,
            (false, j) if j >= p => 1.0 / (t - p) as f32,
            _ => 0.0,
        })
        .collect();
    let mut r = Tensor::<3>::from_data(TensorData::new(start, [b, 1, t]), &device); // [B, 1, T]
    for a in head_means.into_iter().rev() {
        r = (crate::ops::matmul(r.clone(), a) + r).mul_scalar(0.5);
    }
    r.slice([0..b, 0..1, p..t]).reshape([b, t - p])
}
