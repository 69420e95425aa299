//! The Vision Transformer (Dosovitskiy et al. 2021, §3.1; timm `VisionTransformer`):
//! patch embedding, class token, position embedding, L pre-norm blocks, final
//! norm, and a linear head on the class token.

use burn::module::{Module, Param};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};

use super::block::Block;
use super::config::VitConfig;
use super::patch_embed::{PatchEmbed, patchify};

/// A ViT with timm's field names, so checkpoints map onto it one to one.
#[derive(Module, Debug)]
pub struct VisionTransformer {
    pub patch_embed: PatchEmbed,
    /// Learned class token, [1, 1, D] (from BERT's `[CLS]`).
    pub cls_token: Param<Tensor<3>>,
    /// Learned position embeddings, [1, N+1, D]; row 0 belongs to the class token.
    pub pos_embed: Param<Tensor<3>>,
    pub blocks: Vec<Block>,
    /// Final LayerNorm, applied to every token before the head.
    pub norm: LayerNorm,
    /// D → classes, applied to the class token.
    pub head: Linear,
    /// Patch grid rows.
    pub grid_rows: usize,
    /// Patch grid columns.
    pub grid_cols: usize,
}

/// Everything one forward pass gives back. Only these small tensors are
/// meant to be read from the device.
pub struct VitOutput {
    /// Class scores before softmax, [B, classes].
    pub logits: Tensor<2>,
    /// Attention of the class token to each patch, [B, L, heads, N].
    pub cls_attention: Tensor<4>,
    /// The full attention of one requested layer, [B, heads, N+1, N+1].
    pub layer_attention: Option<Tensor<4>>,
    /// Attention rollout (Abnar & Zuidema 2020) of the class token to each patch, [B, N].
    pub rollout: Tensor<2>,
}

/// What the encoder gives besides the tokens: the maps the page shows.
pub struct Features {
    /// After the final norm, [B, N+1, D].
    pub tokens: Tensor<3>,
    /// [B, L, heads, N]
    pub cls_attention: Tensor<4>,
    /// [B, heads, N+1, N+1] of the kept layer.
    pub layer_attention: Option<Tensor<4>>,
    /// [B, N]
    pub rollout: Tensor<2>,
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
        let blocks = (0..self.depth)
            .map(|_| {
                Block::init(
                    d,
                    self.num_heads,
                    self.mlp_hidden,
                    self.qkv_bias,
                    self.norm_eps,
                    device,
                )
            })
            .collect();
        VisionTransformer {
            patch_embed: PatchEmbed::init(self.patch_size, self.patch_len(), d, device),
            cls_token: Initializer::Normal {
                mean: 0.0,
                std: 1e-6,
            }
            .init([1, 1, d], device),
            pos_embed: normal.init([1, self.num_patches() + 1, d], device),
            blocks,
            norm: LayerNormConfig::new(d)
                .with_epsilon(self.norm_eps)
                .init(device),
            head: LinearConfig::new(d, self.num_classes)
                .with_initializer(normal)
                .init(device),
            grid_rows,
            grid_cols,
        }
    }
}

impl VisionTransformer {
    /// Patch embedding, class token and position embedding:
    /// [B, C, H, W] → tokens [B, N+1, D].
    pub fn embed(&self, images: Tensor<4>) -> Tensor<3> {
        let [b, ..] = images.dims();
        let x = self
            .patch_embed
            .forward(patchify(images, self.patch_embed.patch_size)); // [B, N, D]
        let [_, _, d] = x.dims();
        let cls = self.cls_token.val().expand([b, 1, d]); // [B, 1, D]
        Tensor::cat(vec![cls, x], 1) + self.pos_embed.val() // [B, N+1, D]
    }

    /// The encoder and final norm, keeping attention: [B, C, H, W] → tokens,
    /// CLS attention, the full attention of `keep_layer` if given, and rollout.
    pub fn forward_features(&self, images: Tensor<4>, keep_layer: Option<usize>) -> Features {
        let mut x = self.embed(images);
        let device = x.device();
        let mut cls_rows = Vec::with_capacity(self.blocks.len());
        let mut head_means = Vec::with_capacity(self.blocks.len());
        let mut kept = None;
        for (i, block) in self.blocks.iter().enumerate() {
            let (y, weights) = block.forward(x);
            x = y;
            let [b, h, t, _] = weights.dims();
            cls_rows.push(weights.clone().slice([0..b, 0..h, 0..1, 1..t]).reshape([
                b,
                1,
                h,
                t - 1,
            ]));
            head_means.push(weights.clone().mean_dim(1).reshape([b, t, t])); // [B, T, T]
            if keep_layer == Some(i) {
                kept = Some(weights);
            }
        }
        // Rollout: the class token's row of Â_L ⋯ Â_1 with Â = (mean over heads + I) / 2.
        // Rows of Â already sum to 1, so vit-explain's renormalisation changes nothing.
        // Carrying only that row, r ← (r·A + r) / 2, from the last layer down.
        let [b, t, _] = head_means[0].dims();
        let one_hot: Vec<f32> = (0..b * t)
            .map(|i| if i % t == 0 { 1.0 } else { 0.0 })
            .collect();
        let mut r = Tensor::<3>::from_data(TensorData::new(one_hot, [b, 1, t]), &device); // [B, 1, T]
        for a in head_means.into_iter().rev() {
            r = (super::matmul::matmul(r.clone(), a) + r).mul_scalar(0.5);
        }
        Features {
            tokens: self.norm.forward(x),
            cls_attention: Tensor::cat(cls_rows, 1),
            layer_attention: kept,
            rollout: r.slice([0..b, 0..1, 1..t]).reshape([b, t - 1]),
        }
    }

    /// The head on the class token: tokens [B, N+1, D] → logits [B, classes].
    pub fn forward_head(&self, tokens: Tensor<3>) -> Tensor<2> {
        let [b, _, d] = tokens.dims();
        let cls = tokens.slice([0..b, 0..1, 0..d]).reshape([b, d]);
        super::matmul::linear(&self.head, cls)
    }

    /// Logits and attention maps; `keep_layer` also returns that layer's full matrix.
    pub fn forward_with_attention(
        &self,
        images: Tensor<4>,
        keep_layer: Option<usize>,
    ) -> VitOutput {
        let f = self.forward_features(images, keep_layer);
        VitOutput {
            logits: self.forward_head(f.tokens),
            cls_attention: f.cls_attention,
            layer_attention: f.layer_attention,
            rollout: f.rollout,
        }
    }

    /// Logits only, [B, C, H, W] → [B, classes] (training and evaluation).
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = self.embed(images);
        for block in &self.blocks {
            x = block.forward(x).0;
        }
        self.forward_head(self.norm.forward(x))
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
        let out = model.forward_with_attention(img.clone(), Some(1));
        assert_eq!(out.logits.dims(), [2, 5]);
        assert_eq!(out.cls_attention.dims(), [2, 2, 3, 24]);
        assert_eq!(out.layer_attention.unwrap().dims(), [2, 3, 25, 25]);
        assert_eq!(out.rollout.dims(), [2, 24]);
        let plain: Vec<f32> = model.forward(img).into_data().try_to_vec().unwrap();
        let with: Vec<f32> = out.logits.into_data().try_to_vec().unwrap();
        assert_eq!(plain, with);
    }
}
