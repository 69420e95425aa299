//! ∂ logit_k / ∂A for every layer's attention weights A, by hand: the ViT's
//! backward pass written out, from one class's logit down to the first
//! block's attention, on the model's own device and kernels.
//!
//! Only gradients with respect to activations are formed (no weight
//! gradient, no graph), so it costs about one more forward pass; Burn's
//! autodiff gives the same numbers (a unit test holds the two together on
//! every kind of model vitrine runs) at several times the cost on the CPU.
//!
//! The formulas, for a block x → m = x + s₁·proj(attn(LN₁(x))) →
//! y = m + s₂·fc₂(act(fc₁(LN₂(m)))), with g the gradient reaching y:
//! - MLP: g_m = g + LN₂ᵀ(fc₁ᵀ(act′(h) ⊙ fc₂ᵀ(s₂ ⊙ g))), h = fc₁(LN₂(m));
//! - attention, per head: with c the gradient reaching A·V,
//!   ∇A = c·Vᵀ (recorded), ∇V = Aᵀ·c, the softmax's
//!   ∇S = A ⊙ (∇A − rowsum(∇A ⊙ A)), ∇Q = ∇S·K/√d, ∇K = ∇Sᵀ·Q/√d;
//! - LayerNorm: with x̂ the normalised input and γ its weight,
//!   ∇x = (ĝ − mean(ĝ) − x̂·mean(ĝ ⊙ x̂)) / σ, ĝ = γ ⊙ g.

use burn::nn::{LayerNorm, Linear};
use burn::tensor::{DType, Tensor};

use crate::model::{BlockSteps, Pool, VisionTransformer};
use crate::ops::{gelu_slope, matmul};

/// What the backward pass needs of one block's forward pass (batch 1).
struct Saved {
    /// The block's input x, [T, D].
    input: Tensor<2>,
    /// x + attention, [T, D].
    mid: Tensor<2>,
    /// fc₁'s output before the activation, [T, hidden].
    hidden: Tensor<2>,
    /// [H, T, T]
    weights: Tensor<3>,
    /// [H, T, head width] each: Q and K as the scores used them, and V.
    queries: Tensor<3>,
    keys: Tensor<3>,
    values: Tensor<3>,
    /// With `qk_norm`: Q and K before their LayerNorms.
    raw: Option<(Tensor<3>, Tensor<3>)>,
}

impl Saved {
    fn of(input: Tensor<3>, steps: &BlockSteps) -> Self {
        let heads = |t: &Tensor<4>| t.clone().squeeze_dim::<3>(0);
        let a = &steps.attention;
        Self {
            input: input.squeeze_dim(0),
            mid: steps.after_attention.clone().squeeze_dim(0),
            hidden: steps.hidden.clone().squeeze_dim(0),
            weights: heads(&a.weights),
            queries: heads(&a.queries),
            keys: heads(&a.keys),
            values: heads(&a.values),
            raw: a
                .raw_queries_keys
                .as_ref()
                .map(|(q, k)| (heads(q), heads(k))),
        }
    }
}

/// One image's forward pass, with what its backward pass needs.
pub struct Forward {
    /// [1, classes]
    pub logits: Tensor<2>,
    blocks: Vec<Saved>,
    /// The last block's output, [T, D] (the final norm's input).
    last: Tensor<2>,
    /// What the head reads them from: the final norm's output, [T, D].
    tokens: Tensor<2>,
}

impl Forward {
    /// Each layer's attention weights, [H, T, T], first layer first.
    pub fn weights(&self) -> Vec<Tensor<3>> {
        self.blocks.iter().map(|b| b.weights.clone()).collect()
    }
}

/// The forward pass of `images` ([1, C, H, W]), keeping each block's values.
pub fn forward(model: &VisionTransformer, images: Tensor<4>) -> Forward {
    assert_eq!(images.dims()[0], 1, "one image at a time");
    let tokens = model.embed(images);
    let mut blocks = Vec::with_capacity(model.depth());
    let mut input = tokens.clone();
    let mut last = tokens.clone();
    let encoded = model.encode(tokens, |_, steps| {
        blocks.push(Saved::of(input.clone(), steps));
        input = steps.output.clone();
        last = steps.output.clone();
    });
    Forward {
        tokens: encoded.clone().squeeze_dim(0),
        logits: model.forward_head(encoded),
        blocks,
        last: last.squeeze_dim(0),
    }
}

