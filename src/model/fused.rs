//! The encoder's blocks on Burn's CPU device, fused: the same arithmetic
//! as [`super::Block::forward`], written over the model's own weight
//! buffers in two passes per block instead of Burn's ~25 operations.
//!
//! Burn's flex backend runs each operation of a block on its own, and on
//! small models that costs more than the arithmetic: every LayerNorm,
//! reshape, permutation and residual add is a pass over memory and a
//! parallel region that wakes and parks the worker threads (15% of a
//! ViT-Tiny forward pass at two threads, with 9% packing and 4% copies;
//! docs/performance.md). Here each block is two parallel regions:
//! - the rows of tokens, split between the threads: the residual adds,
//!   LayerNorms, the MLP, and the next block's query/key/value projection
//!   all happen in one pass over a chunk of rows;
//! - attention, split by image, head and chunk of query rows: scores,
//!   softmax and the mixing of the values, read from and written to the
//!   projections' buffers in place (no head is ever copied out).
//!
//! Natively the matrix products are the `gemm` crate's (Burn's own CPU
//! kernels, with AVX-512 or AVX2 chosen at run time), one thread each; in
//! the browser's single-threaded build they are vitrine's
//! ([`crate::ops::matmul::gemm_add`]) and the parallel loops run one after
//! another. Softmax and GELU are [`crate::ops::kernels`]'. Weight matrices
//! kept in f16 go through vitrine's kernel on every target, widened as it
//! packs them. It runs only where every weight is an f32 (or, for the
//! matrices, f16) buffer on Burn's plain CPU device (no autodiff) and every
//! block has the same sizes; anything else (WebGPU, training) keeps Burn's
//! operations.

use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Tensor, TensorData};
#[cfg(not(target_arch = "wasm32"))]
use rayon::{current_num_threads, prelude::*};
#[cfg(target_arch = "wasm32")]
use serial::*;

use super::block::{Block, LayerScale};
use super::vit::{LookAttention, VisionTransformer};
use crate::ops::host::{Values, Weight};
use crate::ops::kernels::{gelu_in_place, softmax_rows};
use crate::ops::matmul::gemm_add;

struct Norm {
    gamma: Values,
    beta: Option<Values>,
    eps: f32,
}

