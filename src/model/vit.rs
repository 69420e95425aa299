//! The Vision Transformer (Dosovitskiy et al. 2021, §3.1; timm `VisionTransformer`):
//! patch embedding, class token, position embedding, L pre-norm blocks, final
//! norm, and a linear head on the class token.

use std::ops::Range;

use burn::module::{Module, Param};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use super::block::{Block, BlockSteps};
use super::config::{Pool, VitConfig};
use super::patch_embed::{PatchEmbed, patchify};

/// A ViT with timm's field names, so checkpoints map onto it one to one.
#[derive(Module, Debug)]
pub struct VisionTransformer {
    pub patch_embed: PatchEmbed,
    /// Learned class token, [1, 1, D] (from BERT's `[CLS]`); `None` for a
    /// model that pools the patches instead.
    pub cls_token: Option<Param<Tensor<3>>>,
    /// DeiT's distillation token, [1, 1, D], after the class token.
    pub dist_token: Option<Param<Tensor<3>>>,
    /// Register tokens, [1, R, D], after the class token.
    pub reg_token: Option<Param<Tensor<3>>>,
    /// Learned position embeddings, [1, T, D] over every token ([1, N, D],
    /// the patches' only, with `no_embed_class`).
    pub pos_embed: Param<Tensor<3>>,
    /// A LayerNorm before the blocks (timm `pre_norm`; CLIP).
    pub norm_pre: Option<LayerNorm>,
    pub blocks: Vec<Block>,
    /// Final LayerNorm, applied to every token before pooling; `None` when
    /// `fc_norm` normalises the pooled features instead.
    pub norm: Option<LayerNorm>,
    /// A LayerNorm after pooling (timm `fc_norm`).
    pub fc_norm: Option<LayerNorm>,
    /// Pooled features → classes; `None` for a backbone.
    pub head: Option<Linear>,
    /// Distilled DeiT's second head, on the distillation token.
    pub head_dist: Option<Linear>,
    /// What the head sees of the final tokens.
    #[module(skip)]
    pub global_pool: Pool,
    /// The LayerNorms' epsilon (every norm of the model has the same).
    #[module(skip)]
    pub norm_eps: f64,
    /// Patch grid rows.
    pub grid_rows: usize,
    /// Patch grid columns.
    pub grid_cols: usize,
}

impl VitConfig {
    /// A randomly initialised model (timm's scheme: normal weights, std 0.02).
    pub fn init(&self, device: &Device) -> VisionTransformer {
        let d = self.embed_dim;
        let [grid_rows, grid_cols] = self.grid();
        let normal = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        let small = Initializer::Normal {
            mean: 0.0,
            std: 1e-6,
        };
        let norm = || {
            LayerNormConfig::new(d)
                .with_epsilon(self.norm_eps)
                .init(device)
        };
        let head = |inputs| {
            LinearConfig::new(inputs, self.num_classes)
                .with_initializer(normal.clone())
                .init(device)
        };
        let blocks = (0..self.depth).map(|_| Block::init(self, device)).collect();
        VisionTransformer {
            patch_embed: PatchEmbed::init(
                self.patch_size,
                self.patch_len(),
                d,
                !self.pre_norm,
                device,
            ),
            cls_token: self.class_token.then(|| small.init([1, 1, d], device)),
            dist_token: self.distilled.then(|| normal.init([1, 1, d], device)),
            reg_token: (self.reg_tokens > 0).then(|| small.init([1, self.reg_tokens, d], device)),
            pos_embed: normal.init([1, self.pos_embed_len(), d], device),
            norm_pre: self.pre_norm.then(norm),
            blocks,
            norm: (!self.fc_norm).then(norm),
            fc_norm: self.fc_norm.then(norm),
            head: self.has_head().then(|| head(self.pooled_dim())),
            head_dist: (self.has_head() && self.global_pool == Pool::TokenAndDistillation)
                .then(|| head(d)),
            global_pool: self.global_pool,
            norm_eps: self.norm_eps,
            grid_rows,
            grid_cols,
        }
    }
}

