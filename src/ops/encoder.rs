//! The encoder's blocks on Burn's CPU device, fused: the same arithmetic
//! as `model::Block::forward`, written over the model's own weight
//! buffers in two passes per block instead of Burn's ~25 operations
//! (`crate::exec` chooses it once, when a model is loaded).
//!
//! Burn's flex backend runs each operation of a block on its own, and on
//! small models that costs more than the arithmetic: every LayerNorm,
//! reshape, permutation and residual add is a pass over memory and a
//! parallel region that wakes and parks the worker threads (where a
//! forward pass's time went: docs/performance.md). Here each block is two
//! parallel regions:
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
//! ([`super::matmul::gemm_add`]) and the parallel loops run one after
//! another. Softmax and GELU are [`super::kernels`]'. Weight matrices
//! kept in f16 go through vitrine's kernel on every target, widened as it
//! packs them. It runs only where every weight is an f32 (or, for the
//! matrices, f16) buffer on Burn's plain CPU device (no autodiff) and every
//! block has the same sizes; anything else (WebGPU, training) keeps Burn's
//! operations.

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Tensor, TensorData};
#[cfg(not(target_arch = "wasm32"))]
use rayon::{current_num_threads, prelude::*};

use super::LookAttention;
use super::attention::{SendPtr, attention, product};
use super::host::{Values, Weight};
use super::keep::{BlockKeep, KeepAt, Kept, Spare};
use super::kernels::{gelu_in_place, gelu_keeping_slope};
use super::matmul::gemm_add;
use super::norm::Norm;
#[cfg(target_arch = "wasm32")]
use super::serial::*;

/// One encoder block's parameters, as the model holds them.
pub struct BlockParams<'a> {
    pub norm1: &'a LayerNorm,
    pub qkv: &'a Linear,
    pub q_norm: Option<&'a LayerNorm>,
    pub k_norm: Option<&'a LayerNorm>,
    pub proj: &'a Linear,
    /// Layer scale after attention and after the MLP: γ [D].
    pub ls1: Option<Tensor<1>>,
    pub norm2: &'a LayerNorm,
    pub fc1: &'a Linear,
    pub fc2: &'a Linear,
    pub ls2: Option<Tensor<1>>,
    /// timm's QuickGELU (CLIP) rather than GELU.
    pub quick_gelu: bool,
    pub heads: usize,
}

pub(super) struct Dense {
    /// [inputs, outputs], Burn's layout: f32, or f16 as the file held it.
    pub(super) weight: Weight,
    bias: Option<Values>,
    pub(super) outputs: usize,
    /// An f32 weight laid out once for this CPU's kernel, where it has one.
    #[cfg(target_arch = "x86_64")]
    packed: Option<super::packed::Packed>,
}

impl Dense {
    fn of(layer: &Linear) -> Option<Self> {
        let [_, outputs] = layer.weight.val().dims();
        let weight = Weight::of(layer.weight.val())?;
        Some(Self {
            #[cfg(target_arch = "x86_64")]
            packed: match &weight {
                Weight::F32(w) => super::packed::Packed::new(w.get(), outputs),
                Weight::F16(_) => None,
            },
            weight,
            bias: match &layer.bias {
                Some(b) => Some(Values::of(b.val())?),
                None => None,
            },
            outputs,
        })
    }

