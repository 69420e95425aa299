//! Weight matrices packed once, when a model is loaded, for the native
//! fused encoder's products (x86-64 with AVX2/FMA or AVX-512).
//!
//! The gemm crate packs its operands on every call, and the fused encoder
//! calls it once per thread per product on that thread's rows: at batch 1
//! each of two threads packed every weight matrix of ViT-B/16 on every
//! forward pass, 16% of a profile's samples (docs/performance.md). Here
//! each matrix W [k, n] (Burn's [in, out] layout) is laid out once in
//! panels of 64 columns (AVX2: 16), each panel k rows of contiguous
//! values, so the micro-kernel streams a panel front to back and nothing
//! is packed per call. The rows of x are read in place: a value of x is broadcast to
//! every lane, as in gemm's kernels.
//!
//! The micro-kernel keeps a 6×64 tile of the output in 24 AVX-512
//! registers (AVX2: 6×16 in 12, over panels of 16 columns), and k is
//! blocked by 256 so that a panel's block (64 KB) stays in L2 while every
//! tile of rows passes over it; the AVX2 kernel asks for the next block
//! ahead of its sweep. The copy costs the weights' size
//! again in memory, natively only; the browser's build has its own kernel
//! (`super::matmul`).

use std::arch::x86_64::*;

/// Columns of a panel: a row of the AVX-512 tile (four vectors), or of
/// the AVX2 one (two).
const fn panel(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => 64,
        Isa::Avx2 => 16,
    }
}
/// Rows of the output tile.
const ROWS: usize = 6;
/// The block of k that one pass over the rows covers.
const KC: usize = 256;

/// W [k, n] in panels of [`panel`] columns for its kernel (the last one
/// zero-padded).
pub struct Packed {
    data: Vec<f32>,
    k: usize,
    n: usize,
    isa: Isa,
}

/// The kernel this CPU runs, if any.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Isa {
    Avx512,
    Avx2,
}

impl Isa {
    /// AVX-512 with the `avx512` feature and a CPU that has it, else AVX2
    /// and FMA where the CPU has them (as `kernels::kernel_path` says).
    pub fn detect() -> Option<Self> {
        if cfg!(feature = "avx512") && std::is_x86_feature_detected!("avx512f") {
            return Some(Self::Avx512);
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Some(Self::Avx2);
        }
        None
    }
}

impl Packed {
    /// W [k, n], row-major, packed; `None` where this CPU has no kernel
    /// for it or n is not a multiple of 16 (every ViT width is).
    pub fn new(w: &[f32], n: usize) -> Option<Self> {
        Self::for_isa(w, n, Isa::detect()?)
    }

    /// [`Packed::new`] for `isa`'s kernel (tests run each the CPU has);
    /// `None` also where this CPU cannot run it.
    pub fn for_isa(w: &[f32], n: usize, isa: Isa) -> Option<Self> {
        let runs = match Isa::detect()? {
            Isa::Avx512 => true,
            Isa::Avx2 => isa == Isa::Avx2,
        };
        if !runs || n == 0 || !n.is_multiple_of(16) || !w.len().is_multiple_of(n) {
            return None;
        }
        let (k, width) = (w.len() / n, panel(isa));
        let mut data = vec![0.0; n.div_ceil(width) * k * width];
        for (p, panel) in data.chunks_exact_mut(k * width).enumerate() {
            let cols = (n - p * width).min(width);
            for (row, out) in panel.chunks_exact_mut(width).enumerate() {
                let from = row * n + p * width;
                out[..cols].copy_from_slice(&w[from..from + cols]);
            }
        }
        Some(Self { data, k, n, isa })
    }

    /// `out` [m, n] += `x` [m, k] · W, both row-major, on this thread.
    pub fn accumulate(&self, x: &[f32], out: &mut [f32]) {
        self.product(x, out, Onto::Output);
    }

    /// `out` [m, n] = `x` [m, k] · W + `bias` [n] on every row (none: 0),
    /// on this thread; `out` is only written. The same sums, in the same
    /// order, as filling `out` with the bias and calling
    /// [`Packed::accumulate`], without that pass over it.
    pub fn forward(&self, x: &[f32], bias: Option<&[f32]>, out: &mut [f32]) {
        let first = match bias {
            Some(b) => {
                assert_eq!(b.len(), self.n, "packed: bias");
                Onto::Bias(b.as_ptr())
            }
            None => Onto::Zero,
        };
        self.product(x, out, first);
    }