/// `g`·Wᵀ: the gradient reaching a linear layer's input from `g` at its
/// output (a weight kept in f16 widened for it, exactly).
fn linear_back(layer: &Linear, g: Tensor<2>) -> Tensor<2> {
    matmul(g, layer.weight.val().cast(DType::F32).transpose())
}

/// The gradient reaching a LayerNorm's input `x` ([rows, width]) from `g`
/// at its output (`eps` as the norm was built with).
fn layer_norm_back(norm: &LayerNorm, eps: f64, x: Tensor<2>, g: Tensor<2>) -> Tensor<2> {
    let [_, width] = x.dims();
    let centred = x.clone() - x.mean_dim(1);
    let inv_std = (centred.clone().powi_scalar(2).mean_dim(1) + eps)
        .sqrt()
        .recip();
    let normalised = centred * inv_std.clone();
    let g = g * norm.gamma.val().reshape([1, width]);
    let mean_g = g.clone().mean_dim(1);
    let mean_gx = (g.clone() * normalised.clone()).mean_dim(1);
    (g - mean_g - normalised * mean_gx) * inv_std
}

/// [`layer_norm_back`] over the last axis of [H, T, width] tensors.
fn layer_norm_back_3d(norm: &LayerNorm, eps: f64, x: Tensor<3>, g: Tensor<3>) -> Tensor<3> {
    let [h, t, w] = x.dims();
    layer_norm_back(norm, eps, x.reshape([h * t, w]), g.reshape([h * t, w])).reshape([h, t, w])
}

/// ∂ logit `class` / ∂A of every layer, [H, T, T] each, first layer first;
/// `eps` is the model's LayerNorm epsilon.
pub fn attention_gradients(
    model: &VisionTransformer,
    forward: &Forward,
    class: usize,
    eps: f64,
) -> Vec<Tensor<3>> {
    let mut g = head_back(model, &forward.last, &forward.tokens, class, eps);
    let [t, d] = forward.last.dims();

    let mut gradients = Vec::with_capacity(model.depth());
    for (i, (block, saved)) in model.blocks.iter().zip(&forward.blocks).enumerate().rev() {
        // The MLP branch.
        let scaled = |ls: &Option<crate::model::block::LayerScale>, g: Tensor<2>| match ls {
            Some(ls) => g * ls.gamma.val().reshape([1, d]),
            None => g,
        };
        let g_out = linear_back(&block.mlp.fc2, scaled(&block.ls2, g.clone()));
        let slope = if block.mlp.quick_gelu {
            // x·σ(1.702x): σ + 1.702·x·σ·(1 − σ)
            let s = burn::tensor::activation::sigmoid(saved.hidden.clone().mul_scalar(1.702));
            s.clone() + saved.hidden.clone().mul_scalar(1.702) * s.clone() * (s.neg() + 1.0)
        } else {
            gelu_slope(saved.hidden.clone())
        };
        let g_normed2 = linear_back(&block.mlp.fc1, g_out * slope);
        let g_mid = g + layer_norm_back(&block.norm2, eps, saved.mid.clone(), g_normed2);

        // The attention branch, per head.
        let [h, _, hd] = saved.values.dims();
        let g_context = linear_back(&block.attn.proj, scaled(&block.ls1, g_mid.clone()))
            .reshape([t, h, hd])
            .swap_dims(0, 1); // [H, T, hd]
        let g_weights = matmul(g_context.clone(), saved.values.clone().swap_dims(1, 2));
        gradients.push(g_weights.clone());
        if i == 0 {
            break; // nothing below the first block's attention is needed
        }
        let a = saved.weights.clone();
        let g_values = matmul(a.clone().swap_dims(1, 2), g_context);
        let g_scores = a.clone() * (g_weights.clone() - (g_weights * a).sum_dim(2));
        let scale = (hd as f64).powf(-0.5);
        let mut g_queries = matmul(g_scores.clone(), saved.keys.clone()).mul_scalar(scale);
        let mut g_keys = matmul(g_scores.swap_dims(1, 2), saved.queries.clone()).mul_scalar(scale);
        if let (Some((raw_q, raw_k)), Some(qn), Some(kn)) =
            (&saved.raw, &block.attn.q_norm, &block.attn.k_norm)
        {
            g_queries = layer_norm_back_3d(qn, eps, raw_q.clone(), g_queries);
            g_keys = layer_norm_back_3d(kn, eps, raw_k.clone(), g_keys);
        }
        // [3, H, T, hd] → [T, 3, H, hd] → [T, 3D], as the fused projection laid them out.
        let g_qkv = Tensor::stack::<4>(vec![g_queries, g_keys, g_values], 0)
            .permute([2, 0, 1, 3])
            .reshape([t, 3 * d]);
        let g_normed = linear_back(&block.attn.qkv, g_qkv);
        g = g_mid + layer_norm_back(&block.norm1, eps, saved.input.clone(), g_normed);
    }
    gradients.reverse();
    gradients
}

