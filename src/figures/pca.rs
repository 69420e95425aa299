//! Principal components with the device's matrix product (the covariance,
//! and C·V in subspace iteration) and the rest on the host in f64: the
//! patch embedding's filters, and a backbone's patch features as colour
//! (DINOv2's figure: Oquab et al. 2024, Fig. 1 and its code's recipe).

use burn::tensor::{Tensor, TensorData};

/// A covariance's leading eigenpairs, the largest first; each vector of
/// unit length with its largest entry positive.
pub(super) struct Leading {
    pub vectors: Vec<Vec<f64>>,
    pub values: Vec<f64>,
}

impl Leading {
    /// The share of `total` variance each explains.
    pub fn shares(&self, total: f64) -> Vec<f32> {
        self.values
            .iter()
            .map(|v| (v / total.max(f64::MIN_POSITIVE)) as f32)
            .collect()
    }
}

/// The covariance [D, D] of `samples` [m, D] (one sample a row, centred
/// over the rows, divided by m − 1) and its trace, the total variance.
pub(super) async fn covariance(samples: Tensor<2>) -> (Tensor<2>, f64) {
    let m = samples.dims()[0].max(2) - 1;
    let centred = samples.clone() - samples.mean_dim(0);
    let total = read(centred.clone().powf_scalar(2.0).sum()).await[0] as f64 / m as f64;
    (
        centred.clone().transpose().matmul(centred) / m as f64,
        total,
    )
}

