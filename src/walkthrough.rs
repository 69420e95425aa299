//! The forward pass step by step, for the teaching view: the real
//! intermediate values of the loaded model on one image, read back in one
//! transfer. The blocks run on the model's executor (as classification
//! does), but the one shown in full, which runs through the model's own
//! modules ([`crate::model`]) so that each of its steps can be seen.
//!
//! Sizes stay small: a few chosen patches, one chosen layer and head in
//! full, and per-token or per-head summaries elsewhere.

use burn::tensor::{Device, Tensor, TensorData};

use crate::exec::Executor;
use crate::explain::distance::{distance_matrix, mean_distance};
use crate::model::patch_embed::patchify;
use crate::model::{VisionTransformer, VitConfig};

/// What to look at closely.
#[derive(Clone, Debug, PartialEq)]
pub struct Focus {
    /// Patch indices (row-major over the grid) whose vectors and embeddings to return.
    pub patches: Vec<usize>,
    /// The encoder layer shown in full.
    pub layer: usize,
    /// The head of that layer whose Q, K, V and attention are returned.
    pub head: usize,
}

/// The intermediate values; matrices are row-major.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Walkthrough {
    /// The focus patches flattened, [k, P·P·C] (normalised pixel values).
    pub patch_vectors: Vec<f32>,
    /// Their linear projections, [k, D], before the position embedding.
    pub patch_embeddings: Vec<f32>,
    /// The learned tokens before the patches, as the model holds them: the
    /// class token, the distillation token and the registers (those it
    /// has), [P, D]; empty for a model with none.
    pub prefix_tokens: Vec<f32>,
    /// Cosine similarity of every patch's position embedding with every
    /// other's, [N, N] (the paper's Figure 7, centre).
    pub position_similarity: Vec<f32>,
    /// Layer `focus.layer`, head `focus.head`: queries, keys, values [T, d]
    /// (T = P + N, the prefix tokens first; d = D / heads) and the
    /// attention matrix [T, T].
    pub queries: Vec<f32>,
    pub keys: Vec<f32>,
    pub values: Vec<f32>,
    pub attention: Vec<f32>,
    /// The focus layer's first LayerNorm output (what attention sees), its
    /// second LayerNorm output (what the MLP sees) and its MLP's output (what
    /// the second residual adds), [T, D] each.
    pub normed: Vec<f32>,
    pub normed2: Vec<f32>,
    pub mlp_out: Vec<f32>,
    /// Length of each token vector entering the focus layer, after its
    /// attention residual, and after its MLP residual: [3, T].
    pub token_norms: Vec<f32>,
    /// Mean attention distance of each head of each layer, in pixels, [L, H]
    /// (the paper's Figure 7, right, for this one image).
    pub mean_distance: Vec<f32>,
    /// What the head sees: the class token after the final LayerNorm, or
    /// the pooled patches (see [`VisionTransformer::pool`]), [D] (2·D for
    /// a class token and patch mean side by side).
    pub pooled: Vec<f32>,
    /// The head's output, [classes] (a backbone: the class token's features, [D]).
    pub logits: Vec<f32>,
}