impl VisionTransformer {
    /// Patch embedding, prefix tokens and position embedding:
    /// [B, C, H, W] → tokens [B, T, D].
    pub fn embed(&self, images: Tensor<4>) -> Tensor<3> {
        let patches = patchify(images, self.patch_embed.patch_size); // [B, N, P·P·C]
        self.add_class_and_position(self.patch_embed.forward(patches))
    }

    /// The prefix tokens (class, distillation, registers: those the model
    /// has) prepended to the embedded patches [B, N, D], and the position
    /// embeddings added: [B, T, D].
    pub fn add_class_and_position(&self, patches: Tensor<3>) -> Tensor<3> {
        let [b, n, d] = patches.dims();
        let mut tokens: Vec<Tensor<3>> = [&self.cls_token, &self.dist_token, &self.reg_token]
            .into_iter()
            .flatten()
            .map(|t| {
                let k = t.dims()[1];
                t.val().expand([b, k, d])
            })
            .collect();
        let pos = self.pos_embed.val();
        let tokens = if pos.dims()[1] == n {
            // no_embed_class: positions for the patches, then the prefix tokens.
            tokens.push(patches + pos);
            Tensor::cat(tokens, 1)
        } else {
            tokens.push(patches);
            Tensor::cat(tokens, 1) + pos
        };
        match &self.norm_pre {
            Some(norm) => norm.forward(tokens),
            None => tokens,
        }
    }

    /// The L blocks and the final norm: tokens [B, T, D] → [B, T, D].
    /// `look(i, steps)` sees block i's values as it passes (the attention
    /// maps and the walk-through read them there); it may keep clones.
    pub fn encode(&self, tokens: Tensor<3>, look: impl FnMut(usize, &BlockSteps)) -> Tensor<3> {
        self.encode_probed(tokens, |_| None, look)
    }

    /// [`VisionTransformer::encode`] with `probe(i)` added to block i's
    /// attention weights (see [`super::attention::Attention::forward_probed`]).
    pub fn encode_probed(
        &self,
        tokens: Tensor<3>,
        mut probe: impl FnMut(usize) -> Option<Tensor<4>>,
        mut look: impl FnMut(usize, &BlockSteps),
    ) -> Tensor<3> {
        let mut x = tokens;
        for (i, block) in self.blocks.iter().enumerate() {
            let steps = block.forward_probed(x, probe(i));
            look(i, &steps);
            x = steps.output;
        }
        self.final_norm(x)
    }

    /// Blocks `range` alone, without the final norm: tokens [B, T, D] →
    /// [B, T, D], `look(i, steps)` seeing block i's values.
    pub fn encode_blocks(
        &self,
        tokens: Tensor<3>,
        range: Range<usize>,
        mut look: impl FnMut(usize, &BlockSteps),
    ) -> Tensor<3> {
        range.fold(tokens, |x, i| {
            let steps = self.blocks[i].forward(x);
            look(i, &steps);
            steps.output
        })
    }

    /// The LayerNorm after the last block (none in some backbones).
    pub fn final_norm(&self, x: Tensor<3>) -> Tensor<3> {
        match &self.norm {
            Some(norm) => norm.forward(x),
            None => x,
        }
    }

    /// What the head sees of the final tokens [B, T, D] (timm `pool` and
    /// `fc_norm`): [B, D], or [B, 2·D] for [`Pool::TokenAndAvg`]. For
    /// distilled DeiT, the mean of the class and distillation tokens.
    pub fn pool(&self, tokens: Tensor<3>) -> Tensor<2> {
        let pooled = self.pool_unnormed(tokens);
        match &self.fc_norm {
            Some(norm) => norm.forward(pooled),
            None => pooled,
        }
    }

    /// [`VisionTransformer::pool`] before `fc_norm`.
    pub fn pool_unnormed(&self, tokens: Tensor<3>) -> Tensor<2> {
        let [b, t, d] = tokens.dims();
        let p = t - self.num_patches();
        let token = |i: usize| tokens.clone().slice([0..b, i..i + 1, 0..d]).reshape([b, d]);
        let patches = || tokens.clone().slice([0..b, p..t, 0..d]);
        let mean = || patches().mean_dim(1).reshape([b, d]);
        let max = || patches().max_dim(1).reshape([b, d]);
        match self.global_pool {
            Pool::Token => token(0),
            Pool::Avg => mean(),
            Pool::Max => max(),
            Pool::AvgMax => (mean() + max()).mul_scalar(0.5),
            Pool::TokenAndAvg => Tensor::cat(vec![token(0), mean()], 1),
            Pool::TokenAndDistillation => (token(0) + token(1)).mul_scalar(0.5),
        }
    }