    /// `out` = `first` + `x`·W: the first block of k adds its sums to
    /// `first`, the next ones to what `out` then holds.
    fn product(&self, x: &[f32], out: &mut [f32], first: Onto) {
        let (k, n, isa, width) = (self.k, self.n, self.isa, panel(self.isa));
        let m = x.len().checked_div(k).unwrap_or_else(|| out.len() / n);
        assert!(x.len() == m * k && out.len() == m * n, "packed: shapes");
        let tiles = m.div_ceil(ROWS);
        for k0 in (0..k).step_by(KC) {
            let kc = KC.min(k - k0);
            for (p, panel) in self.data.chunks_exact(k * width).enumerate() {
                let vectors = (n - p * width).min(width) / 16;
                let w = panel[k0 * width..].as_ptr();
                let ahead = match isa {
                    Isa::Avx2 => self.block_after(p, k0),
                    Isa::Avx512 => &[],
                };
                let onto = match first {
                    Onto::Bias(b) if k0 == 0 => Onto::Bias(b.wrapping_add(p * width)),
                    Onto::Zero if k0 == 0 => Onto::Zero,
                    _ => Onto::Output,
                };
                for (tile_index, r0) in (0..m).step_by(ROWS).enumerate() {
                    let rows = ROWS.min(m - r0);
                    prefetch_share(ahead, tile_index, tiles);
                    let a = x[r0 * k + k0..].as_ptr();
                    let c = out[r0 * n + p * width..].as_mut_ptr();
                    // SAFETY: a addresses `rows` rows of x, k apart, each
                    // with kc values from k0; w kc rows of the panel; c
                    // `rows` rows of out, n apart, 16·vectors values each
                    // from the panel's first column: all inside their
                    // slices (checked shapes); a bias n values, from the
                    // panel's first column (checked). The CPU has `isa`
                    // (checked when it was packed).
                    unsafe { tile(isa, rows, vectors, kc, a, k, w, c, n, onto) };
                }
            }
        }
    }

    /// The block of the panels that the sweep after panel `p`'s at `k0`
    /// streams: the next panel's at `k0`, else the first panel's at the
    /// next block of k; empty after the last.
    fn block_after(&self, p: usize, k0: usize) -> &[f32] {
        let width = panel(self.isa);
        let (next_p, next_k0) = if (p + 1) * width < self.n {
            (p + 1, k0)
        } else {
            (0, k0 + KC)
        };
        if next_k0 >= self.k {
            return &[];
        }
        let start = next_p * self.k * width + next_k0 * width;
        &self.data[start..start + KC.min(self.k - next_k0) * width]
    }
}

/// What a tile's sums are added to as they are stored.
#[derive(Clone, Copy)]
enum Onto {
    /// What the output holds.
    Output,
    /// The bias, from the tile's first column (the same for every row).
    Bias(*const f32),
    /// Nothing: the output is only written.
    Zero,
}

/// Asks for row tile `tile_index`'s share (of `tiles`) of `block`'s cache
/// lines to be brought into L2. On the AVX2 kernel, whose panels are one
/// cache line wide, a sweep's first tile otherwise waits on each line of
/// its block from L3 or memory: fetched ahead, ViT-B/16's products at
/// batch 1 ran 8–15% faster on two threads, its forward pass 3–5%
/// (docs/performance.md). The AVX-512 kernel's four-line rows gained
/// nothing from it.
fn prefetch_share(block: &[f32], tile_index: usize, tiles: usize) {
    const LINE: usize = 16;
    let lines = block.len().div_ceil(LINE);
    let share = lines.div_ceil(tiles.max(1));
    let first = (tile_index * share).min(lines);
    for line in first..(first + share).min(lines) {
        // SAFETY: the address is inside `block`; a prefetch never faults
        // and changes nothing but the caches; SSE is part of x86-64.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(block.as_ptr().add(line * LINE).cast()) };
    }
}