/// The forward pass of one preprocessed input ([C, H, W]) step by step,
/// through the model's own parts: its patch embedding, class token and
/// position embedding, each block's steps, the final norm and the head.
///
/// Panics when `input` has the wrong length or `focus` names a patch,
/// layer or head that does not exist (callers check against the config).
pub async fn walk(
    model: &VisionTransformer,
    executor: &Executor,
    c: &VitConfig,
    device: &Device,
    input: &[f32],
    focus: &Focus,
) -> Walkthrough {
    let [h, w] = c.img_size;
    let (n, t, d) = (c.num_patches(), c.num_tokens(), c.embed_dim);
    let heads = c.num_heads;
    let hd = d / heads;
    assert_eq!(input.len(), c.in_chans * h * w, "input length");
    assert!(
        focus.layer < c.depth && focus.head < heads,
        "focus out of range"
    );
    assert!(focus.patches.iter().all(|&p| p < n), "patch out of range");

    let x = Tensor::<4>::from_data(
        TensorData::new(input.to_vec(), [1, c.in_chans, h, w]),
        device,
    );
    let patches = patchify(x, c.patch_size); // [1, N, P·P·C]
    let embedded = model.patch_embed.forward(patches.clone()); // [1, N, D]
    let pick = |m: Tensor<3>| -> Tensor<1> {
        let rows: Vec<Tensor<1>> = focus
            .patches
            .iter()
            .map(|&i| {
                let [_, _, len] = m.dims();
                m.clone().slice([0..1, i..i + 1, 0..len]).reshape([len])
            })
            .collect();
        if rows.is_empty() {
            Tensor::zeros([0], device)
        } else {
            Tensor::cat(rows, 0)
        }
    };
    let patch_vectors = pick(patches);
    let patch_embeddings = pick(embedded.clone());
    let tokens = model.add_class_and_position(embedded);

    let similarity = crate::figures::position_similarity(model, c);

    // The blocks around the focus run on the executor; the focus block
    // through the model's operations, which expose each of its steps.
    let distances = distance_matrix(c.grid(), c.patch_size, device);
    let norm = |x: &Tensor<3>| x.clone().powf_scalar(2.0).sum_dim(2).sqrt().reshape([t]);
    let mut mean_distances = Vec::with_capacity(c.depth);
    let mut distance_of =
        |_: usize, weights: &Tensor<4>| mean_distances.push(mean_distance(weights, &distances));
    let before = executor.encode_blocks(model, tokens, 0..focus.layer, Some(&mut distance_of));
    let mut focus_parts = None;
    let after_focus = model.encode_blocks(before.clone(), focus.layer..focus.layer + 1, |l, s| {
        distance_of(l, &s.attention.weights);
        {
            let block = &model.blocks[l];
            let qkv =
                crate::ops::linear(&block.attn.qkv, s.normed.clone()).reshape([1, t, 3, heads, hd]);
            // Queries and keys as the scores see them: after QK norm, if any.
            let part = |k: usize| {
                let m = qkv
                    .clone()
                    .slice([0..1, 0..t, k..k + 1, focus.head..focus.head + 1, 0..hd])
                    .reshape([1, t, hd]);
                let norm = match k {
                    0 => block.attn.q_norm.as_ref(),
                    1 => block.attn.k_norm.as_ref(),
                    _ => None,
                };
                norm.map_or(m.clone(), |n| n.forward(m)).reshape([t * hd])
            };
            let attention = s
                .attention
                .weights
                .clone()
                .slice([0..1, focus.head..focus.head + 1, 0..t, 0..t])
                .reshape([t * t]);
            let norms = Tensor::cat(
                vec![norm(&before), norm(&s.after_attention), norm(&s.output)],
                0,
            );
            focus_parts = Some(vec![
                part(0),
                part(1),
                part(2),
                attention,
                s.normed.clone().reshape([t * d]),
                s.normed2.clone().reshape([t * d]),
                s.mlp.clone().reshape([t * d]),
                norms,
            ]);
        }
    });
    let rest = executor.encode_blocks(
        model,
        after_focus,
        focus.layer + 1..c.depth,
        Some(&mut distance_of),
    );
    let tokens = model.final_norm(rest);
    let pooled = model.pool(tokens.clone()).reshape([c.pooled_dim()]);
    let logits = model.forward_head(tokens).reshape([c.outputs()]);

    let mut parts = vec![
        patch_vectors,
        patch_embeddings,
        prefix_tokens(model, device),
        similarity,
    ];
    parts.extend(focus_parts.expect("focus layer exists"));
    parts.push(Tensor::cat(mean_distances, 0));
    parts.push(pooled);
    parts.push(logits);
    let sizes: Vec<usize> = parts.iter().map(|p| p.dims()[0]).collect();
    let flat = Tensor::cat(parts, 0)
        .into_data_async()
        .await
        .expect("read-back of the walk-through")
        .try_into_vec::<f32>()
        .expect("f32 values");
    let mut rest = flat.as_slice();
    let mut next = |k: usize| {
        let (a, b) = rest.split_at(sizes[k]);
        rest = b;
        a.to_vec()
    };
    Walkthrough {
        patch_vectors: next(0),
        patch_embeddings: next(1),
        prefix_tokens: next(2),
        position_similarity: next(3),
        queries: next(4),
        keys: next(5),
        values: next(6),
        attention: next(7),
        normed: next(8),
        normed2: next(9),
        mlp_out: next(10),
        token_norms: next(11),
        mean_distance: next(12),
        pooled: next(13),
        logits: next(14),
    }
}

