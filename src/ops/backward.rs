//! The encoder's backward pass on the fused path: from the gradient at the
//! last block's output down to ∂logit/∂A of every layer's attention, over
//! what [`FusedEncoder::encode_keeping`] kept, with the weights read in
//! place. Only gradients with respect to activations are formed. The
//! formulas are those of `explain::gradient` (which runs them in Burn's
//! operations on every other device, and against which a test holds
//! these); per block, with g the gradient reaching its output:
//! - MLP: g_m = g + LN₂ᵀ(fc₁ᵀ(act′(h) ⊙ fc₂ᵀ(s₂ ⊙ g))), act′(h) kept by
//!   the forward pass;
//! - attention, per head, with c the gradient reaching A·V: ∇A = c·Vᵀ
//!   (recorded), ∇V = Aᵀ·c, ∇S = A ⊙ (∇A − rowsum(∇A ⊙ A)),
//!   ∇Q = ∇S·K/√d, ∇K = ∇Sᵀ·Q/√d, then QK norm's and the projection's;
//! - LayerNorm: ∇x = (ĝ − mean(ĝ) − x̂·mean(ĝ ⊙ x̂))/σ, ĝ = γ ⊙ g.

#[cfg(not(target_arch = "wasm32"))]
use rayon::{current_num_threads, prelude::*};

use super::attention::{SendPtr, product, product_at};
use super::encoder::{BlockWeights, Dense, FusedEncoder};
use super::host::{Values, Weight};
use super::keep::{BlockKeep, Kept};
use super::norm::{Norm, lane_sum};
#[cfg(target_arch = "wasm32")]
use super::serial::*;

impl Dense {
    /// `out` = `g`·Wᵀ for the rows of `g` (`outputs` wide), on this
    /// thread: the gradient reaching the layer's input. With `wt`, W's
    /// transpose [outputs, inputs], the product is the forward pass's own
    /// (the right operand read by rows); without, W is read by columns.
    /// `None` for a weight kept in f16.
    fn back(&self, g: &[f32], out: &mut [f32], wt: Option<&[f32]>) -> Option<()> {
        let Weight::F32(w) = &self.weight else {
            return None;
        };
        let (n, k) = (self.weight.len() / self.outputs, self.outputs);
        let m = g.len() / k;
        assert!(g.len() == m * k && out.len() == m * n, "dense back: shapes");
        assert!(wt.is_none_or(|wt| wt.len() == n * k), "dense back: Wᵀ");
        // SAFETY: g is [m, k], W [n, k] and Wᵀ [k, n] row-major, out
        // [m, n], as just checked.
        unsafe {
            match wt {
                Some(wt) => product(
                    m,
                    n,
                    k,
                    out.as_mut_ptr(),
                    n,
                    false,
                    g.as_ptr(),
                    k,
                    wt.as_ptr(),
                    n,
                    1,
                    1.0,
                ),
                None => product_wt(m, n, k, out.as_mut_ptr(), g.as_ptr(), w.get().as_ptr()),
            }
        };
        Some(())
    }

    /// W's transpose, [outputs, inputs] row-major (`None` for f16).
    fn transposed(&self) -> Option<Vec<f32>> {
        let Weight::F32(w) = &self.weight else {
            return None;
        };
        let (w, k) = (w.get(), self.outputs);
        let n = w.len() / k;
        let mut wt = vec![0.0; w.len()];
        // In bands of rows of Wᵀ, each filled tile by tile, so that what is
        // read of W stays in cache.
        const TILE: usize = 64;
        wt.par_chunks_mut(TILE * n)
            .enumerate()
            .for_each(|(band, out)| {
                let p0 = band * TILE;
                let rows = out.len() / n;
                for j0 in (0..n).step_by(TILE) {
                    for j in j0..(j0 + TILE).min(n) {
                        let from = &w[j * k + p0..j * k + p0 + rows];
                        for (p, v) in from.iter().enumerate() {
                            out[p * n + j] = *v;
                        }
                    }
                }
            });
        Some(wt)
    }
}

