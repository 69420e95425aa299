//! The Vision Transformer (Dosovitskiy et al. 2021, §3.1; timm `VisionTransformer`):
//! patch embedding, class token, position embedding, L pre-norm blocks, final
//! norm, and a linear head on the class token.

use burn::module::{Module, Param};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use super::block::{Block, BlockSteps};
use super::config::VitConfig;
use super::patch_embed::{PatchEmbed, patchify};

/// A ViT with timm's field names, so checkpoints map onto it one to one.
#[derive(Module, Debug)]
pub struct VisionTransformer {
    pub patch_embed: PatchEmbed,
    /// Learned class token, [1, 1, D] (from BERT's `[CLS]`).
    pub cls_token: Param<Tensor<3>>,
    /// Learned position embeddings, [1, N+1, D]; row 0 belongs to the class
    /// token ([1, N, D], the patches' only, with `no_embed_class`).
    pub pos_embed: Param<Tensor<3>>,
    /// A LayerNorm before the blocks (timm `pre_norm`; CLIP).
    pub norm_pre: Option<LayerNorm>,
    pub blocks: Vec<Block>,
    /// Final LayerNorm, applied to every token before the head.
    pub norm: LayerNorm,
    /// D → classes, applied to the class token; `None` for a backbone.
    pub head: Option<Linear>,
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
        let blocks = (0..self.depth).map(|_| Block::init(self, device)).collect();
        VisionTransformer {
            patch_embed: PatchEmbed::init(
                self.patch_size,
                self.patch_len(),
                d,
                !self.pre_norm,
                device,
            ),
            cls_token: Initializer::Normal {
                mean: 0.0,
                std: 1e-6,
            }
            .init([1, 1, d], device),
            pos_embed: normal.init([1, self.pos_embed_len(), d], device),
            norm_pre: self.pre_norm.then(|| {
                LayerNormConfig::new(d)
                    .with_epsilon(self.norm_eps)
                    .init(device)
            }),
            blocks,
            norm: LayerNormConfig::new(d)
                .with_epsilon(self.norm_eps)
                .init(device),
            head: self.has_head().then(|| {
                LinearConfig::new(d, self.num_classes)
                    .with_initializer(normal)
                    .init(device)
            }),
            grid_rows,
            grid_cols,
        }
    }
}

impl VisionTransformer {
    /// Patch embedding, class token and position embedding:
    /// [B, C, H, W] → tokens [B, N+1, D].
    pub fn embed(&self, images: Tensor<4>) -> Tensor<3> {
        let patches = patchify(images, self.patch_embed.patch_size); // [B, N, P·P·C]
        self.add_class_and_position(self.patch_embed.forward(patches))
    }

    /// The class token prepended to the embedded patches [B, N, D], and the
    /// position embeddings added: [B, N+1, D].
    pub fn add_class_and_position(&self, patches: Tensor<3>) -> Tensor<3> {
        let [b, n, d] = patches.dims();
        let cls = self.cls_token.val().expand([b, 1, d]); // [B, 1, D]
        let pos = self.pos_embed.val();
        let tokens = if pos.dims()[1] == n {
            // no_embed_class: positions for the patches, then the class token.
            Tensor::cat(vec![cls, patches + pos], 1)
        } else {
            Tensor::cat(vec![cls, patches], 1) + pos
        };
        match &self.norm_pre {
            Some(norm) => norm.forward(tokens),
            None => tokens,
        }
    }

    /// The L blocks and the final norm: tokens [B, N+1, D] → [B, N+1, D].
    /// `look(i, steps)` sees block i's values as it passes (the attention
    /// maps and the walk-through read them there); it may keep clones.
    pub fn encode(&self, tokens: Tensor<3>, mut look: impl FnMut(usize, &BlockSteps)) -> Tensor<3> {
        let mut x = tokens;
        for (i, block) in self.blocks.iter().enumerate() {
            let steps = block.forward(x);
            look(i, &steps);
            x = steps.output;
        }
        self.norm.forward(x)
    }

    /// The head on the class token: tokens [B, N+1, D] → logits [B, classes];
    /// a backbone gives the class token itself, [B, D].
    pub fn forward_head(&self, tokens: Tensor<3>) -> Tensor<2> {
        let [b, _, d] = tokens.dims();
        let cls = tokens.slice([0..b, 0..1, 0..d]).reshape([b, d]);
        match &self.head {
            Some(head) => crate::ops::linear(head, cls),
            None => cls,
        }
    }

    /// Logits, [B, C, H, W] → [B, classes].
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_head(self.encode(self.embed(images), |_, _| {}))
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
        let plain: Vec<f32> = model.forward(img.clone()).into_data().try_to_vec().unwrap();
        let with: Vec<f32> = logits.into_data().try_to_vec().unwrap();
        assert_eq!(plain, with);
        // A backbone gives the class token's features instead.
        let backbone = cfg.with_num_classes(0).init(&device);
        assert!(backbone.head.is_none());
        assert_eq!(backbone.forward(img).dims(), [2, 48]);
    }
}