/// The model's learned prefix tokens, [P·D] (class, distillation, registers).
fn prefix_tokens(model: &VisionTransformer, device: &Device) -> Tensor<1> {
    let tokens: Vec<Tensor<1>> = [&model.cls_token, &model.dist_token, &model.reg_token]
        .into_iter()
        .flatten()
        .map(|t| t.val().reshape([-1]))
        .collect();
    if tokens.is_empty() {
        Tensor::zeros([0], device)
    } else {
        Tensor::cat(tokens, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Classifier;
    use crate::preprocess::PreprocessConfig;
    use pollster::FutureExt;

    /// The steps agree with the ordinary forward pass and with each other.
    #[cfg(feature = "cpu")]
    #[test]
    fn steps_agree_with_the_forward_pass() {
        let config = VitConfig::new([32, 32], 8, 24, 2, 3, 48).with_num_classes(5);
        let device = Device::flex();
        device.seed(7);
        let model = config.init(&device);
        let pre = PreprocessConfig::timm_default(3, [32, 32]);
        let classifier = Classifier::from_model(model, config.clone(), pre, &device);
        let input: Vec<f32> = (0..3 * 32 * 32)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let focus = Focus {
            patches: vec![0, 5],
            layer: 1,
            head: 2,
        };
        let w = classifier.walkthrough(&input, &focus).block_on();
        let plain = classifier
            .classify_input(&input, Some(1))
            .block_on()
            .unwrap();

        let close =
            |a: &[f32], b: &[f32], tol: f32| a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol);
        assert!(
            close(&w.logits, &plain.logits, 1e-5),
            "{:?} vs {:?}",
            w.logits,
            plain.logits
        );
        let (n, t, hd) = (16, 17, 8);
        assert_eq!(w.patch_vectors.len(), 2 * 8 * 8 * 3);
        assert_eq!(w.patch_embeddings.len(), 2 * 24);
        // Patch 5 is grid row 1, column 1: its first value is pixel (8, 8) of channel 0.
        assert_eq!(w.patch_vectors[8 * 8 * 3], input[8 * 32 + 8]);
        // The focus head's matrix is that layer's, and softmax(q·kᵀ/√d) reproduces it.
        let layer = plain.layer_attention.as_ref().unwrap();
        assert!(close(&w.attention, &layer[2 * t * t..3 * t * t], 1e-6));
        let row0: Vec<f32> = (0..t)
            .map(|j| {
                (0..hd)
                    .map(|k| w.queries[k] * w.keys[j * hd + k])
                    .sum::<f32>()
                    / (hd as f32).sqrt()
            })
            .collect();
        let m = row0.iter().cloned().fold(f32::MIN, f32::max);
        let e: Vec<f32> = row0.iter().map(|v| (v - m).exp()).collect();
        let s: f32 = e.iter().sum();
        let soft: Vec<f32> = e.iter().map(|v| v / s).collect();
        assert!(close(&soft, &w.attention[..t], 1e-5), "{soft:?}");
        // Position similarities: 1 on the diagonal, symmetric, within [-1, 1].
        for i in 0..n {
            assert!((w.position_similarity[i * n + i] - 1.0).abs() < 1e-5);
            for j in 0..n {
                assert!(
                    (w.position_similarity[i * n + j] - w.position_similarity[j * n + i]).abs()
                        < 1e-5
                );
            }
        }
        // Mean distances lie between 0 and the grid's diagonal.
        let diagonal = (2.0f32 * 24.0 * 24.0).sqrt();
        assert_eq!(w.mean_distance.len(), 2 * 3);
        assert!(
            w.mean_distance.iter().all(|&v| v > 0.0 && v <= diagonal),
            "{:?}",
            w.mean_distance
        );
        assert_eq!(w.token_norms.len(), 3 * t);
        assert_eq!(
            (w.normed.len(), w.normed2.len(), w.mlp_out.len()),
            (t * 24, t * 24, t * 24)
        );
        // LayerNorm output: each token has mean 0 before its affine part (weight 1, bias 0 here).
        let mean0: f32 = w.normed[..24].iter().sum::<f32>() / 24.0;
        assert!(mean0.abs() < 1e-4, "{mean0}");
        assert_eq!((w.prefix_tokens.len(), w.pooled.len()), (24, 24));
    }
}