/// One block's weight matrices transposed, for the backward pass: qkv,
/// proj, fc₁, fc₂.
pub(super) type Transposed = [Vec<f32>; 4];

impl Norm {
    /// The gradient reaching the norm's input rows `x` (as wide as γ) from
    /// `g` at its output, in place of `g`.
    fn back(&self, x: &[f32], g: &mut [f32]) {
        let gamma = self.gamma.get();
        for (x, g) in x
            .chunks_exact(gamma.len())
            .zip(g.chunks_exact_mut(gamma.len()))
        {
            layer_norm_row_back(x, gamma, self.eps, g);
        }
    }
}

fn layer_norm_row_back(x: &[f32], gamma: &[f32], eps: f32, g: &mut [f32]) {
    let n = x.len() as f32;
    let mean = lane_sum(x, |v| v) / n;
    let var = lane_sum(x, |v| (v - mean) * (v - mean)) / n;
    let inv = 1.0 / (var + eps).sqrt();
    for (g, gamma) in g.iter_mut().zip(gamma) {
        *g *= gamma;
    }
    let mean_g = lane_sum(g, |v| v) / n;
    let (chunks, rest) = g.as_chunks::<16>();
    let (xs, x_rest) = x.as_chunks::<16>();
    let mut lanes = [0.0f32; 16];
    for (g, x) in chunks.iter().zip(xs) {
        for ((l, g), x) in lanes.iter_mut().zip(g).zip(x) {
            *l += g * (x - mean);
        }
    }
    let tail: f32 = rest.iter().zip(x_rest).map(|(g, x)| g * (x - mean)).sum();
    let mean_gx = (lanes.iter().sum::<f32>() + tail) * inv / n;
    for (g, x) in g.iter_mut().zip(x) {
        *g = (*g - mean_g - (x - mean) * inv * mean_gx) * inv;
    }
}

impl FusedEncoder {
    /// Whether [`FusedEncoder::attention_gradients`] can run: every weight
    /// matrix in f32 (one kept in f16 leaves it to Burn's operations).
    pub fn can_go_back(&self) -> bool {
        self.blocks.iter().all(|b| {
            [&b.qkv, &b.proj, &b.fc1, &b.fc2]
                .iter()
                .all(|d| matches!(d.weight, Weight::F32(_)))
        })
    }

    /// The bytes of the weight matrices' transposes that
    /// [`FusedEncoder::attention_gradients`] keeps when asked to.
    pub fn transposed_bytes(&self) -> u64 {
        let matrices =
            |b: &BlockWeights| [&b.qkv, &b.proj, &b.fc1, &b.fc2].map(|d| d.weight.len() as u64);
        self.blocks
            .iter()
            .map(|b| matrices(b).iter().sum::<u64>())
            .sum::<u64>()
            * 4
    }

    /// ∂logit/∂A of every layer, [H, T, T] each, first layer first, for
    /// one image whose forward pass `kept` holds; `g` is the gradient at
    /// the last block's output [T, D]. With `transpose`, the weight
    /// matrices' transposes are made (once; [`FusedEncoder::transposed_bytes`])
    /// and kept, so that every product reads its right operand by rows as
    /// the forward pass does; without, those already made are used, else
    /// the weights are read by columns (slower where a matrix is wide).
    /// `None` where a weight is kept in f16 (the operations' backward runs
    /// then).
    pub fn attention_gradients(
        &self,
        kept: &Kept,
        g: Vec<f32>,
        transpose: bool,
    ) -> Option<Vec<Vec<f32>>> {
        // On one of rayon's threads, as the forward pass (`run`).
        #[cfg(not(target_arch = "wasm32"))]
        return rayon::scope(|_| self.gradients_here(kept, g, transpose));
        #[cfg(target_arch = "wasm32")]
        self.gradients_here(kept, g, transpose)
    }