/// Picks the monomorphised kernel for `rows` × `vectors`·16 (AVX2: one
/// panel of 16).
///
/// # Safety
/// As [`tile512`]'s and [`tile256`]'s.
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    isa: Isa,
    rows: usize,
    vectors: usize,
    kc: usize,
    a: *const f32,
    lda: usize,
    w: *const f32,
    c: *mut f32,
    ldc: usize,
    onto: Onto,
) {
    macro_rules! by_rows {
        ($f:ident, $($v:literal),*) => {
            match (rows, vectors) {
                $(
                    (1, $v) => $f::<1, $v>(kc, a, lda, w, c, ldc, onto),
                    (2, $v) => $f::<2, $v>(kc, a, lda, w, c, ldc, onto),
                    (3, $v) => $f::<3, $v>(kc, a, lda, w, c, ldc, onto),
                    (4, $v) => $f::<4, $v>(kc, a, lda, w, c, ldc, onto),
                    (5, $v) => $f::<5, $v>(kc, a, lda, w, c, ldc, onto),
                    (6, $v) => $f::<6, $v>(kc, a, lda, w, c, ldc, onto),
                )*
                _ => unreachable!("tile {rows}×{vectors}"),
            }
        };
    }
    // SAFETY: the caller's.
    unsafe {
        match isa {
            Isa::Avx512 => by_rows!(tile512, 1, 2, 3, 4),
            Isa::Avx2 => match rows {
                1 => tile256::<1>(kc, a, lda, w, c, ldc, onto),
                2 => tile256::<2>(kc, a, lda, w, c, ldc, onto),
                3 => tile256::<3>(kc, a, lda, w, c, ldc, onto),
                4 => tile256::<4>(kc, a, lda, w, c, ldc, onto),
                5 => tile256::<5>(kc, a, lda, w, c, ldc, onto),
                6 => tile256::<6>(kc, a, lda, w, c, ldc, onto),
                _ => unreachable!("tile {rows}"),
            },
        }
    }
}

/// c[R, 16·V] = `onto` + a[R, kc] · w[kc, 16·V] (w's rows 64 apart), in
/// R·V AVX-512 accumulators.
///
/// # Safety
/// The CPU has AVX-512F; a, w, c and a bias address the values described,
/// inside their buffers.
#[target_feature(enable = "avx512f")]
unsafe fn tile512<const R: usize, const V: usize>(
    kc: usize,
    a: *const f32,
    lda: usize,
    w: *const f32,
    c: *mut f32,
    ldc: usize,
    onto: Onto,
) {
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); V]; R];
        for kk in 0..kc {
            let mut b = [_mm512_setzero_ps(); V];
            for (v, b) in b.iter_mut().enumerate() {
                *b = _mm512_loadu_ps(w.add(kk * 64 + 16 * v));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*a.add(r * lda + kk));
                for (acc, b) in acc.iter_mut().zip(&b) {
                    *acc = _mm512_fmadd_ps(x, *b, *acc);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (v, acc) in acc.iter().enumerate() {
                let p = c.add(r * ldc + 16 * v);
                let onto = match onto {
                    Onto::Output => _mm512_loadu_ps(p),
                    Onto::Bias(b) => _mm512_loadu_ps(b.add(16 * v)),
                    Onto::Zero => _mm512_setzero_ps(),
                };
                _mm512_storeu_ps(p, _mm512_add_ps(onto, *acc));
            }
        }
    }
}