/// The first `k` eigenpairs of the symmetric `covariance` [len, len]:
/// subspace iteration on `k` and some more vectors with a Rayleigh–Ritz
/// step, until the leading values stand still.
pub(super) async fn leading(covariance: &Tensor<2>, k: usize) -> Leading {
    let len = covariance.dims()[0];
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
        let cv = product(covariance, &v, len).await;
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
    let cv = product(covariance, &v, len).await;
    let (values, vectors, order) = ritz(&v, &cv);
    let mut vectors_out = Vec::with_capacity(k);
    let mut values_out = Vec::with_capacity(k);
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
        vectors_out.push(col.iter().map(|x| sign * x / norm).collect());
        values_out.push(values[j]);
    }
    Leading {
        vectors: vectors_out,
        values: values_out,
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

pub(super) async fn read<const D: usize>(t: Tensor<D>) -> Vec<f32> {
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

/// Where the first component splits the patches: at or above it (the
/// component scaled to [0, 1], turned so that the image border scores low),
/// a patch is foreground.
pub const FOREGROUND_THRESHOLD: f32 = 0.5;

/// The fewest foreground patches the colour step is fitted on; with fewer,
/// every patch is.
const FEWEST_FOREGROUND: usize = 4;

/// A backbone's patch features as colour, over one or more images of one
/// patch grid (DINOv2's figure): the first principal component of every
/// patch's features splits foreground from background; the first three
/// components of the foreground's features, each scaled to [0, 1] over the
/// foreground of all the images, are its red, green and blue. Fitted over
/// several images, parts that match get matching colours.
#[derive(Clone, Debug)]
pub struct FeaturePca {
    /// Per image, each patch's first component over all patches, scaled
    /// to [0, 1] over all the images, the border low, [N].
    pub first: Vec<Vec<f32>>,
    /// Per image, 1 for a foreground patch, [N].
    pub foreground: Vec<Vec<u8>>,
    /// Per image, [N, 3]: the three components; 0 on the background.
    pub rgb: Vec<Vec<f32>>,
    /// The share of the colour step's variance (the foreground's features)
    /// each of the three explains.
    pub variance: Vec<f32>,
    /// The share of all the patches' variance the first component explains.
    pub first_variance: f32,
}

/// The PCA of `features` (per image [N, D], N = rows·cols patches in
/// row-major order, each image's grid `grid`). With `split` false, every
/// patch is foreground.
///
/// Panics when the images' patch counts differ from the grid.
pub async fn feature_pca(features: &[Tensor<2>], grid: [usize; 2], split: bool) -> FeaturePca {
    let [rows, cols] = grid;
    let n = rows * cols;
    assert!(
        features.iter().all(|f| f.dims()[0] == n),
        "one grid for all"
    );
    let device = features[0].device();
    let all = Tensor::cat(features.to_vec(), 0);
    let d = all.dims()[1];
    let host = read(all.clone()).await;
    let row = |i: usize| &host[i * d..(i + 1) * d];
    let total_rows = features.len() * n;

    // The first component, over every patch.
    let (cov, total) = covariance(all).await;
    let (mean, first) = (column_mean(&host, d), leading(&cov, 1).await);
    let mut p: Vec<f64> = (0..total_rows)
        .map(|i| project(row(i), &mean, &first.vectors[0]))
        .collect();
    let border = |i: usize| {
        let (r, c) = ((i % n) / cols, i % cols);
        r == 0 || c == 0 || r + 1 == rows || c + 1 == cols
    };
    let edge: Vec<f64> = (0..total_rows)
        .filter(|&i| border(i))
        .map(|i| p[i])
        .collect();
    // The projections average zero: the border's side is the low one.
    if edge.iter().sum::<f64>() > 0.0 {
        p.iter_mut().for_each(|x| *x = -*x);
    }
    let first_scaled = scaled(&p);
    let mut fg: Vec<usize> = (0..total_rows)
        .filter(|&i| !split || first_scaled[i] >= FOREGROUND_THRESHOLD as f64)
        .collect();
    if fg.len() < FEWEST_FOREGROUND {
        fg = (0..total_rows).collect();
    }

    // The colour step, over the foreground.
    let picked: Vec<f32> = fg.iter().flat_map(|&i| row(i).iter().copied()).collect();
    let samples = Tensor::<2>::from_data(TensorData::new(picked.clone(), [fg.len(), d]), &device);
    let (cov, fg_total) = covariance(samples).await;
    let colours = leading(&cov, 3).await;
    let fg_mean = column_mean(&picked, d);
    let channels: Vec<Vec<f64>> = colours
        .vectors
        .iter()
        .map(|v| {
            scaled(
                &fg.iter()
                    .map(|&i| project(row(i), &fg_mean, v))
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let mut rgb = vec![vec![0.0f32; n * 3]; features.len()];
    let mut foreground = vec![vec![0u8; n]; features.len()];
    for (at, &i) in fg.iter().enumerate() {
        foreground[i / n][i % n] = 1;
        for (c, channel) in channels.iter().enumerate() {
            rgb[i / n][(i % n) * 3 + c] = channel[at] as f32;
        }
    }
    FeaturePca {
        first: first_scaled
            .chunks(n)
            .map(|c| c.iter().map(|&x| x as f32).collect())
            .collect(),
        foreground,
        rgb,
        variance: colours.shares(fg_total),
        first_variance: first.shares(total)[0],
    }
}

fn column_mean(rows: &[f32], d: usize) -> Vec<f64> {
    let mut mean = vec![0.0f64; d];
    for r in rows.chunks(d) {
        mean.iter_mut().zip(r).for_each(|(m, &x)| *m += x as f64);
    }
    let count = (rows.len() / d).max(1) as f64;
    mean.iter_mut().for_each(|m| *m /= count);
    mean
}

fn project(row: &[f32], mean: &[f64], v: &[f64]) -> f64 {
    row.iter()
        .zip(mean)
        .zip(v)
        .map(|((&x, m), w)| (x as f64 - m) * w)
        .sum()
}

/// `x` scaled to [0, 1] by its least and greatest (all 0 when they agree).
fn scaled(x: &[f64]) -> Vec<f64> {
    let lo = x.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = hi - lo;
    x.iter()
        .map(|v| if span > 0.0 { (v - lo) / span } else { 0.0 })
        .collect()
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