    fn gradients_here(
        &self,
        kept: &Kept,
        mut g: Vec<f32>,
        transpose: bool,
    ) -> Option<Vec<Vec<f32>>> {
        let first = self.blocks.first()?;
        if !self.can_go_back() {
            return None;
        }
        let transposed = if transpose {
            self.transposed
                .get_or_init(|| {
                    self.blocks
                        .iter()
                        .map(|b| {
                            Some([
                                b.qkv.transposed()?,
                                b.proj.transposed()?,
                                b.fc1.transposed()?,
                                b.fc2.transposed()?,
                            ])
                        })
                        .collect()
                })
                .as_ref()
        } else {
            self.transposed.get().and_then(Option::as_ref)
        };
        let weights_t = |i: usize| match transposed {
            Some(all) => all[i].each_ref().map(|w| Some(w.as_slice())),
            None => [None; 4],
        };
        let d = first.norm1.gamma.get().len();
        let t = g.len() / d;
        let (heads, hidden) = (first.heads, first.fc1.outputs);
        let mut rows = Rows {
            g_context: vec![0.0; t * d],
            g_qkv: vec![0.0; t * 3 * d],
            scaled: vec![0.0; t * d],
            hidden: vec![0.0; t * hidden],
            normed: vec![0.0; t * d],
            width: [d, hidden],
        };
        let mut scratch_s = vec![0.0; heads * t * t];
        let mut gradients = Vec::with_capacity(self.blocks.len());
        // Rows of g from `live` on are 0 (in the last block, all but those
        // the head pools): the last block's branches run on the live rows.
        let live = t - g
            .chunks_exact(d)
            .rev()
            .take_while(|r| r.iter().all(|&v| v == 0.0))
            .count();
        let mut live = live.max(1);
        let last = self.blocks.len() - 1;
        rows.each(&mut g, live, |r, g, first| {
            r.mlp_back(
                &self.blocks[last],
                &kept.blocks[last],
                g,
                first,
                weights_t(last),
            )
        })?;
        for (i, (block, keep)) in self.blocks.iter().zip(&kept.blocks).enumerate().rev() {
            let mut g_weights = self.spare.take(heads * t * t);
            heads_back(
                keep,
                &rows.g_context,
                &mut g_weights,
                (i > 0).then_some(&mut rows.g_qkv[..]),
                &mut scratch_s,
                live,
                [t, d, heads],
            );
            gradients.push(g_weights);
            if i == 0 {
                break; // nothing below the first block's attention is needed
            }
            // Down through this block's projection and norm, then the block
            // below's MLP branch and projection, row by row.
            let below = i - 1;
            rows.each(&mut g, t, |r, g, first| {
                r.qkv_back(block, keep, g, first, weights_t(i)[0])?;
                r.mlp_back(
                    &self.blocks[below],
                    &kept.blocks[below],
                    g,
                    first,
                    weights_t(below),
                )
            })?;
            live = t;
        }
        gradients.reverse();
        Some(gradients)
    }

    /// Gradients from [`FusedEncoder::attention_gradients`], done with:
    /// their buffers serve the next backward pass.
    pub fn give_back(&self, gradients: Vec<Vec<f32>>) {
        for g in gradients {
            self.spare.give(g);
        }
    }
}

/// The backward pass's row-wise buffers, [T, width] each, and the rows of
/// them one chunk works on.
struct Rows<T> {
    /// The gradient reaching attention's output (A·V, heads side by side).
    g_context: T,
    /// The gradient reaching the queries, keys and values, [T, 3D].
    g_qkv: T,
    scaled: T,
    hidden: T,
    normed: T,
    /// D and the MLP's hidden width.
    width: [usize; 2],
}