    /// The head on the pooled tokens: tokens [B, T, D] → logits [B,
    /// classes]; a backbone gives the pooled features themselves.
    pub fn forward_head(&self, tokens: Tensor<3>) -> Tensor<2> {
        if let (Some(head), Some(dist)) = (&self.head, &self.head_dist) {
            // timm's distilled DeiT at inference: the two heads' mean.
            let [b, _, d] = tokens.dims();
            let token = |i: usize| tokens.clone().slice([0..b, i..i + 1, 0..d]).reshape([b, d]);
            let logits = crate::ops::linear(head, token(0)) + crate::ops::linear(dist, token(1));
            return logits.mul_scalar(0.5);
        }
        let pooled = self.pool(tokens);
        match &self.head {
            Some(head) => crate::ops::linear(head, pooled),
            None => pooled,
        }
    }

    /// Logits, [B, C, H, W] → [B, classes].
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_head(self.encode(self.embed(images), |_, _| {}))
    }

    /// Number of patches N.
    pub fn num_patches(&self) -> usize {
        self.grid_rows * self.grid_cols
    }

    /// Tokens before the patches (class, distillation, registers).
    pub fn num_prefix_tokens(&self) -> usize {
        [&self.cls_token, &self.dist_token, &self.reg_token]
            .into_iter()
            .flatten()
            .map(|t| t.dims()[1])
            .sum()
    }

    /// The bytes its weights take where they live: four a weight, two for
    /// a matrix kept in f16 ([`crate::F16Matrices::Keep`]).
    pub fn weight_bytes(&self) -> u64 {
        struct Bytes(u64);
        impl burn::module::ModuleVisitor for Bytes {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let t = param.val();
                self.0 += (t.shape().num_elements() * t.dtype().size()) as u64;
            }
        }
        let mut bytes = Bytes(0);
        self.visit(&mut bytes);
        bytes.0
    }

    /// Number of encoder blocks L.
    pub fn depth(&self) -> usize {
        self.blocks.len()
    }

    /// Heads per block.
    pub fn num_heads(&self) -> usize {
        self.blocks.first().map_or(0, |b| b.attn.num_heads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn forward_shapes() {
        let device = Device::flex();
        let cfg = VitConfig::new([32, 48], 8, 48, 2, 3, 96).with_num_classes(5);
        let model = cfg.init(&device);
        let img = Tensor::<4>::random([2, 3, 32, 48], Distribution::Default, &device);
        assert_eq!(model.embed(img.clone()).dims(), [2, 25, 48]);
        let mut seen = Vec::new();
        let tokens = model.encode(model.embed(img.clone()), |i, s| {
            seen.push((i, s.attention.weights.dims()))
        });
        assert_eq!(seen, [(0, [2, 3, 25, 25]), (1, [2, 3, 25, 25])]);
        let logits = model.forward_head(tokens);
        assert_eq!(logits.dims(), [2, 5]);
        // `forward` takes the fused blocks natively: the same logits within
        // float32 rounding.
        let plain: Vec<f32> = model.forward(img.clone()).into_data().try_to_vec().unwrap();
        let with: Vec<f32> = logits.into_data().try_to_vec().unwrap();
        let largest = with.iter().fold(1f32, |m, v| m.max(v.abs()));
        assert!(
            plain
                .iter()
                .zip(&with)
                .all(|(a, b)| (a - b).abs() <= 1e-5 * largest)
        );
        // A backbone gives the class token's features instead.
        let backbone = cfg.with_num_classes(0).init(&device);
        assert!(backbone.head.is_none());
        assert_eq!(backbone.forward(img).dims(), [2, 48]);
    }
}