impl Norm {
    fn of(norm: &LayerNorm, eps: f64) -> Option<Self> {
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
    fn rows(&self, x: &[f32], out: &mut [f32]) {
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
    fn segments(&self, rows: &mut [f32], row: usize, offset: usize, heads: usize) {
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

struct Dense {
    /// [inputs, outputs], Burn's layout: f32, or f16 as the file held it.
    weight: Weight,
    bias: Option<Values>,
    outputs: usize,
}

impl Dense {
    fn of(layer: &Linear) -> Option<Self> {
        let [_, outputs] = layer.weight.val().dims();
        Some(Self {
            weight: Weight::of(layer.weight.val())?,
            bias: match &layer.bias {
                Some(b) => Some(Values::of(b.val())?),
                None => None,
            },
            outputs,
        })
    }

    /// `out` = `x`·W + b for the rows of `x` (`out`'s rows `outputs` wide).
    fn forward(&self, x: &[f32], out: &mut [f32]) {
        match &self.bias {
            Some(b) => out
                .chunks_exact_mut(self.outputs)
                .for_each(|r| r.copy_from_slice(b.get())),
            None => out.fill(0.0),
        }
        self.accumulate(x, out);
    }

    /// `out` += `x`·W.
    fn accumulate(&self, x: &[f32], out: &mut [f32]) {
        let (n, k) = (self.outputs, self.weight.len() / self.outputs);
        let m = x.len() / k;
        assert!(x.len() == m * k && out.len() == m * n, "dense: shapes");
        match &self.weight {
            // SAFETY: x is [m, k], w [k, n] and out [m, n], all row-major,
            // as just checked.
            Weight::F32(w) => unsafe {
                product(
                    m,
                    n,
                    k,
                    out.as_mut_ptr(),
                    n,
                    true,
                    x.as_ptr(),
                    k,
                    w.get().as_ptr(),
                    n,
                    1,
                    1.0,
                )
            },
            // Halves are widened as vitrine's kernel packs them, on every
            // target (the gemm crate takes one precision throughout).
            Weight::F16(_) => gemm_add(m, k, n, x, k, self.weight.rhs(), n, out, n),
        }
    }

    /// `x` += (`scratch` = `input`·W + b), times the layer scale if any.
    fn residual(&self, input: &[f32], x: &mut [f32], scale: Option<&Values>, scratch: &mut [f32]) {
        match scale {
            Some(gamma) => {
                self.forward(input, scratch);
                let gamma = gamma.get();
                for (x, s) in x
                    .chunks_exact_mut(gamma.len())
                    .zip(scratch.chunks_exact(gamma.len()))
                {
                    for ((x, s), g) in x.iter_mut().zip(s).zip(gamma) {
                        *x += s * g;
                    }
                }
            }
            None => {
                // The bias first, then the product onto the sum (as Burn's
                // `x + (input·W + b)` up to the order of the additions).
                if let Some(b) = &self.bias {
                    for r in x.chunks_exact_mut(self.outputs) {
                        r.iter_mut().zip(b.get()).for_each(|(x, b)| *x += b);
                    }
                }
                self.accumulate(input, x);
            }
        }
    }
}

struct BlockWeights {
    norm1: Norm,
    qkv: Dense,
    q_norm: Option<Norm>,
    k_norm: Option<Norm>,
    proj: Dense,
    ls1: Option<Values>,
    norm2: Norm,
    fc1: Dense,
    fc2: Dense,
    ls2: Option<Values>,
    quick_gelu: bool,
    heads: usize,
}

impl BlockWeights {
    fn of(block: &Block, eps: f64) -> Option<Self> {
        let scale = |ls: &Option<LayerScale>| -> Option<Option<Values>> {
            match ls {
                Some(ls) => Values::of(ls.gamma.val()).map(Some),
                None => Some(None),
            }
        };
        let attn = &block.attn;
        let qk_norm = match (&attn.q_norm, &attn.k_norm) {
            (Some(q), Some(k)) => (Some(Norm::of(q, eps)?), Some(Norm::of(k, eps)?)),
            (None, None) => (None, None),
            _ => return None,
        };
        Some(Self {
            norm1: Norm::of(&block.norm1, eps)?,
            qkv: Dense::of(&attn.qkv)?,
            q_norm: qk_norm.0,
            k_norm: qk_norm.1,
            proj: Dense::of(&attn.proj)?,
            ls1: scale(&block.ls1)?,
            norm2: Norm::of(&block.norm2, eps)?,
            fc1: Dense::of(&block.mlp.fc1)?,
            fc2: Dense::of(&block.mlp.fc2)?,
            ls2: scale(&block.ls2)?,
            quick_gelu: block.mlp.quick_gelu,
            heads: attn.num_heads,
        })
    }

    /// LayerNorm, then the query/key/value projection (and `qk_norm`) of
    /// some rows: `x` → `normed` → `qkv`.
    fn project(&self, x: &[f32], normed: &mut [f32], qkv: &mut [f32]) {
        self.norm1.rows(x, normed);
        self.qkv.forward(normed, qkv);
        if let (Some(q), Some(k)) = (&self.q_norm, &self.k_norm) {
            let d = x.len() / (qkv.len() / self.qkv.outputs);
            q.segments(qkv, 3 * d, 0, self.heads);
            k.segments(qkv, 3 * d, d, self.heads);
        }
    }

    /// The rest of the block on some rows, after attention: `x` +=
    /// proj(`context`), then `x` += MLP(LayerNorm(`x`)).
    fn finish(&self, x: &mut [f32], context: &[f32], rows: &mut Scratch) {
        self.proj
            .residual(context, x, self.ls1.as_ref(), rows.normed);
        self.norm2.rows(x, rows.normed);
        self.fc1.forward(rows.normed, rows.hidden);
        if self.quick_gelu {
            // timm's QuickGELU: x · sigmoid(1.702 x).
            for v in rows.hidden.iter_mut() {
                *v *= 1.0 / (1.0 + (-1.702 * *v).exp());
            }
        } else {
            gelu_in_place(rows.hidden);
        }
        self.fc2
            .residual(rows.hidden, x, self.ls2.as_ref(), rows.normed);
    }
}

/// One chunk of rows' working memory.
struct Scratch<'a> {
    normed: &'a mut [f32],
    hidden: &'a mut [f32],
}

/// The encoder's weights, borrowed, when the fused path can run them.
pub(super) struct Fused {
    blocks: Vec<BlockWeights>,
    norm: Option<Norm>,
}

impl Fused {
    /// `None` unless `model` lives on the plain CPU device in f32 (or its
    /// matrices in f16) and its
    /// blocks all have the same sizes: then Burn's own operations run it.
    pub(super) fn of(model: &VisionTransformer) -> Option<Self> {
        let first = model.blocks.first()?;
        if !crate::ops::kernels::is_plain_cpu(&first.norm1.gamma.val().device()) {
            return None;
        }
        let eps = model.norm_eps;
        let fused = Self {
            blocks: model
                .blocks
                .iter()
                .map(|b| BlockWeights::of(b, eps))
                .collect::<Option<_>>()?,
            norm: match &model.norm {
                Some(n) => Some(Norm::of(n, eps)?),
                None => None,
            },
        };
        fused.sizes_agree().then_some(fused)
    }

    /// Every block as wide as the first, with the same heads and MLP width,
    /// none of them zero (the buffers of `encode` are sized from the first).
    fn sizes_agree(&self) -> bool {
        let first = &self.blocks[0];
        let d = first.norm1.gamma.get().len();
        let (heads, hidden) = (first.heads, first.fc1.outputs);
        let head_norm =
            |n: &Option<Norm>| n.as_ref().is_none_or(|n| n.gamma.get().len() == d / heads);
        d > 0
            && heads > 0
            && hidden > 0
            && d.is_multiple_of(heads)
            && self.norm.as_ref().is_none_or(|n| n.gamma.get().len() == d)
            && self.blocks.iter().all(|w| {
                w.norm1.gamma.get().len() == d
                    && w.norm2.gamma.get().len() == d
                    && w.heads == heads
                    && w.qkv.outputs == 3 * d
                    && w.proj.outputs == d
                    && w.fc1.outputs == hidden
                    && w.fc2.outputs == d
                    && w.ls1.as_ref().is_none_or(|g| g.get().len() == d)
                    && w.ls2.as_ref().is_none_or(|g| g.get().len() == d)
                    && head_norm(&w.q_norm)
                    && head_norm(&w.k_norm)
            })
    }

    /// tokens [B, T, D] → the final norm's output [B, T, D]; `look(i, A)`
    /// sees block i's attention weights [B, heads, T, T] when given.
    pub(super) fn encode(&self, tokens: Tensor<3>, mut look: Option<LookAttention>) -> Tensor<3> {
        let device = tokens.device();
        let [b, t, d] = tokens.dims();
        let first = &self.blocks[0];
        assert_eq!(
            first.norm1.gamma.get().len(),
            d,
            "tokens as wide as the model"
        );
        let (hidden_width, heads) = (first.fc1.outputs, first.heads);
        let rows = b * t;
        if rows == 0 {
            // No tokens: nothing to compute, but each block is still seen.
            if let Some(look) = look.as_mut() {
                for i in 0..self.blocks.len() {
                    look(i, &Tensor::zeros([b, heads, t, t], &device));
                }
            }
            return tokens;
        }
        let mut x = crate::ops::kernels::f32_values(tokens);
        let mut normed = vec![0.0; rows * d];
        let mut qkv = vec![0.0; rows * 3 * d];
        let mut context = vec![0.0; rows * d];
        let mut hidden = vec![0.0; rows * hidden_width];
        let mut scores = Vec::new();

        // Chunks of rows: one per thread, smaller (≤ 256 rows) for big batches.
        let threads = current_num_threads().max(1);
        let chunks = threads * rows.div_ceil(threads * 256).max(1);
        let chunk = rows.div_ceil(chunks).max(1);

        x.par_chunks(chunk * d)
            .zip(normed.par_chunks_mut(chunk * d))
            .zip(qkv.par_chunks_mut(chunk * 3 * d))
            .for_each(|((x, normed), qkv)| first.project(x, normed, qkv));
        for (i, block) in self.blocks.iter().enumerate() {
            let len = b * heads * t * t;
            let mut weights = match look {
                Some(_) => vec![0.0; len],
                None => std::mem::take(&mut scores),
            };
            weights.resize(len, 0.0);
            attention(&qkv, &mut weights, &mut context, [b, t, d], heads, threads);
            match look.as_mut() {
                Some(look) => {
                    let w =
                        Tensor::<4>::from_data(TensorData::new(weights, [b, heads, t, t]), &device);
                    look(i, &w);
                }
                None => scores = weights,
            }
            let next = self.blocks.get(i + 1);
            x.par_chunks_mut(chunk * d)
                .zip(context.par_chunks(chunk * d))
                .zip(normed.par_chunks_mut(chunk * d))
                .zip(hidden.par_chunks_mut(chunk * hidden_width.max(1)))
                .zip(qkv.par_chunks_mut(chunk * 3 * d))
                .for_each(|((((x, context), normed), hidden), qkv)| {
                    let rows = x.len() / d;
                    let mut scratch = Scratch {
                        normed: &mut normed[..rows * d],
                        hidden: &mut hidden[..rows * hidden_width],
                    };
                    block.finish(x, context, &mut scratch);
                    match (next, &self.norm) {
                        (Some(next), _) => next.project(x, scratch.normed, qkv),
                        (None, Some(norm)) => {
                            norm.rows(x, scratch.normed);
                            x.copy_from_slice(scratch.normed);
                        }
                        (None, None) => {}
                    }
                });
        }
        Tensor::from_data(TensorData::new(x, [b, t, d]), &device)
    }
}

/// softmax(Q·Kᵀ/√d)·V of every image and head, from `qkv` ([B·T, 3D]: each
/// row a token's queries, keys and values, heads side by side) into
/// `weights` [B, H, T, T] and `context` [B·T, D] (heads side by side, as
/// they are concatenated).
fn attention(
    qkv: &[f32],
    weights: &mut [f32],
    context: &mut [f32],
    [b, t, d]: [usize; 3],
    heads: usize,
    threads: usize,
) {
    let hd = d / heads;
    let scale = (hd as f64).powf(-0.5) as f32;
    // Enough tasks to keep every thread busy: chunks of query rows.
    let pieces = (2 * threads).div_ceil(b * heads).clamp(1, t);
    let per = t.div_ceil(pieces);
    let context_at = SendPtr(context.as_mut_ptr());
    // Each (image, head)'s rows of `weights` [B, H, T, T], in chunks of query rows.
    let tasks: Vec<(usize, usize, &mut [f32])> = weights
        .chunks_mut(t * t)
        .enumerate()
        .flat_map(|(bh, w)| {
            w.chunks_mut(per * t)
                .enumerate()
                .map(move |(p, w)| (bh, p * per, w))
        })
        .collect();
    tasks.into_par_iter().for_each(|(bh, r0, w)| {
        let (image, head) = (bh / heads, bh % heads);
        let m = w.len() / t;
        let row = 3 * d;
        let base = image * t * row + head * hd;
        // SAFETY: every pointer and stride below stays inside qkv ([B·T,
        // 3D]), this task's rows of weights, and this task's rows and
        // head's columns of context ([B·T, D]), which no other task writes.
        unsafe {
            let q = qkv.as_ptr().add(base + r0 * row);
            let k = qkv.as_ptr().add(base + d);
            let v = qkv.as_ptr().add(base + 2 * d);
            // scores = Q·Kᵀ·scale: Kᵀ's (c, j) is key j's value c.
            product(m, t, hd, w.as_mut_ptr(), t, false, q, row, k, 1, row, scale);
            softmax_rows(w, t);
            let out = context_at.add((image * t + r0) * d + head * hd);
            product(m, hd, t, out, d, false, w.as_ptr(), t, v, row, 1, 1.0);
        }
    });
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);

impl SendPtr {
    /// # Safety
    /// As `pointer::add`.
    unsafe fn add(self, offset: usize) -> *mut f32 {
        unsafe { self.0.add(offset) }
    }
}
// SAFETY: the attention tasks write disjoint parts of the buffer behind it.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// dst[m, n] (rows `ldd` apart) = (dst if `accumulate`) + `scale`·a·b,
/// a [m, k] with rows `lda` apart, b [k, n] with rows `b_rows` and columns
/// `b_cols` apart: the gemm crate on this thread.
///
/// # Safety
/// Every element addressed by the dimensions and strides must be inside
/// its buffer, and dst must not overlap a or b.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::too_many_arguments)]
unsafe fn product(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    ldd: usize,
    accumulate: bool,
    a: *const f32,
    lda: usize,
    b: *const f32,
    b_rows: usize,
    b_cols: usize,
    scale: f32,
) {
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            ldd as isize,
            accumulate,
            a,
            1,
            lda as isize,
            b,
            b_cols as isize,
            b_rows as isize,
            1.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// [`product`] in the browser.
#[cfg(target_arch = "wasm32")]
use portable_product as product;

/// [`product`] through [`crate::ops::matmul::gemm_add`], with a transposed
/// right operand (Kᵀ) copied out first: the browser's, and natively the
/// tests' check of it against the gemm crate's.
///
/// # Safety
/// As the native [`product`]; and no other reference to dst's rows is in
/// use (the browser runs one task at a time).
#[cfg(any(target_arch = "wasm32", test))]
#[allow(clippy::too_many_arguments)]
unsafe fn portable_product(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    ldd: usize,
    accumulate: bool,
    a: *const f32,
    lda: usize,
    b: *const f32,
    b_rows: usize,
    b_cols: usize,
    scale: f32,
) {
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the caller's bounds, and no other reference to these rows.
    unsafe {
        let c = std::slice::from_raw_parts_mut(dst, (m - 1) * ldd + n);
        if !accumulate {
            c.chunks_mut(ldd).for_each(|r| r[..n].fill(0.0));
        }
        if k == 0 {
            return;
        }
        let a = std::slice::from_raw_parts(a, (m - 1) * lda + k);
        let copied: Vec<f32>;
        let (b, ldb) = if b_cols == 1 {
            (std::slice::from_raw_parts(b, (k - 1) * b_rows + n), b_rows)
        } else {
            let mut t = vec![0.0; k * n];
            for j in 0..n {
                for p in 0..k {
                    t[p * n + j] = *b.add(p * b_rows + j * b_cols);
                }
            }
            copied = t;
            (&copied[..], n)
        };
        gemm_add(m, k, n, a, lda, b, ldb, c, ldd);
        if scale != 1.0 {
            debug_assert!(!accumulate, "a scale only on a fresh product");
            c.chunks_mut(ldd)
                .for_each(|r| r[..n].iter_mut().for_each(|v| *v *= scale));
        }
    }
}

/// rayon's names for the loops above, run one after another: the page's
/// WebAssembly has one thread.
#[cfg(target_arch = "wasm32")]
mod serial {
    pub trait Chunks<T> {
        fn par_chunks(&self, size: usize) -> std::slice::Chunks<'_, T>;
        fn par_chunks_mut(&mut self, size: usize) -> std::slice::ChunksMut<'_, T>;
    }
    impl<T> Chunks<T> for [T] {
        fn par_chunks(&self, size: usize) -> std::slice::Chunks<'_, T> {
            self.chunks(size)
        }
        fn par_chunks_mut(&mut self, size: usize) -> std::slice::ChunksMut<'_, T> {
            self.chunks_mut(size)
        }
    }
    pub trait IntoParIter: IntoIterator + Sized {
        fn into_par_iter(self) -> Self::IntoIter {
            self.into_iter()
        }
    }
    impl<T> IntoParIter for Vec<T> {}
    pub fn current_num_threads() -> usize {
        1
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
fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let (chunks, rest) = x.as_chunks::<16>();
    let mut lanes = [0.0f32; 16];
    for c in chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l += f(*v);
        }
    }
    lanes.iter().sum::<f32>() + rest.iter().map(|v| f(*v)).sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::{random_model, variants};
    use burn::tensor::{Device, Distribution};

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec().unwrap()
    }

