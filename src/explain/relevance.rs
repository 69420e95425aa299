//! Why this class: maps over the patches that follow the gradient of one
//! class's score, where attention maps only say where the heads look.
//!
//! Both methods weigh each layer's attention A ([heads, T, T]) by its
//! gradient ∇A = ∂ logit_k / ∂A:
//!
//! - **Gradient-weighted rollout** as jacobgil/vit-explain's `grad_rollout`
//!   computes it: per layer, the mean over heads of ∇A ⊙ A, its negative
//!   values set to 0, the lowest `discard_ratio` of its T² entries set to 0,
//!   then (· + I) / 2 with rows renormalised, multiplied over the layers.
//!   (vit-explain divides by `a.sum(dim=-1)` without `keepdim`, which
//!   broadcasts row j's sum over column j; vitrine renormalises the rows,
//!   as the method describes and as its attention rollout does.)
//! - **Chefer, Gur & Wolf 2021**, "Generic Attention-model Explainability":
//!   R = I; per block, Ā = mean over heads of (∇A ⊙ A)⁺ (the positive part
//!   first, then the mean), R ← R + Ā·R.
//!
//! The map of either is the row of the class token over the patches (for a
//! model without one, the mean of the patches' rows, as the attention maps
//! do; [`MapQueries`]). Per head, (∇A ⊙ A)⁺'s map row shows what each head
//! contributed to the class.
//!
//! The gradient comes from the backward pass written out in
//! [`super::gradient`] (no weight gradients, on the model's own kernels).
//! Both maps are carried as one row from the last layer down (R's row k is
//! e_k·(I + Ā_L)⋯(I + Ā_1)), so the device does the products and only
//! vectors and, for the discard step of grad-rollout, each layer's [T, T]
//! head mean come back.

use burn::tensor::{Tensor, TensorData};
#[cfg(not(target_arch = "wasm32"))]
use rayon::prelude::*;

#[cfg(target_arch = "wasm32")]
use crate::ops::serial::*;

use super::grad_rollout::grad_rollout;
use super::trace::MapQueries;

/// vit-explain's default share of each layer's fused attention that
/// gradient-weighted rollout discards.
pub const DISCARD_RATIO: f64 = 0.9;

/// The two class-specific maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Explanation {
    /// Gradient-weighted attention rollout (vit-explain).
    GradRollout,
    /// Chefer, Gur & Wolf 2021.
    Chefer,
}

impl Explanation {
    /// `grad-rollout` or `chefer`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "grad-rollout" => Some(Self::GradRollout),
            "chefer" => Some(Self::Chefer),
            _ => None,
        }
    }

    /// The name the CLI and the page use.
    pub fn name(self) -> &'static str {
        match self {
            Self::GradRollout => "grad-rollout",
            Self::Chefer => "chefer",
        }
    }
}

/// One class's relevance maps, on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct RelevanceMaps {
    /// The class they explain.
    pub class: usize,
    pub layers: usize,
    pub heads: usize,
    /// Patch grid [rows, cols].
    pub grid: [usize; 2],
    /// Gradient-weighted rollout over the patches, [N].
    pub grad_rollout: Vec<f32>,
    /// Chefer et al.'s relevance over the patches, [N].
    pub chefer: Vec<f32>,
    /// (∇A ⊙ A)⁺'s map row of every head of every layer, [L, H, N].
    pub heads_map: Vec<f32>,
}

impl RelevanceMaps {
    /// The map of `which`, [N].
    pub fn map(&self, which: Explanation) -> &[f32] {
        match which {
            Explanation::GradRollout => &self.grad_rollout,
            Explanation::Chefer => &self.chefer,
        }
    }

    /// One head's (∇A ⊙ A)⁺ map, [N].
    pub fn head(&self, layer: usize, head: usize) -> &[f32] {
        let n = self.grid[0] * self.grid[1];
        let start = (layer * self.heads + head) * n;
        &self.heads_map[start..start + n]
    }
}

/// The maps' parts before the host's last step: on the device, the heads'
/// maps [L·H·N], Chefer's map [N], then each layer's head mean of ∇A ⊙ A
/// with its negative part set to 0 [L·T·T], flattened for one read-back
/// ([`device_maps`]); or the same, already on the host ([`host_maps`]).
pub struct RelevanceTensors {
    parts: Parts,
    layers: usize,
    heads: usize,
    tokens: usize,
    queries: MapQueries,
}

