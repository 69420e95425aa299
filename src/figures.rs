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
    let [len, d] = w.dims();
    // Centred over the D filters: [L, D] less each row's mean.
    let centred = w.clone() - w.mean_dim(1);
    let covariance = centred.clone().matmul(centred.clone().transpose()) / (d.max(2) - 1) as f64; // [L, L]
    // The total variance: the covariance's trace.
    let total =
        read(centred.clone().powf_scalar(2.0).sum()).await[0] as f64 / (d.max(2) - 1) as f64;
    let k = k.min(len);
    let m = (k + 8).min(len);
    // V's columns, each contiguous ([m, len]); a deterministic start, each
    // column a different mix of the coordinates.
    let mut v: Vec<f64> = (0..len * m)
        .map(|i| (((i * 7919 + 13) % 1009) as f64 / 1009.0) - 0.5)
        .collect();
    orthonormalise(&mut v, len);
    // Rayleigh–Ritz: the eigenpairs of Vᵀ·C·V, largest first, whose
    // vectors rotate V into C's.
    let ritz = |v: &[f64], cv: &[f64]| {
        let mut h = vec![0.0; m * m];
        for a in 0..m {
            for b in 0..m {
                h[a * m + b] = dot(&v[a * len..(a + 1) * len], &cv[b * len..(b + 1) * len]);
            }
        }
        let (values, vectors) = jacobi_eigen(h, m);
        let mut order: Vec<usize> = (0..m).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
        (values, vectors, order)
    };
    let mut before: Vec<f64> = Vec::new();
    for round in 1..=MAX_ITERATIONS {
        let cv = product(&covariance, &v, len).await;
        // Every few rounds: done once the leading values stand still.
        if round % 8 == 0 {
            let (values, _, order) = ritz(&v, &cv);
            let now: Vec<f64> = order.iter().take(k).map(|&j| values[j]).collect();
            let scale = now
                .first()
                .copied()
                .unwrap_or(0.0)
                .abs()
                .max(f64::MIN_POSITIVE);
            let still = before.len() == now.len()
                && now
                    .iter()
                    .zip(&before)
                    .all(|(a, b)| (a - b).abs() <= 1e-12 * scale);
            if still {
                break;
            }
            before = now;
        }
        v = cv;
        orthonormalise(&mut v, len);
    }
    let cv = product(&covariance, &v, len).await;
    let (values, vectors, order) = ritz(&v, &cv);
    let mut components = Vec::with_capacity(k * len);
    let mut variance = Vec::with_capacity(k);
    for &j in order.iter().take(k) {
        let mut col = vec![0.0f64; len];
        for a in 0..m {
            let w = vectors[a * m + j];
            for (c, x) in col.iter_mut().zip(&v[a * len..(a + 1) * len]) {
                *c += w * x;
            }
        }
        let norm = dot(&col, &col).sqrt().max(f64::MIN_POSITIVE);
        // A sign of its own: the largest entry positive.
        let big = col
            .iter()
            .fold(0.0f64, |b, &x| if x.abs() > b.abs() { x } else { b });
        let sign = if big < 0.0 { -1.0 } else { 1.0 };
        components.extend(col.iter().map(|x| (sign * x / norm) as f32));
        variance.push((values[j] / total.max(f64::MIN_POSITIVE)) as f32);
    }
    FilterComponents {
        components,
        variance,
    }
}

/// C·V for V's columns one after another (each `len` long), the product
/// on C's device, the result's columns likewise.
async fn product(c: &Tensor<2>, v: &[f64], len: usize) -> Vec<f64> {
    let m = v.len() / len;
    let rows: Vec<f32> = (0..len * m)
        .map(|x| v[(x % m) * len + x / m] as f32)
        .collect();
    let t = Tensor::<2>::from_data(TensorData::new(rows, [len, m]), &c.device());
    let cv = read(c.clone().matmul(t)).await;
    (0..len * m)
        .map(|x| cv[(x % len) * m + x / len] as f64)
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Subspace iterations at most: fewer where the leading eigenvalues stand
/// still sooner (a trained model's filters have a steep spectrum).
const MAX_ITERATIONS: usize = 200;

async fn read<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data_async()
        .await
        .expect("read-back of the figures")
        .try_into_vec::<f32>()
        .expect("f32 values")
}

/// The columns of `v` (each `len` long, one after another) made
/// orthonormal: modified Gram–Schmidt, one pass (the next round's product
/// and the last Rayleigh–Ritz step absorb what it leaves).
fn orthonormalise(v: &mut [f64], len: usize) {
    let m = v.len() / len;
    for j in 0..m {
        let (done, rest) = v.split_at_mut(j * len);
        let col = &mut rest[..len];
        for p in 0..j {
            let prev = &done[p * len..(p + 1) * len];
            let d = dot(col, prev);
            for (c, q) in col.iter_mut().zip(prev) {
                *c -= d * q;
            }
        }
        let norm = dot(col, col).sqrt();
        let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
        col.iter_mut().for_each(|c| *c *= scale);
    }
}

/// The eigenvalues and eigenvectors (columns of the [m, m] row-major
/// result) of the symmetric `a` [m, m], by cyclic Jacobi rotations.
fn jacobi_eigen(mut a: Vec<f64>, m: usize) -> (Vec<f64>, Vec<f64>) {
    let mut vectors: Vec<f64> = (0..m * m)
        .map(|i| if i % (m + 1) == 0 { 1.0 } else { 0.0 })
        .collect();
    for _ in 0..100 {
        let off: f64 = (0..m)
            .flat_map(|p| (0..m).filter(move |&q| q != p).map(move |q| (p, q)))
            .map(|(p, q)| a[p * m + q].powi(2))
            .sum();
        let scale: f64 = (0..m).map(|p| a[p * m + p].powi(2)).sum();
        if off <= 1e-30 * scale.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..m {
            for q in p + 1..m {
                let apq = a[p * m + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * m + q] - a[p * m + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for r in 0..m {
                    let (arp, arq) = (a[r * m + p], a[r * m + q]);
                    a[r * m + p] = c * arp - s * arq;
                    a[r * m + q] = s * arp + c * arq;
                }
                for r in 0..m {
                    let (apr, aqr) = (a[p * m + r], a[q * m + r]);
                    a[p * m + r] = c * apr - s * aqr;
                    a[q * m + r] = s * apr + c * aqr;
                }
                for r in 0..m {
                    let (vrp, vrq) = (vectors[r * m + p], vectors[r * m + q]);
                    vectors[r * m + p] = c * vrp - s * vrq;
                    vectors[r * m + q] = s * vrp + c * vrq;
                }
            }
        }
    }
    ((0..m).map(|p| a[p * m + p]).collect(), vectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Jacobi finds a known spectrum: A = Q·diag·Qᵀ back from its entries.
    #[test]
    fn jacobi_finds_the_eigenpairs() {
        let m = 4;
        let a = vec![
            4.0, 1.0, 0.5, 0.0, //
            1.0, 3.0, 0.2, 0.1, //
            0.5, 0.2, 2.0, 0.3, //
            0.0, 0.1, 0.3, 1.0,
        ];
        let (values, vectors) = jacobi_eigen(a.clone(), m);
        for j in 0..m {
            for r in 0..m {
                let av: f64 = (0..m).map(|c| a[r * m + c] * vectors[c * m + j]).sum();
                assert!(
                    (av - values[j] * vectors[r * m + j]).abs() < 1e-12,
                    "A·v = λ·v"
                );
            }
        }
        let trace: f64 = values.iter().sum();
        assert!((trace - 10.0).abs() < 1e-12);
    }
}
