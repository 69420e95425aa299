//! Figures the papers show of a ViT, on the loaded model: how alike the
//! patches' position embeddings are (the ViT paper's Figure 7, centre),
//! its patch embedding's principal components (Figure 7, left), and, for
//! one image, how long each token is after each block with the
//! share of the class token's attention the registers take ("Vision
//! Transformers Need Registers", Darcet et al. 2024: the artefact tokens
//! of high norm, and where registers move them).

use burn::tensor::{Device, Tensor, TensorData};

use crate::exec::Executor;
use crate::model::{VisionTransformer, VitConfig};

mod pca;
pub use pca::{FOREGROUND_THRESHOLD, FeaturePca, feature_pca};

/// One image's token figures; matrices row-major.
#[derive(Clone, Debug)]
pub struct TokenFigures {
    /// Each token's length after each block, before the final norm,
    /// [L, T] (the prefix tokens first: class, distillation, registers).
    pub token_norms: Vec<f32>,
    /// The share of the class token's attention each head gives the
    /// registers, [L, H]; empty for a model without registers or without
    /// a class token.
    pub register_share: Vec<f32>,
    /// Cosine similarity of every patch's position embedding with every
    /// other's, [N, N].
    pub position_similarity: Vec<f32>,
}

/// Cosine similarity of the patches' position embeddings, [N·N] (the last
/// N rows: the prefix tokens' come first unless they have none).
pub fn position_similarity(model: &VisionTransformer, c: &VitConfig) -> Tensor<1> {
    let (n, d) = (c.num_patches(), c.embed_dim);
    let rows = c.pos_embed_len();
    let p = model
        .pos_embed
        .val()
        .slice([0..1, rows - n..rows, 0..d])
        .reshape([n, d]);
    let unit = p.clone() / p.powf_scalar(2.0).sum_dim(1).sqrt().clamp_min(1e-12);
    unit.clone().matmul(unit.transpose()).reshape([n * n])
}

/// The token figures of one preprocessed input ([C, H, W]), its blocks
/// run one at a time on the model's executor, read back in one transfer.
///
/// Panics when `input` has the wrong length.
pub async fn token_figures(
    model: &VisionTransformer,
    executor: &Executor,
    c: &VitConfig,
    device: &Device,
    input: &[f32],
) -> TokenFigures {
    let [h, w] = c.img_size;
    assert_eq!(input.len(), c.in_chans * h * w, "input length");
    let x = Tensor::<4>::from_data(
        TensorData::new(input.to_vec(), [1, c.in_chans, h, w]),
        device,
    );
    let t = c.num_tokens();
    // The registers follow the class and distillation tokens.
    let regs = c.reg_tokens;
    let first = c.num_prefix_tokens() - regs;
    let shared = regs > 0 && c.class_token;
    let mut norms = Vec::with_capacity(c.depth);
    let mut shares = Vec::with_capacity(c.depth);
    let mut tokens = model.embed(x);
    for layer in 0..c.depth {
        let mut share = |_: usize, a: &Tensor<4>| {
            if shared {
                let [_, heads, _, _] = a.dims();
                shares.push(
                    a.clone()
                        .slice([0..1, 0..heads, 0..1, first..first + regs])
                        .sum_dim(3)
                        .reshape([heads]),
                );
            }
        };
        tokens = executor.encode_blocks(model, tokens, layer..layer + 1, Some(&mut share));
        norms.push(
            tokens
                .clone()
                .powf_scalar(2.0)
                .sum_dim(2)
                .sqrt()
                .reshape([t]),
        );
    }
    let l_norms = norms.len() * t;
    let l_shares: usize = shares.iter().map(|s| s.dims()[0]).sum();
    let mut parts = norms;
    parts.extend(shares);
    parts.push(position_similarity(model, c));
    let mut flat = Tensor::cat(parts, 0)
        .into_data_async()
        .await
        .expect("read-back of the token figures")
        .try_into_vec::<f32>()
        .expect("f32 values");
    let position_similarity = flat.split_off(l_norms + l_shares);
    let register_share = flat.split_off(l_norms);
    TokenFigures {
        token_norms: flat,
        register_share,
        position_similarity,
    }
}

/// A preprocessed input's ([C, H, W]) patch features, [N, D]: the patch
/// tokens after the last block and the final norm (DINOv2's
/// `x_norm_patchtokens`; the last block's output where the model pools
/// before its norm).
///
/// Panics when `input` has the wrong length.
pub fn patch_features(
    model: &VisionTransformer,
    executor: &Executor,
    c: &VitConfig,
    device: &Device,
    input: &[f32],
) -> Tensor<2> {
    let [h, w] = c.img_size;
    assert_eq!(input.len(), c.in_chans * h * w, "input length");
    let x = Tensor::<4>::from_data(
        TensorData::new(input.to_vec(), [1, c.in_chans, h, w]),
        device,
    );
    let mut tokens = executor.encode_blocks(model, model.embed(x), 0..c.depth, None);
    if let Some(norm) = &model.norm {
        tokens = norm.forward(tokens);
    }
    let (t, d, prefix) = (c.num_tokens(), c.embed_dim, c.num_prefix_tokens());
    tokens
        .slice([0..1, prefix..t, 0..d])
        .reshape([t - prefix, d])
}

/// The patch embedding's principal components (the ViT paper's Figure 7,
/// left): its D filters (one per embedding dimension, P·P·C values laid out
/// as [`crate::model::patch_embed::patchify`] lays out a patch), centred,
/// and the leading eigenvectors of their covariance.
#[derive(Clone, Debug)]
pub struct FilterComponents {
    /// [k, P·P·C], each of unit length, the largest variance first.
    pub components: Vec<f32>,
    /// The share of the filters' variance each explains, [k].
    pub variance: Vec<f32>,
}

/// The first `k` principal components of the patch embedding's filters
/// (fewer where a patch has fewer values). The covariance is formed with
/// the device's matrix product; its leading eigenvectors come from
/// subspace iteration with a Rayleigh–Ritz step (`k` and some more
/// vectors, the products on the device, the rest on the host in f64).
pub async fn filter_components(model: &VisionTransformer, k: usize) -> FilterComponents {
    let w = model
        .patch_embed
        .proj
        .weight
        .val()
        .cast(burn::tensor::DType::F32); // [L, D]
    let len = w.dims()[0];
    // The D filters are the samples.
    let (covariance, total) = pca::covariance(w.transpose()).await;
    let leading = pca::leading(&covariance, k.min(len)).await;
    let components = leading
        .vectors
        .iter()
        .flatten()
        .map(|&x| x as f32)
        .collect();
    let variance = leading.shares(total);
    FilterComponents {
        components,
        variance,
    }
}