// One per relevance result: a `Tensor`'s size costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Parts {
    Device(Tensor<1>),
    Host {
        heads_map: Vec<f32>,
        chefer: Vec<f32>,
        fused: Vec<f32>,
    },
}

/// The maps' device half from each layer's attention weights and their
/// gradient ([H, T, T] each, first layer first).
pub fn device_maps(layers: Vec<(Tensor<3>, Tensor<3>)>, q: MapQueries) -> RelevanceTensors {
    let count = layers.len();
    let [h, t, _] = layers[0].0.dims();
    let n = t - q.prefix;
    let mut head_rows = Vec::with_capacity(count);
    let mut chefer_means = Vec::with_capacity(count);
    let mut fused = Vec::with_capacity(count);
    for (weights, gradient) in layers {
        let weighted = (gradient * weights).unsqueeze_dim::<4>(0); // ∇A ⊙ A, [1, H, T, T]
        let positive = weighted.clone().clamp_min(0.0);
        head_rows.push(q.rows(positive.clone()).reshape([h * n]));
        chefer_means.push(positive.mean_dim(1).reshape([1, t, t]));
        fused.push(weighted.mean_dim(1).clamp_min(0.0).reshape([t * t]));
    }
    let chefer = carry_row(chefer_means, q, |r, a| r.clone() + crate::ops::matmul(r, a));
    let mut parts = head_rows;
    parts.push(chefer.reshape([n]));
    parts.extend(fused);
    RelevanceTensors {
        parts: Parts::Device(Tensor::cat(parts, 0)),
        layers: count,
        heads: h,
        tokens: t,
        queries: q,
    }
}

/// [`device_maps`]'s parts made on the host, from attention weights and
/// their gradients the host holds already (the fused CPU path's), each
/// layer [H, T, T] with `heads` heads, first layer first: one pass over
/// each layer, the layers split between the threads.
pub fn host_maps(layers: &[(&[f32], &[f32])], heads: usize, q: MapQueries) -> RelevanceTensors {
    let count = layers.len();
    let tt = layers[0].0.len() / heads;
    let t = tt.isqrt();
    assert!(t * t == tt, "square attention");
    let n = t - q.prefix;
    let mut heads_map = vec![0.0f32; count * heads * n];
    let mut means = vec![0.0f32; count * tt]; // Chefer's: the mean of (∇A ⊙ A)⁺
    let mut fused = vec![0.0f32; count * tt]; // rollout's: (the mean of ∇A ⊙ A)⁺
    // clamp_min(0) as the device's: NaN stays NaN.
    let positive = |w: f32| if w < 0.0 { 0.0 } else { w };
    layers
        .par_iter()
        .zip(heads_map.par_chunks_mut(heads * n))
        .zip(means.par_chunks_mut(tt))
        .zip(fused.par_chunks_mut(tt))
        .for_each(|((((a, g), rows), mean), fused)| {
            // A block of entries at a time, over every head, its sums in L1.
            const BLOCK: usize = 256;
            for start in (0..tt).step_by(BLOCK) {
                let end = (start + BLOCK).min(tt);
                let (mut m, mut f) = ([0.0f32; BLOCK], [0.0f32; BLOCK]);
                for h in 0..heads {
                    let (a, g) = (
                        &a[h * tt + start..h * tt + end],
                        &g[h * tt + start..h * tt + end],
                    );
                    for (((m, f), a), g) in m.iter_mut().zip(f.iter_mut()).zip(a).zip(g) {
                        let w = g * a;
                        *m += positive(w);
                        *f += w;
                    }
                }
                mean[start..end].copy_from_slice(&m[..end - start]);
                fused[start..end].copy_from_slice(&f[..end - start]);
            }
            for h in 0..heads {
                let (a, g) = (&a[h * tt..(h + 1) * tt], &g[h * tt..(h + 1) * tt]);
                let row = &mut rows[h * n..(h + 1) * n];
                if q.class_token {
                    for (r, (a, g)) in row
                        .iter_mut()
                        .zip(a[q.prefix..t].iter().zip(&g[q.prefix..t]))
                    {
                        *r = positive(g * a);
                    }
                } else {
                    for i in q.prefix..t {
                        let (a, g) = (
                            &a[i * t + q.prefix..(i + 1) * t],
                            &g[i * t + q.prefix..(i + 1) * t],
                        );
                        for (r, (a, g)) in row.iter_mut().zip(a.iter().zip(g)) {
                            *r += positive(g * a);
                        }
                    }
                    row.iter_mut().for_each(|r| *r /= n as f32);
                }
            }
            mean.iter_mut().for_each(|m| *m /= heads as f32);
            fused
                .iter_mut()
                .for_each(|f| *f = positive(*f / heads as f32));
        });
    // Chefer's row: r ← r + r·Ā from the last layer down.
    let mut r = start_row(t, q);
    for mean in means.chunks_exact(tt).rev() {
        let mut next = r.clone();
        for (ri, row) in r.iter().zip(mean.chunks_exact(t)) {
            if *ri != 0.0 {
                for (acc, a) in next.iter_mut().zip(row) {
                    *acc += ri * a;
                }
            }
        }
        r = next;
    }
    RelevanceTensors {
        parts: Parts::Host {
            heads_map,
            chefer: r.split_off(q.prefix),
            fused,
        },
        layers: count,
        heads,
        tokens: t,
        queries: q,
    }
}