/// c[R, 16] = `onto` + a[R, kc] · w[kc, 16] (w's rows 16 apart,
/// contiguous), in 2·R AVX2 accumulators.
///
/// # Safety
/// The CPU has AVX2 and FMA; a, w, c and a bias address the values
/// described, inside their buffers.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile256<const R: usize>(
    kc: usize,
    a: *const f32,
    lda: usize,
    w: *const f32,
    c: *mut f32,
    ldc: usize,
    onto: Onto,
) {
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for kk in 0..kc {
            let b0 = _mm256_loadu_ps(w.add(kk * 16));
            let b1 = _mm256_loadu_ps(w.add(kk * 16 + 8));
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = _mm256_set1_ps(*a.add(r * lda + kk));
                acc[0] = _mm256_fmadd_ps(x, b0, acc[0]);
                acc[1] = _mm256_fmadd_ps(x, b1, acc[1]);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (v, acc) in acc.iter().enumerate() {
                let p = c.add(r * ldc + 8 * v);
                let onto = match onto {
                    Onto::Output => _mm256_loadu_ps(p),
                    Onto::Bias(b) => _mm256_loadu_ps(b.add(8 * v)),
                    Onto::Zero => _mm256_setzero_ps(),
                };
                _mm256_storeu_ps(p, _mm256_add_ps(onto, *acc));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernels this CPU can run: both where it has AVX-512.
    fn kernels_here() -> &'static [Isa] {
        match Isa::detect() {
            Some(Isa::Avx512) => &[Isa::Avx512, Isa::Avx2],
            Some(Isa::Avx2) => &[Isa::Avx2],
            None => &[],
        }
    }

    /// The block fetched ahead during each sweep is the next sweep's, in
    /// the order `accumulate` takes them (panels within a block of k), and
    /// nothing after the last.
    #[test]
    fn the_block_fetched_ahead_is_the_next_sweeps() {
        for &isa in kernels_here() {
            let (k, n) = (KC + 44, 80);
            let w = vec![0.0; k * n];
            let packed = Packed::for_isa(&w, n, isa).expect("n a multiple of 16");
            let width = panel(isa);
            let mut sweeps = Vec::new();
            for k0 in (0..k).step_by(KC) {
                for p in 0..n.div_ceil(width) {
                    let start = p * k * width + k0 * width;
                    sweeps.push((p, k0, start..start + KC.min(k - k0) * width));
                }
            }
            let base = packed.data.as_ptr() as usize;
            for (i, (p, k0, _)) in sweeps.iter().enumerate() {
                let ahead = packed.block_after(*p, *k0);
                let at = (ahead.as_ptr() as usize).wrapping_sub(base) / 4;
                match sweeps.get(i + 1) {
                    Some((_, _, next)) => {
                        assert_eq!(
                            at..at + ahead.len(),
                            next.clone(),
                            "{isa:?} after {p}, {k0}"
                        )
                    }
                    None => assert!(ahead.is_empty(), "{isa:?}: nothing after the last"),
                }
            }
        }
    }

    /// Each kernel the CPU has, against a product in f64, on every edge:
    /// rows not a multiple of 6, k across the 256 block, a partial last
    /// panel; added onto what the output held (`accumulate`), or onto a
    /// bias or nothing into an output it only writes (`forward`, the
    /// output filled with NaN first); within float32's worst-case error,
    /// as the browser's kernel is held.
    #[test]
    fn packed_products_match_a_naive_one() {
        let value = |i: usize, s: usize| ((i * 7919 + s) % 1013) as f32 / 1013.0 - 0.5;
        for &(m, k, n) in &[
            (1, 1, 16),
            (5, 7, 48),
            (6, 256, 64),
            (7, 257, 80),
            (13, 300, 192),
            (99, 768, 144),
        ] {
            let x: Vec<f32> = (0..m * k).map(|i| value(i, 1)).collect();
            let w: Vec<f32> = (0..k * n).map(|i| value(i, 2)).collect();
            let held: Vec<f32> = (0..m * n).map(|i| value(i, 3)).collect();
            let bias: Vec<f32> = (0..n).map(|i| value(i, 4)).collect();
            for &isa in kernels_here() {
                let packed = Packed::for_isa(&w, n, isa).expect("n a multiple of 16");
                let mut onto_held = held.clone();
                packed.accumulate(&x, &mut onto_held);
                let mut onto_bias = vec![f32::NAN; m * n];
                packed.forward(&x, Some(&bias), &mut onto_bias);
                let mut onto_nothing = vec![f32::NAN; m * n];
                packed.forward(&x, None, &mut onto_nothing);
                let bias_rows: Vec<f32> = (0..m * n).map(|i| bias[i % n]).collect();
                for (what, out, start) in [
                    ("accumulate", &onto_held, &held),
                    ("forward with a bias", &onto_bias, &bias_rows),
                    ("forward", &onto_nothing, &vec![0.0; m * n]),
                ] {
                    for i in 0..m {
                        for j in 0..n {
                            let b = f64::from(start[i * n + j]);
                            let (mut sum, mut abs) = (b, b.abs());
                            for p in 0..k {
                                let t = f64::from(x[i * k + p]) * f64::from(w[p * n + j]);
                                sum += t;
                                abs += t.abs();
                            }
                            // γₖ₊₂·(Σ|terms| + |bias|), u = 2⁻²⁴ (docs/testing.md).
                            let nu = (k as f64 + 2.0) * 2f64.powi(-24);
                            let bound = nu / (1.0 - nu) * abs;
                            let got = f64::from(out[i * n + j]);
                            assert!(
                                (got - sum).abs() <= bound,
                                "{isa:?} {what} {m}×{k}×{n} at ({i}, {j}): {got} against {sum}"
                            );
                        }
                    }
                }
            }
        }
    }
}