    /// `out` = `x`·W + b for the rows of `x` (`out`'s rows `outputs` wide).
    pub(super) fn forward(&self, x: &[f32], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if let Some(packed) = &self.packed {
            return packed.forward(x, self.bias.as_ref().map(Values::get), out);
        }
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
        #[cfg(target_arch = "x86_64")]
        if let Some(packed) = &self.packed {
            return packed.accumulate(x, out);
        }
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

pub(super) struct BlockWeights {
    pub(super) norm1: Norm,
    pub(super) qkv: Dense,
    pub(super) q_norm: Option<Norm>,
    pub(super) k_norm: Option<Norm>,
    pub(super) proj: Dense,
    pub(super) ls1: Option<Values>,
    pub(super) norm2: Norm,
    pub(super) fc1: Dense,
    pub(super) fc2: Dense,
    pub(super) ls2: Option<Values>,
    pub(super) quick_gelu: bool,
    pub(super) heads: usize,
}

impl BlockWeights {
    fn of(p: &BlockParams, eps: f64) -> Option<Self> {
        let scale = |ls: &Option<Tensor<1>>| -> Option<Option<Values>> {
            match ls {
                Some(gamma) => Values::of(gamma.clone()).map(Some),
                None => Some(None),
            }
        };
        let qk_norm = match (p.q_norm, p.k_norm) {
            (Some(q), Some(k)) => (Some(Norm::of(q, eps)?), Some(Norm::of(k, eps)?)),
            (None, None) => (None, None),
            _ => return None,
        };
        Some(Self {
            norm1: Norm::of(p.norm1, eps)?,
            qkv: Dense::of(p.qkv)?,
            q_norm: qk_norm.0,
            k_norm: qk_norm.1,
            proj: Dense::of(p.proj)?,
            ls1: scale(&p.ls1)?,
            norm2: Norm::of(p.norm2, eps)?,
            fc1: Dense::of(p.fc1)?,
            fc2: Dense::of(p.fc2)?,
            ls2: scale(&p.ls2)?,
            quick_gelu: p.quick_gelu,
            heads: p.heads,
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
    /// proj(`context`), then `x` += MLP(LayerNorm(`x`)); `keep`, when
    /// given, gets `x` after attention and the MLP activation's slope.
    fn finish(
        &self,
        x: &mut [f32],
        context: &[f32],
        rows: &mut Scratch,
        keep: Option<(&mut [f32], &mut [f32])>,
    ) {
        self.proj
            .residual(context, x, self.ls1.as_ref(), rows.normed);
        self.norm2.rows(x, rows.normed);
        self.fc1.forward(rows.normed, rows.hidden);
        let slope = keep.map(|(mid, slope)| {
            mid.copy_from_slice(x);
            slope
        });
        match (self.quick_gelu, slope) {
            // timm's QuickGELU: x · sigmoid(1.702 x); its slope
            // σ + 1.702·x·σ·(1 − σ).
            (true, slope) => {
                let mut slope = slope.map(|s| s.iter_mut());
                for v in rows.hidden.iter_mut() {
                    let (x, sigmoid) = (*v, 1.0 / (1.0 + (-1.702 * *v).exp()));
                    *v = x * sigmoid;
                    if let Some(s) = slope.as_mut().and_then(Iterator::next) {
                        *s = sigmoid + 1.702 * x * sigmoid * (1.0 - sigmoid);
                    }
                }
            }
            (false, Some(slope)) => gelu_keeping_slope(rows.hidden, slope),
            (false, None) => gelu_in_place(rows.hidden),
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

/// The encoder's weights, read in place, when the fused path can run them.
pub struct FusedEncoder {
    pub(super) blocks: Vec<BlockWeights>,
    norm: Option<Norm>,
    /// The weight matrices transposed, made when a backward pass first
    /// asks for them (`super::backward`); `None` inside when one is f16.
    pub(super) transposed: OnceLock<Option<Vec<super::backward::Transposed>>>,
    /// What dropped [`Kept`]s and gradients handed back left for the next
    /// pass.
    pub(super) spare: Arc<Spare>,
}

impl FusedEncoder {
    /// `None` unless every weight is an f32 buffer (or, for the matrices,
    /// f16) on Burn's plain CPU device and the blocks all have the same
    /// sizes: then Burn's own operations must run the model.
    pub fn of(blocks: &[BlockParams], norm: Option<&LayerNorm>, eps: f64) -> Option<Self> {
        let first = blocks.first()?;
        if !super::kernels::is_plain_cpu(&first.norm1.gamma.val().device()) {
            return None;
        }
        let fused = Self {
            blocks: blocks
                .iter()
                .map(|b| BlockWeights::of(b, eps))
                .collect::<Option<_>>()?,
            norm: match norm {
                Some(n) => Some(Norm::of(n, eps)?),
                None => None,
            },
            transposed: OnceLock::new(),
            // Each block's input, Q/K/V, attention weights, x + attention,
            // slope and gradient of the weights; the last output.
            spare: Arc::new(Spare::new(6 * blocks.len() + 1)),
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
    pub fn encode(&self, tokens: Tensor<3>, look: Option<LookAttention>) -> Tensor<3> {
        self.run(tokens, 0..self.blocks.len(), self.norm.as_ref(), look, None)
    }

    /// Blocks `range` alone (no final norm): tokens [B, T, D] → [B, T, D];
    /// `look(i, A)` sees block i's attention weights, i counted from the
    /// first block of the encoder.
    pub fn encode_blocks(
        &self,
        tokens: Tensor<3>,
        range: Range<usize>,
        look: Option<LookAttention>,
    ) -> Tensor<3> {
        self.run(tokens, range, None, look, None)
    }

    /// [`FusedEncoder::encode`], keeping what the backward pass of
    /// `super::backward` needs of each block.
    pub fn encode_keeping(&self, tokens: Tensor<3>) -> (Tensor<3>, Kept) {
        let mut kept = Kept::new(self.blocks.len(), Arc::clone(&self.spare));
        let out = self.run(
            tokens,
            0..self.blocks.len(),
            self.norm.as_ref(),
            None,
            Some(&mut kept),
        );
        (out, kept)
    }

    /// The blocks `range`, then `norm`, on one of rayon's threads natively:
    /// its parallel loops then start from inside the pool, and the calling
    /// thread sleeps and wakes once a pass rather than once a loop (2 per
    /// block). That made vit_tiny's pass 11% faster at batch 1, ViT-S/16's
    /// 6% (docs/performance.md).
    fn run(
        &self,
        tokens: Tensor<3>,
        range: Range<usize>,
        norm: Option<&Norm>,
        look: Option<LookAttention>,
        keep: Option<&mut Kept>,
    ) -> Tensor<3> {
        #[cfg(not(target_arch = "wasm32"))]
        return rayon::scope(|_| self.run_here(tokens, range, norm, look, keep));
        #[cfg(target_arch = "wasm32")]
        self.run_here(tokens, range, norm, look, keep)
    }

    fn run_here(
        &self,
        tokens: Tensor<3>,
        range: Range<usize>,
        norm: Option<&Norm>,
        mut look: Option<LookAttention>,
        mut keep: Option<&mut Kept>,
    ) -> Tensor<3> {
        let device = tokens.device();
        let [b, t, d] = tokens.dims();
        let offset = range.start;
        let blocks = &self.blocks[range];
        let Some(first) = blocks.first() else {
            return tokens;
        };
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
                for i in 0..blocks.len() {
                    look(offset + i, &Tensor::zeros([b, heads, t, t], &device));
                }
            }
            return tokens;
        }
        let mut x = super::kernels::f32_values(tokens);
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
        for (i, block) in blocks.iter().enumerate() {
            let len = b * heads * t * t;
            let mut weights = match (&look, &keep) {
                (Some(_), _) => vec![0.0; len],
                // Its weights move into the tensor kept below.
                (None, Some(k)) => k.buffer(len),
                (None, None) => std::mem::take(&mut scores),
            };
            weights.resize(len, 0.0);
            attention(&qkv, &mut weights, &mut context, [b, t, d], heads, threads);
            // What the backward pass needs of this block: the queries, keys
            // and values move there (the next block's go to a new buffer);
            // the rest is filled below, each thread its rows.
            let kept = match keep.as_deref_mut() {
                Some(k) => {
                    let qkv = std::mem::replace(&mut qkv, k.buffer(rows * 3 * d));
                    let kept_weights = match look {
                        Some(_) => weights.clone(),
                        None => std::mem::take(&mut weights),
                    };
                    k.blocks.push(BlockKeep {
                        input: k.buffer(rows * d),
                        qkv,
                        weights: Tensor::from_data(
                            TensorData::new(kept_weights, [b * heads, t, t]),
                            &device,
                        ),
                        mid: k.buffer(rows * d),
                        slope: k.buffer(rows * hidden_width),
                    });
                    if i + 1 == blocks.len() {
                        k.last = k.buffer(rows * d);
                    }
                    let (block, last) = (k.blocks.last_mut().expect("just pushed"), &mut k.last);
                    Some(KeepAt {
                        input: SendPtr(block.input.as_mut_ptr()),
                        mid: SendPtr(block.mid.as_mut_ptr()),
                        slope: SendPtr(block.slope.as_mut_ptr()),
                        last: SendPtr(last.as_mut_ptr()),
                    })
                }
                None => None,
            };
            match look.as_mut() {
                Some(look) => {
                    let w =
                        Tensor::<4>::from_data(TensorData::new(weights, [b, heads, t, t]), &device);
                    look(offset + i, &w);
                }
                None => scores = weights,
            }
            let next = blocks.get(i + 1);
            x.par_chunks_mut(chunk * d)
                .zip(context.par_chunks(chunk * d))
                .zip(normed.par_chunks_mut(chunk * d))
                .zip(hidden.par_chunks_mut(chunk * hidden_width.max(1)))
                .zip(qkv.par_chunks_mut(chunk * 3 * d))
                .enumerate()
                .for_each(|(c, ((((x, context), normed), hidden), qkv))| {
                    let rows = x.len() / d;
                    let mut scratch = Scratch {
                        normed: &mut normed[..rows * d],
                        hidden: &mut hidden[..rows * hidden_width],
                    };
                    let first_row = c * chunk;
                    // SAFETY: each chunk writes its own rows of the kept
                    // buffers, sized for every row above.
                    let keep = kept.map(|k| unsafe {
                        k.input.rows(first_row * d, rows * d).copy_from_slice(x);
                        (
                            k.mid.rows(first_row * d, rows * d),
                            k.slope.rows(first_row * hidden_width, rows * hidden_width),
                        )
                    });
                    block.finish(x, context, &mut scratch, keep);
                    match (next, norm) {
                        (Some(next), _) => next.project(x, scratch.normed, qkv),
                        (None, norm) => {
                            if let Some(k) = kept {
                                // SAFETY: as above.
                                unsafe { k.last.rows(first_row * d, rows * d) }.copy_from_slice(x);
                            }
                            if let Some(norm) = norm {
                                norm.rows(x, scratch.normed);
                                x.copy_from_slice(scratch.normed);
                            }
                        }
                    }
                });
        }
        Tensor::from_data(TensorData::new(x, [b, t, d]), &device)
    }
}