/// The map row of the product M_L ⋯ M_1 over the patches, [1, N], where
/// `step(r, m_i)` is r·M_i for per-layer matrices `ms` [1, T, T], carried
/// as one row from the last layer down.
fn carry_row(
    ms: Vec<Tensor<3>>,
    q: MapQueries,
    step: impl Fn(Tensor<3>, Tensor<3>) -> Tensor<3>,
) -> Tensor<2> {
    let [_, t, _] = ms[0].dims();
    let device = ms[0].device();
    let start = TensorData::new(start_row(t, q), [1, 1, t]);
    let mut r = Tensor::<3>::from_data(start, &device);
    for m in ms.into_iter().rev() {
        r = step(r, m);
    }
    r.slice([0..1, 0..1, q.prefix..t])
        .reshape([1, t - q.prefix])
}

/// e₀ (the class token's row), or the mean of the patches' rows.
pub(super) fn start_row(t: usize, q: MapQueries) -> Vec<f32> {
    (0..t)
        .map(|j| match (q.class_token, j) {
            (true, 0) => 1.0,
            (false, j) if j >= q.prefix => 1.0 / (t - q.prefix) as f32,
            _ => 0.0,
        })
        .collect()
}

impl RelevanceTensors {
    /// What is to be read back: `None` where the parts are on the host.
    pub fn on_device(&self) -> Option<&Tensor<1>> {
        match &self.parts {
            Parts::Device(flat) => Some(flat),
            Parts::Host { .. } => None,
        }
    }