impl Rows<Vec<f32>> {
    /// `step` on each of a few chunks of the first `n` rows of every
    /// buffer and of `g` [T, D], one per thread, given the chunk's rows and
    /// its first row's index.
    fn each(
        &mut self,
        g: &mut [f32],
        n: usize,
        step: impl Fn(&mut Rows<&mut [f32]>, &mut [f32], usize) -> Option<()> + Sync,
    ) -> Option<()> {
        let [d, hidden] = self.width;
        let chunk = n.div_ceil(current_num_threads().max(1)).max(1);
        g[..n * d]
            .par_chunks_mut(chunk * d)
            .zip(self.g_context.par_chunks_mut(chunk * d))
            .zip(self.g_qkv.par_chunks_mut(chunk * 3 * d))
            .zip(self.scaled.par_chunks_mut(chunk * d))
            .zip(self.hidden.par_chunks_mut(chunk * hidden))
            .zip(self.normed.par_chunks_mut(chunk * d))
            .enumerate()
            .try_for_each(
                |(c, (((((g, g_context), g_qkv), scaled), hidden_rows), normed))| {
                    let m = g.len() / d;
                    let mut r = Rows {
                        g_context: &mut g_context[..m * d],
                        g_qkv: &mut g_qkv[..m * 3 * d],
                        scaled: &mut scaled[..m * d],
                        hidden: &mut hidden_rows[..m * hidden],
                        normed: &mut normed[..m * d],
                        width: [d, hidden],
                    };
                    step(&mut r, g, c * chunk)
                },
            )
    }
}

impl Rows<&mut [f32]> {
    /// g at a block's output → g at x + attention (in place), and the
    /// gradient reaching attention's output: g_mid = g + LN₂ᵀ(fc₁ᵀ(act′ ⊙
    /// fc₂ᵀ(s₂ ⊙ g))), then g_context = projᵀ(s₁ ⊙ g_mid).
    fn mlp_back(
        &mut self,
        block: &BlockWeights,
        keep: &BlockKeep,
        g: &mut [f32],
        first: usize,
        [_, proj_t, fc1_t, fc2_t]: [Option<&[f32]>; 4],
    ) -> Option<()> {
        let [d, hidden] = self.width;
        let m = g.len() / d;
        let (rows_d, rows_h) = (
            first * d..(first + m) * d,
            first * hidden..(first + m) * hidden,
        );
        block.fc2.back(
            scaled(g, block.ls2.as_ref(), self.scaled),
            self.hidden,
            fc2_t,
        )?;
        for (g, s) in self.hidden.iter_mut().zip(&keep.slope[rows_h]) {
            *g *= s;
        }
        block.fc1.back(self.hidden, self.normed, fc1_t)?;
        block.norm2.back(&keep.mid[rows_d], self.normed);
        for (g, b) in g.iter_mut().zip(&*self.normed) {
            *g += b;
        }
        block.proj.back(
            scaled(g, block.ls1.as_ref(), self.scaled),
            self.g_context,
            proj_t,
        )
    }

    /// g at x + attention → g at the block's input, in place: g +=
    /// LN₁ᵀ(qkvᵀ(∇Q, ∇K, ∇V)), through QK norm where the block has it.
    fn qkv_back(
        &mut self,
        block: &BlockWeights,
        keep: &BlockKeep,
        g: &mut [f32],
        first: usize,
        qkv_t: Option<&[f32]>,
    ) -> Option<()> {
        let d = self.width[0];
        let input = &keep.input[first * d..first * d + g.len()];
        if let (Some(q), Some(k)) = (&block.q_norm, &block.k_norm) {
            qk_norm_back(block, q, k, input, self.g_qkv, self.normed);
        }
        block.qkv.back(self.g_qkv, self.normed, qkv_t)?;
        block.norm1.back(input, self.normed);
        for (g, b) in g.iter_mut().zip(&*self.normed) {
            *g += b;
        }
        Some(())
    }
}