    /// Within float32 rounding of Burn's operations: every entry within
    /// 2e-5 of the largest (the two sum in different orders).
    fn assert_close(what: &str, got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let largest = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = got
            .iter()
            .zip(want)
            .map(|(g, w)| (g - w).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 2e-5 * largest.max(1.0),
            "{what}: off by {worst:e} (largest value {largest:e})"
        );
    }

    /// The fused blocks give Burn's operations' tokens and attention
    /// weights on every kind of model (all weights random, LayerNorms
    /// too), for one image, two, and enough rows to split into more
    /// chunks than threads.
    #[test]
    fn fused_blocks_match_burns_operations() {
        let device = Device::flex();
        let mut cases = variants();
        // A large epsilon, so that one taken from the wrong place shows.
        let mut wide_eps = cases[1].1.clone();
        wide_eps.norm_eps = 0.5;
        cases.push(("layer scale, QK norm, eps 0.5", wide_eps));
        for (name, cfg) in cases {
            let model = random_model(&cfg);
            let fused = Fused::of(&model).expect("an f32 model on the CPU device");
            for (batch, threads) in [(1, 1), (1, 3), (2, 2), (40, 3)] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let images = Tensor::<4>::random(
                    [batch, 3, 16, 16],
                    Distribution::Normal(0.0, 1.0),
                    &device,
                );
                let tokens = model.embed(images);
                let mut want = Vec::new();
                let out = model.encode(tokens.clone(), |_, s| {
                    want.push(values(s.attention.weights.clone()))
                });
                let mut got = Vec::new();
                let fused_out = pool.install(|| {
                    fused.encode(
                        tokens,
                        Some(&mut |_, a: &Tensor<4>| got.push(values(a.clone()))),
                    )
                });
                let what = format!("{name}, batch {batch}, {threads} threads");
                assert_eq!(fused_out.dims(), out.dims(), "{what}");
                assert_close(&format!("{what}: tokens"), &values(fused_out), &values(out));
                assert_eq!(got.len(), want.len(), "{what}: layers seen");
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_close(&format!("{what}: layer {i}'s weights"), g, w);
                }
            }
        }
    }

    /// Without `look`, the same tokens (the weights' buffer is reused).
    #[test]
    fn not_looking_changes_nothing() {
        let model = random_model(&variants()[0].1);
        let images = Tensor::<4>::random(
            [2, 3, 16, 16],
            Distribution::Normal(0.0, 1.0),
            &Device::flex(),
        );
        let tokens = model.embed(images);
        let fused = Fused::of(&model).unwrap();
        let seen = values(fused.encode(tokens.clone(), Some(&mut |_, _: &Tensor<4>| {})));
        assert_eq!(values(fused.encode(tokens, None)), seen);
    }

    /// No images: nothing computed, every block still seen.
    #[test]
    fn an_empty_batch_is_no_work() {
        let cfg = &variants()[0].1;
        let model = random_model(cfg);
        let tokens = Tensor::<3>::zeros([0, 17, cfg.embed_dim], &Device::flex());
        let mut seen = Vec::new();
        let out = Fused::of(&model).unwrap().encode(
            tokens,
            Some(&mut |i, a: &Tensor<4>| seen.push((i, a.dims()))),
        );
        assert_eq!(out.dims(), [0, 17, cfg.embed_dim]);
        assert_eq!(seen, [(0, [0, 2, 17, 17]), (1, [0, 2, 17, 17])]);
    }

    /// The browser's products give the gemm crate's on the strided and
    /// transposed operands attention uses, added to or not, scaled or not.
    #[test]
    fn the_browsers_products_match_the_native_ones() {
        let (m, n, k, ld) = (13, 17, 9, 40);
        let a: Vec<f32> = (0..m * ld)
            .map(|i| ((i * 7 % 23) as f32 - 11.0) / 8.0)
            .collect();
        let b: Vec<f32> = (0..k * ld.max(n) * 2)
            .map(|i| ((i * 5 % 19) as f32 - 9.0) / 4.0)
            .collect();
        // b read row-major (rows `ld` apart) and transposed (columns `ld` apart).
        for (b_rows, b_cols) in [(ld, 1), (1, ld)] {
            for (accumulate, scale) in [(false, 1.0), (false, 0.125), (true, 1.0)] {
                let start: Vec<f32> = (0..m * ld).map(|i| (i % 5) as f32).collect();
                let (mut native, mut portable) = (start.clone(), start.clone());
                // SAFETY: every index below m·ld of a and dst, and the largest
                // of b, (k − 1)·b_rows + (n − 1)·b_cols, is below b.len().
                unsafe {
                    product(
                        m,
                        n,
                        k,
                        native.as_mut_ptr(),
                        ld,
                        accumulate,
                        a.as_ptr(),
                        ld,
                        b.as_ptr(),
                        b_rows,
                        b_cols,
                        scale,
                    );
                    portable_product(
                        m,
                        n,
                        k,
                        portable.as_mut_ptr(),
                        ld,
                        accumulate,
                        a.as_ptr(),
                        ld,
                        b.as_ptr(),
                        b_rows,
                        b_cols,
                        scale,
                    );
                }
                let what = format!(
                    "b strides ({b_rows}, {b_cols}), accumulate {accumulate}, scale {scale}"
                );
                for (i, (p, q)) in portable.iter().zip(&native).enumerate() {
                    if i % ld >= n {
                        assert_eq!(p, &start[i], "{what}: [{i}] outside the product written");
                    } else {
                        assert!(
                            (p - q).abs() <= 1e-5 * q.abs().max(1.0),
                            "{what}: [{i}] {p} vs {q}"
                        );
                    }
                }
            }
        }
    }

    #[cfg(feature = "train")]
    #[test]
    fn autodiff_keeps_burns_operations() {
        let cfg = &variants()[0].1;
        assert!(Fused::of(&cfg.init(&Device::flex().autodiff())).is_none());
    }
}