    /// The host's last step, from the read-back of
    /// [`RelevanceTensors::on_device`] (ignored where there is none):
    /// gradient-weighted rollout with its discard step (a per-layer
    /// selection, done here in float64), beside the heads' maps and
    /// Chefer's map.
    pub fn finish(
        self,
        mut data: Vec<f32>,
        class: usize,
        grid: [usize; 2],
        discard_ratio: f64,
    ) -> RelevanceMaps {
        let (l, h, t) = (self.layers, self.heads, self.tokens);
        let n = t - self.queries.prefix;
        let (heads_map, chefer, mut fused) = match self.parts {
            Parts::Host {
                heads_map,
                chefer,
                fused,
            } => (heads_map, chefer, fused),
            Parts::Device(_) => {
                assert_eq!(data.len(), l * h * n + n + l * t * t, "read-back length");
                let fused = data.split_off(l * h * n + n);
                let chefer = data.split_off(l * h * n);
                (data, chefer, fused)
            }
        };
        RelevanceMaps {
            class,
            layers: l,
            heads: h,
            grid,
            grad_rollout: grad_rollout(&mut fused, t, self.queries, discard_ratio),
            chefer,
            heads_map,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written gradient against central differences of the logit,
    /// nudging single attention weights through the model's probe.
    #[test]
    fn the_attention_gradient_matches_finite_differences() {
        use burn::tensor::{Device, Distribution};
        let device = Device::flex();
        for (name, cfg) in crate::model::testing::variants() {
            let model = crate::model::testing::random_model(&cfg);
            let image =
                Tensor::<4>::random([1, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
            let class = 1;
            let forward = super::super::gradient::forward(&model, image.clone());
            let gradients: Vec<Vec<f32>> =
                super::super::gradient::attention_gradients(&model, &forward, class, cfg.norm_eps)
                    .into_iter()
                    .map(|g| g.into_data().try_to_vec().unwrap())
                    .collect();
            let [h, t, _] = forward.weights()[0].dims();
            let logit = |layer: usize, at: usize, by: f32| -> f64 {
                let mut bump = vec![0.0f32; h * t * t];
                bump[at] = by;
                let bump = Tensor::<4>::from_data(TensorData::new(bump, [1, h, t, t]), &device);
                let tokens = model.encode_probed(
                    model.embed(image.clone()),
                    |i| (i == layer).then(|| bump.clone()),
                    |_, _| {},
                );
                let logits: Vec<f32> = model.forward_head(tokens).into_data().try_to_vec().unwrap();
                f64::from(logits[class])
            };
            // Small enough that the central difference's error (∝ eps²) is
            // far below the bound, large enough that f32 rounding of the
            // logit (divided by 2·eps) is too.
            let eps = 1e-3;
            for (layer, at) in [
                (0, 0),
                (0, t * t + 3),
                (1, 5),
                (1, t + 1),
                (1, h * t * t - 1),
            ] {
                let (up, mid, down) = (
                    logit(layer, at, eps),
                    logit(layer, at, 0.0),
                    logit(layer, at, -eps),
                );
                let numeric = (up - down) / (2.0 * f64::from(eps));
                let analytic = f64::from(gradients[layer][at]);
                let near = |n: f64, tol: f64| (n - analytic).abs() <= tol * (1.0 + analytic.abs());
                // Max pooling has kinks: a nudge that changes which patch is
                // largest leaves the central difference between the two
                // one-sided slopes, and the gradient is one of them.
                let one_sided = [(up - mid) / f64::from(eps), (mid - down) / f64::from(eps)];
                assert!(
                    near(numeric, 2e-3) || one_sided.iter().any(|&n| near(n, 1e-2)),
                    "{name}: layer {layer} entry {at}: finite differences {numeric} \
                     (one-sided {one_sided:?}), by hand {analytic}"
                );
            }
        }
    }

    /// The hand-written gradient is Burn's autodiff's, every entry, on
    /// every kind of model (autodiff comes with the `train` feature).
    #[cfg(feature = "train")]
    #[test]
    fn the_attention_gradient_is_autodiffs() {
        use burn::tensor::{Device, Distribution};
        let device = Device::flex();
        let autodiff = device.clone().autodiff();
        for (name, cfg) in crate::model::testing::variants() {
            let model = crate::model::testing::random_model(&cfg);
            let image =
                Tensor::<4>::random([1, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
            let forward = super::super::gradient::forward(&model, image.clone());
            let [h, t, _] = forward.weights()[0].dims();
            for class in 0..3 {
                let ours = super::super::gradient::attention_gradients(
                    &model,
                    &forward,
                    class,
                    cfg.norm_eps,
                );
                let probes: Vec<Tensor<4>> = (0..cfg.depth)
                    .map(|_| Tensor::<4>::zeros([1, h, t, t], &autodiff).require_grad())
                    .collect();
                let tokens = model.encode_probed(
                    model.embed(image.clone()),
                    |i| Some(probes[i].clone()),
                    |_, _| {},
                );
                let mut grads = model
                    .forward_head(tokens)
                    .slice([0..1, class..class + 1])
                    .sum()
                    .backward();
                for (layer, (probe, mine)) in probes.iter().zip(ours).enumerate() {
                    let want: Vec<f32> = probe
                        .grad_remove(&mut grads)
                        .unwrap()
                        .into_data()
                        .try_to_vec()
                        .unwrap();
                    let got: Vec<f32> = mine.into_data().try_to_vec().unwrap();
                    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let d = got
                        .iter()
                        .zip(&want)
                        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                    assert!(
                        d <= 1e-5 * scale.max(1e-3),
                        "{name}, class {class}, layer {layer}: |by hand - autodiff| {d:e} (largest {scale:e})"
                    );
                }
            }
        }
    }
}