/// `g` ⊙ the layer scale γ (each row), in `out`; `g` itself without one.
fn scaled<'a>(g: &'a [f32], gamma: Option<&Values>, out: &'a mut [f32]) -> &'a [f32] {
    let Some(gamma) = gamma else { return g };
    let gamma = gamma.get();
    for (o, g) in out
        .chunks_exact_mut(gamma.len())
        .zip(g.chunks_exact(gamma.len()))
    {
        for ((o, g), s) in o.iter_mut().zip(g).zip(gamma) {
            *o = g * s;
        }
    }
    out
}

/// ∇A = c·Vᵀ into `g_weights` [H, T, T]; and, when `g_qkv` is given, ∇Q,
/// ∇K, ∇V into each head's columns of it ([T, 3D]). In two passes, each
/// split between the threads by head and by rows, so that a few heads
/// (three in ViT-Ti) still keep every thread busy: first by rows of
/// queries (∇A, ∇S = A ⊙ (∇A − rowsum(∇A ⊙ A)), ∇Q = ∇S·K/√d), then,
/// once every row of ∇S is there, by rows of keys (∇V = Aᵀ·c,
/// ∇K = ∇Sᵀ·Q/√d). Rows of `g_context` from `live` on are 0 (the last
/// block's, below a class token's pooling), and so are those rows of ∇A
/// (written here: the buffer may be an earlier pass's), ∇S (never read)
/// and ∇Q (left as they are, 0); Aᵀ·c and ∇Sᵀ·Q sum over the live rows
/// alone.
fn heads_back(
    keep: &BlockKeep,
    g_context: &[f32],
    g_weights: &mut [f32],
    g_qkv: Option<&mut [f32]>,
    scratch_s: &mut [f32],
    live: usize,
    [t, d, heads]: [usize; 3],
) {
    let hd = d / heads;
    let scale = (hd as f64).powf(-0.5) as f32;
    let row = 3 * d;
    let out = g_qkv.map(|g| SendPtr(g.as_mut_ptr()));
    let qkv = &keep.qkv;
    let attention = Values::of(keep.weights.clone()).expect("kept weights are f32 on the CPU");
    let a_all = attention.get();
    // Row chunks per head: enough tasks for every thread.
    let parts = (2 * current_num_threads())
        .div_ceil(heads)
        .clamp(1, t.max(1));
    let rows = t.div_ceil(parts);
    let tasks = |len: usize| {
        (0..heads * parts).map(move |task| {
            let (h, part) = (task / parts, task % parts);
            let r0 = (part * rows).min(len);
            (h, r0, (r0 + rows).min(len))
        })
    };
    // ∇S: every live row is written before it is read.
    let gs_all = &mut scratch_s[..if out.is_some() { heads * t * t } else { 0 }];
    let gw = SendPtr(g_weights.as_mut_ptr());
    let gs_ptr = SendPtr(gs_all.as_mut_ptr());
    for head in g_weights.chunks_exact_mut(t * t) {
        head[live * t..].fill(0.0);
    }
    let first: Vec<_> = tasks(live).collect();
    first.into_par_iter().for_each(|(h, r0, r1)| {
        let m = r1 - r0;
        if m == 0 {
            return;
        }
        // SAFETY: every pointer and stride stays inside g_context [T, D],
        // qkv [T, 3D], A and ∇A [H, T, T] and ∇S [H, T, T]; each task writes
        // only rows r0..r1 of its head's ∇A, ∇S and ∇Q columns.
        unsafe {
            let c = g_context.as_ptr().add(r0 * d + h * hd);
            let v = qkv.as_ptr().add(2 * d + h * hd);
            let ga = gw.rows((h * t + r0) * t, m * t);
            // ∇A = c·Vᵀ: Vᵀ's (p, j) is token j's value p.
            product(m, t, hd, ga.as_mut_ptr(), t, false, c, d, v, 1, row, 1.0);
            let Some(out) = out else { return };
            let a = &a_all[(h * t + r0) * t..(h * t + r1) * t];
            let gs = gs_ptr.rows((h * t + r0) * t, m * t);
            for ((gs, ga), a) in gs
                .chunks_exact_mut(t)
                .zip(ga.chunks_exact(t))
                .zip(a.chunks_exact(t))
            {
                let dot: f32 = ga.iter().zip(a).map(|(g, a)| g * a).sum();
                for ((s, g), a) in gs.iter_mut().zip(ga).zip(a) {
                    *s = a * (g - dot);
                }
            }
            // ∇Q = ∇S·K/√d.
            let k = qkv.as_ptr().add(d + h * hd);
            let gq = out.0.add(r0 * row + h * hd);
            product(m, hd, t, gq, row, false, gs.as_ptr(), t, k, row, 1, scale);
        }
    });
    let Some(out) = out else { return };
    let second: Vec<_> = tasks(t).collect();
    second.into_par_iter().for_each(|(h, j0, j1)| {
        let m = j1 - j0;
        if m == 0 {
            return;
        }
        #[allow(clippy::redundant_locals)]
        let out = out; // the whole pointer, which is Sync, not its field
        // SAFETY: as above; each task writes only rows j0..j1 of its
        // head's ∇V and ∇K columns. Rows j0..j1 of Aᵀ and ∇Sᵀ are columns
        // j0..j1 of this head's A and ∇S, of which the live rows count.
        unsafe {
            let c = g_context.as_ptr().add(h * hd);
            let q = qkv.as_ptr().add(h * hd);
            let a = a_all.as_ptr().add(h * t * t + j0);
            let gs = gs_all.as_ptr().add(h * t * t + j0);
            // ∇V = Aᵀ·c, ∇K = ∇Sᵀ·Q/√d.
            let gv = out.0.add(j0 * row + 2 * d + h * hd);
            product_at(m, hd, live, gv, row, a, t, c, d, 1, 1.0);
            let gk = out.0.add(j0 * row + d + h * hd);
            product_at(m, hd, live, gk, row, gs, t, q, row, 1, scale);
        }
    });
}

