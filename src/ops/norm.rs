//! LayerNorm on the fused kernels' rows: the weights read in place, and
//! the sums (mean, variance) in sixteen lanes that vectorise.

use burn::nn::LayerNorm;

use super::host::Values;

/// A LayerNorm's γ, β and ε, read in place from the model.
pub(super) struct Norm {
    pub(super) gamma: Values,
    beta: Option<Values>,
    pub(super) eps: f32,
}

impl Norm {
    pub(super) fn of(norm: &LayerNorm, eps: f64) -> Option<Self> {
        Some(Self {
            gamma: Values::of(norm.gamma.val())?,
            beta: match &norm.beta {
                Some(b) => Some(Values::of(b.val())?),
                None => None,
            },
            eps: eps as f32,
        })
    }

    /// `out` = LayerNorm of each row of `x` (rows as wide as gamma).
    pub(super) fn rows(&self, x: &[f32], out: &mut [f32]) {
        let gamma = self.gamma.get();
        let beta = self.beta.as_ref().map(Values::get);
        for (x, out) in x
            .chunks_exact(gamma.len())
            .zip(out.chunks_exact_mut(gamma.len()))
        {
            layer_norm_row(x, gamma, beta, self.eps, out);
        }
    }

    /// LayerNorm of each `width`-wide segment at `offset` of every row of
    /// `rows` (one head's queries or keys in a row of the projections).
    pub(super) fn segments(&self, rows: &mut [f32], row: usize, offset: usize, heads: usize) {
        let gamma = self.gamma.get();
        let beta = self.beta.as_ref().map(Values::get);
        let width = gamma.len();
        let mut scratch = vec![0.0; width];
        for r in rows.chunks_exact_mut(row) {
            for h in 0..heads {
                let seg = &mut r[offset + h * width..offset + (h + 1) * width];
                layer_norm_row(seg, gamma, beta, self.eps, &mut scratch);
                seg.copy_from_slice(&scratch);
            }
        }
    }
}

/// LayerNorm of one row, as Burn's: (x − mean)/√(var + eps)·γ + β, the
/// variance the biased one; sums in sixteen lanes.
fn layer_norm_row(x: &[f32], gamma: &[f32], beta: Option<&[f32]>, eps: f32, out: &mut [f32]) {
    let n = x.len() as f32;
    let mean = lane_sum(x, |v| v) / n;
    let var = lane_sum(x, |v| (v - mean) * (v - mean)) / n;
    let inv = 1.0 / (var + eps).sqrt();
    match beta {
        Some(beta) => {
            for (((o, v), g), b) in out.iter_mut().zip(x).zip(gamma).zip(beta) {
                *o = (v - mean) * inv * g + b;
            }
        }
        None => {
            for ((o, v), g) in out.iter_mut().zip(x).zip(gamma) {
                *o = (v - mean) * inv * g;
            }
        }
    }
}

/// Σ f(v) over `x`, in sixteen partial sums (which vectorise).
#[inline(always)]
pub(super) fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let (chunks, rest) = x.as_chunks::<16>();
    let mut lanes = [0.0f32; 16];
    for c in chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l += f(*v);
        }
    }
    lanes.iter().sum::<f32>() + rest.iter().map(|v| f(*v)).sum::<f32>()
}