/// The gradient of logit `class` reaching the last block's output `last`
/// [T, D], through the head, the pooling and the final norm (whose output,
/// the head's input, is `tokens`).
pub fn head_back(
    model: &VisionTransformer,
    last: &Tensor<2>,
    tokens: &Tensor<2>,
    class: usize,
    eps: f64,
) -> Tensor<2> {
    let [t, d] = last.dims();
    let device = last.device();
    let column = |head: &Linear| -> Tensor<1> {
        let [inputs, _] = head.weight.val().dims();
        head.weight
            .val()
            .slice([0..inputs, class..class + 1])
            .cast(DType::F32)
            .reshape([inputs])
    };
    // The gradient reaching the final tokens, [T, D].
    let g = match (&model.head, &model.head_dist) {
        // Distilled DeiT: the two heads' mean on tokens 0 and 1.
        (Some(head), Some(dist)) => Tensor::cat(
            vec![
                column(head).mul_scalar(0.5).reshape([1, d]),
                column(dist).mul_scalar(0.5).reshape([1, d]),
                Tensor::zeros([t - 2, d], &device),
            ],
            0,
        ),
        (Some(head), None) => pool_back(model, last, tokens, column(head), eps),
        (None, _) => panic!("a model without a head has no class to explain"),
    };
    match &model.norm {
        Some(norm) => layer_norm_back(norm, eps, last.clone(), g),
        None => g,
    }
}

/// The gradient reaching the final tokens [T, D] from `g` (the head's
/// column of the class) at the pooled features.
fn pool_back(
    model: &VisionTransformer,
    last: &Tensor<2>,
    tokens: &Tensor<2>,
    g: Tensor<1>,
    eps: f64,
) -> Tensor<2> {
    let [t, d] = last.dims();
    let device = last.device();
    let p = t - model.num_patches();
    let n = model.num_patches();
    let mut g = g.reshape([1, -1]);
    if let Some(norm) = &model.fc_norm {
        let pooled = model.pool_unnormed(tokens.clone().unsqueeze_dim(0));
        g = layer_norm_back(norm, eps, pooled, g);
    }
    let zeros = |rows: usize| Tensor::<2>::zeros([rows, d], &device);
    let on_token = |g: Tensor<2>, i: usize| {
        let mut parts = Vec::new();
        if i > 0 {
            parts.push(zeros(i));
        }
        parts.push(g);
        if i + 1 < t {
            parts.push(zeros(t - i - 1));
        }
        Tensor::cat(parts, 0)
    };
    let on_patches = |g: Tensor<2>| Tensor::cat(vec![zeros(p), g], 0);
    let mean_back = |g: Tensor<2>| on_patches(g.mul_scalar(1.0 / n as f64).expand([n, d]));
    let max_back = |g: Tensor<2>| {
        let patches = tokens.clone().slice([p..t, 0..d]);
        let top = patches.clone().max_dim(0).expand([n, d]);
        let mask = patches.equal(top).float();
        on_patches(mask * g)
    };
    match model.global_pool {
        Pool::Token => on_token(g, 0),
        Pool::Avg => mean_back(g),
        Pool::Max => max_back(g),
        Pool::AvgMax => mean_back(g.clone().mul_scalar(0.5)) + max_back(g.mul_scalar(0.5)),
        Pool::TokenAndAvg => {
            on_token(g.clone().slice([0..1, 0..d]), 0) + mean_back(g.slice([0..1, d..2 * d]))
        }
        Pool::TokenAndDistillation => {
            on_token(g.clone().mul_scalar(0.5), 0) + on_token(g.mul_scalar(0.5), 1)
        }
    }
}