/// out [m, n] = g [m, k]·Wᵀ for W [n, k] row-major (a layer's weight in
/// Burn's [inputs, outputs] layout, read backwards).
///
/// # Safety
/// Each buffer holds at least the values its shape says; out overlaps
/// neither g nor W.
#[cfg(not(target_arch = "wasm32"))]
unsafe fn product_wt(m: usize, n: usize, k: usize, out: *mut f32, g: *const f32, w: *const f32) {
    // As outᵀ [n, m] = W·gᵀ: the weight, the large operand, read by rows.
    unsafe {
        gemm::gemm(
            n,
            m,
            k,
            out,
            n as isize,
            1,
            false,
            w,
            1,
            k as isize,
            g,
            k as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// [`product_wt`] in the browser: vitrine's kernel over Wᵀ.
#[cfg(target_arch = "wasm32")]
unsafe fn product_wt(m: usize, n: usize, k: usize, out: *mut f32, g: *const f32, w: *const f32) {
    // SAFETY: as the caller's; Wᵀ's (p, j) is W's (j, p), at j·k + p.
    unsafe { product(m, n, k, out, n, false, g, k, w, 1, k, 1.0) }
}

/// Through QK norm: the gradients of Q and K in `g_qkv` (some rows)
/// taken back to the projection's output, recomputed from those rows of
/// the block's input (`normed` is scratch as wide as the input).
fn qk_norm_back(
    block: &BlockWeights,
    q: &Norm,
    k: &Norm,
    input: &[f32],
    g_qkv: &mut [f32],
    normed: &mut [f32],
) {
    let d = q.gamma.get().len() * block.heads;
    let mut raw = vec![0.0; g_qkv.len()];
    block.norm1.rows(input, normed);
    block.qkv.forward(normed, &mut raw);
    for (raw, g) in raw.chunks_exact(3 * d).zip(g_qkv.chunks_exact_mut(3 * d)) {
        q.back(&raw[..d], &mut g[..d]);
        k.back(&raw[d..2 * d], &mut g[d..2 * d]);
    }
}
