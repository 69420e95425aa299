//! Matrix products for the CPU backend in the browser.
//!
//! In WebAssembly Burn's flex backend multiplies matrices with the `gemm`
//! crate, whose SIMD128 micro-kernel keeps a 12×4 tile: twelve accumulators
//! plus its operands are more 128-bit registers than V8 gives a function on
//! x86-64 (fifteen), so it spills, and it packs both operands on every call.
//! The kernel below keeps a 4×8 output tile (eight accumulators, two vectors
//! of the right operand, one value of the left loaded into all four lanes:
//! eleven registers, twelve where a multiply-add needs a temporary), which
//! is also XNNPACK's choice for wasm SIMD on x86, and runs faster than a
//! 3×12 tile there. Matrix products are most of a forward pass in the
//! browser. At ViT-B's sizes (k = 768 and 3072) the right operand is
//! blocked over k (256) with each block of a panel packed contiguous, so
//! that it stays in L1 across the rows. Profiles and timings, with their
//! commands: docs/performance.md.
//!
//! Built with the `relaxed-simd` feature (the second browser module), the
//! tile's multiply-adds are relaxed SIMD's `f32x4.relaxed_madd`, one fused
//! instruction on CPUs with FMA, where SIMD128 needs a multiply and an add.
//!
//! [`linear`] and [`matmul`] take this path on the plain CPU device of the
//! wasm build; elsewhere (native, where `gemm` has AVX-512 kernels; wgpu;
//! autodiff) they are Burn's own. [`gemm`] itself is portable, so native
//! tests check it against a naive product.

use burn::nn::Linear;
use burn::tensor::{DType, Device, Tensor, TensorData};

use half::f16;

use super::kernels::f32_values;
use super::lanes::{F4, f16_to_f32, widen8};

/// Rows of the output tile (`tile` is written for four).
const MR: usize = 4;
/// Four-lane vectors across the output tile (`tile` is written for two).
const NV: usize = 2;
/// Columns of the output tile.
const NR: usize = 4 * NV;
/// The block of k that one pass over the rows covers.
const KC: usize = 256;

/// True where this module's kernel replaces Burn's matrix product: the plain
/// CPU device (no autodiff) of the WebAssembly build.
pub fn is_used_on(device: &Device) -> bool {
    cfg!(target_arch = "wasm32") && super::kernels::is_plain_cpu(device)
}

/// `x · W + b` for Burn's `Linear` (weight [in, out]) on the last dimension of `x`.
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    let weight = layer.weight.val();
    // A weight kept in f16 (plain CPU device only) is read by this kernel
    // on every target: Burn's product would not mix it with f32 inputs.
    let half = weight.dtype() == DType::F16;
    if !half
        && (!is_used_on(&x.device()) || x.dtype() != DType::F32 || weight.dtype() != DType::F32)
    {
        return layer.forward(x);
    }
    linear_here(layer, x)
}

/// [`linear`] through this module's kernel, whatever the device.
pub fn linear_here<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    let mut dims = x.dims();
    let [k, n] = layer.weight.val().dims();
    assert_eq!(
        dims[D - 1],
        k,
        "linear: input width {} for a {k}→{n} layer",
        dims[D - 1]
    );
    let m = dims[..D - 1].iter().product();
    let a = f32_values(x);
    // The weights read in place where Burn's CPU buffer allows (no copy of
    // the layer per call; f16 stays f16), else copied out.
    #[cfg(feature = "cpu")]
    let borrowed = super::host::Weight::of(layer.weight.val());
    #[cfg(not(feature = "cpu"))]
    let borrowed: Option<Vec<f32>> = None;
    let copied;
    let b: Rhs = match &borrowed {
        #[cfg(feature = "cpu")]
        Some(w) => w.rhs(),
        #[cfg(not(feature = "cpu"))]
        Some(w) => Rhs::F32(w),
        None => {
            copied = f32_values(layer.weight.val().cast(DType::F32));
            Rhs::F32(&copied)
        }
    };
    let bias = layer.bias.as_ref().map(|b| f32_values(b.val()));
    let mut c = vec![0.0; m * n];
    gemm(m, k, n, &a, b, bias.as_deref(), &mut c);
    dims[D - 1] = n;
    Tensor::from_data(TensorData::new(c, dims), &device)
}

/// Batched product [.., M, K] · [.., K, N] with equal leading dimensions.
pub fn matmul<const D: usize>(lhs: Tensor<D>, rhs: Tensor<D>) -> Tensor<D> {
    let (l, r) = (lhs.dims(), rhs.dims());
    if !is_used_on(&lhs.device())
        || lhs.dtype() != DType::F32
        || rhs.dtype() != DType::F32
        || l[..D - 2] != r[..D - 2]
    {
        return lhs.matmul(rhs);
    }
    matmul_here(lhs, rhs)
}

/// [`matmul`] through this module's kernel, whatever the device.
pub fn matmul_here<const D: usize>(lhs: Tensor<D>, rhs: Tensor<D>) -> Tensor<D> {
    let device = lhs.device();
    let (mut dims, r) = (lhs.dims(), rhs.dims());
    assert_eq!(dims[..D - 2], r[..D - 2], "matmul: batch dimensions differ");
    let (m, k, n) = (dims[D - 2], dims[D - 1], r[D - 1]);
    assert_eq!(r[D - 2], k, "matmul: [{m}, {k}] · [{}, {n}]", r[D - 2]);
    let batch: usize = dims[..D - 2].iter().product();
    // Reading a transposed view (Kᵀ) gives its values in logical order.
    let (a, b) = (f32_values(lhs), f32_values(rhs));
    let mut c = vec![0.0; batch * m * n];
    for i in 0..batch {
        gemm(
            m,
            k,
            n,
            &a[i * m * k..(i + 1) * m * k],
            &b[i * k * n..(i + 1) * k * n],
            None,
            &mut c[i * m * n..(i + 1) * m * n],
        );
    }
    dims[D - 1] = n;
    Tensor::from_data(TensorData::new(c, dims), &device)
}

/// The right operand of a product: f32, or f16 (a weight matrix kept in
/// its file's precision), widened exactly as its panels are packed, so
/// that a product with it equals, bit for bit, the product with its f32
/// copy while reading half the bytes.
#[derive(Clone, Copy)]
pub enum Rhs<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
}

impl<'a> From<&'a [f32]> for Rhs<'a> {
    fn from(b: &'a [f32]) -> Self {
        Rhs::F32(b)
    }
}

impl<'a> From<&'a Vec<f32>> for Rhs<'a> {
    fn from(b: &'a Vec<f32>) -> Self {
        Rhs::F32(b)
    }
}

impl<'a> From<&'a [f16]> for Rhs<'a> {
    fn from(b: &'a [f16]) -> Self {
        Rhs::F16(b)
    }
}

impl Rhs<'_> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Rhs::F32(b) => b.len(),
            Rhs::F16(b) => b.len(),
        }
    }

    /// Rows `k0..k0 + kc`, columns `col0..col0 + cols` (≤ NR) of b, whose
    /// rows are `ldb` apart, into `packed` (kc rows of NR, zero-padded).
    /// One loop per case, so that no row decides anything.
    fn pack(&self, k0: usize, kc: usize, col0: usize, cols: usize, ldb: usize, packed: &mut [f32]) {
        let rows = packed[..kc * NR].chunks_exact_mut(NR).enumerate();
        let at = |p: usize| (k0 + p) * ldb + col0;
        match (*self, cols == NR) {
            (Rhs::F32(b), true) => {
                for (p, dst) in rows {
                    // Two vector loads and stores: `copy_from_slice` of eight
                    // values is a call to memcpy in the browser's build.
                    let from = &b[at(p)..][..NR];
                    // SAFETY: both hold NR = 8 values.
                    unsafe {
                        F4::load(from.as_ptr()).store(dst.as_mut_ptr());
                        F4::load(from.as_ptr().add(4)).store(dst.as_mut_ptr().add(4));
                    }
                }
            }
            (Rhs::F16(b), true) => {
                for (p, dst) in rows {
                    let from = &b[at(p)..][..NR];
                    // SAFETY: eight halves (16 bytes) in, eight f32 out.
                    unsafe { widen8(from.as_ptr().cast(), dst.as_mut_ptr()) };
                }
            }
            (Rhs::F32(b), false) => {
                for (p, dst) in rows {
                    dst[..cols].copy_from_slice(&b[at(p)..at(p) + cols]);
                    dst[cols..].fill(0.0);
                }
            }
            (Rhs::F16(b), false) => {
                for (p, dst) in rows {
                    for (d, h) in dst.iter_mut().zip(&b[at(p)..at(p) + cols]) {
                        *d = f16_to_f32(h.to_bits());
                    }
                    dst[cols..].fill(0.0);
                }
            }
        }
    }
}

/// `c = a · b (+ bias on every row)`, all row-major: a [m, k], b [k, n],
/// bias [n], c [m, n].
pub fn gemm<'b>(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: impl Into<Rhs<'b>>,
    bias: Option<&[f32]>,
    c: &mut [f32],
) {
    assert_eq!(
        a.len(),
        m * k,
        "gemm: lhs holds {} values, not {m}×{k}",
        a.len()
    );
    let b = b.into();
    assert_eq!(
        b.len(),
        k * n,
        "gemm: rhs holds {} values, not {k}×{n}",
        b.len()
    );
    assert_eq!(
        c.len(),
        m * n,
        "gemm: output holds {} values, not {m}×{n}",
        c.len()
    );
    if let Some(bias) = bias {
        assert_eq!(
            bias.len(),
            n,
            "gemm: bias holds {} values, not {n}",
            bias.len()
        );
    }
    if m == 0 || n == 0 {
        return;
    }
    // The bias (or zero) first: every block of k then adds to c.
    for row in c.chunks_exact_mut(n) {
        match bias {
            Some(bias) => row.copy_from_slice(bias),
            None => row.fill(0.0),
        }
    }
    gemm_add(m, k, n, a, k, b, n, c, n);
}

/// `c += a · b` with a [m, k], b [k, n] and c [m, n] row-major, their rows
/// `lda`, `ldb` and `ldc` apart (so that one head's columns of a wider
/// matrix can be read or written in place).
#[allow(clippy::too_many_arguments)]
pub fn gemm_add<'b>(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    lda: usize,
    b: impl Into<Rhs<'b>>,
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    let b = b.into();
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(lda >= k && ldb >= n && ldc >= n, "gemm_add: strides");
    assert!(a.len() >= (m - 1) * lda + k, "gemm_add: lhs too short");
    assert!(b.len() >= (k - 1) * ldb + n, "gemm_add: rhs too short");
    assert!(c.len() >= (m - 1) * ldc + n, "gemm_add: output too short");
    // Blocked over k, so that the rows of a in use ([m, KC]: 200 KB for
    // ViT-B's 197 tokens) stay in the L2 cache across all the panels, and each
    // panel of b, packed contiguous (KC × NR: 12 KB), in L1 across all the
    // rows. Unblocked, ViT-B's k = 768 and 3072 read b's panels with a
    // stride of n from L2 or memory on every row tile.
    let mut packed = vec![0.0f32; KC.min(k) * NR];
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        for col0 in (0..n).step_by(NR) {
            let cols = NR.min(n - col0);
            b.pack(k0, kc, col0, cols, ldb, &mut packed);
            // SAFETY: `packed` holds kc rows of NR; a's rows are lda apart
            // with columns k0.. k0 + kc inside (checked above); c's rows
            // are ldc apart with columns col0.. col0 + cols ≤ n inside.
            unsafe { panel(m, kc, &a[k0..], lda, packed.as_ptr(), c, ldc, col0, cols) };
        }
    }
}

/// Adds a[.., ..kc] · b (packed kc × NR) to output columns `col0..col0 +
/// cols` of every row of c; a's rows are `lda` apart, c's `ldc`.
///
/// # Safety
/// `b` must hold kc rows of NR values; a must hold m rows of `lda`, of
/// which the first kc are read; c must hold m rows of `ldc` with columns
/// `col0..col0 + cols` inside.
#[allow(clippy::too_many_arguments)]
#[cfg_attr(
    all(target_arch = "wasm32", feature = "relaxed-simd"),
    target_feature(enable = "relaxed-simd")
)]
unsafe fn panel(
    m: usize,
    kc: usize,
    a: &[f32],
    lda: usize,
    b: *const f32,
    c: &mut [f32],
    ldc: usize,
    col0: usize,
    cols: usize,
) {
    let mut i = 0;
    // SAFETY (all tiles): rows i.. i + rows < m of a and c, kc values of each
    // a row, columns col0.. col0 + cols ≤ n of each c row.
    unsafe {
        // The tile of R rows at row i; every call differs only in R.
        macro_rules! rows {
            ($r:expr) => {
                tile::<$r>(
                    kc,
                    a.as_ptr().add(i * lda),
                    lda,
                    b,
                    c.as_mut_ptr().add(i * ldc + col0),
                    ldc,
                    cols,
                )
            };
        }
        while i + MR <= m {
            rows!(MR);
            i += MR;
        }
        match m - i {
            3 => rows!(3),
            2 => rows!(2),
            1 => rows!(1),
            _ => {}
        }
    }
}

/// One R×NR output tile (R ≤ 4) over kc: for every k, the two vectors of
/// b's packed row, then for each of a's R rows one value loaded into all
/// four lanes (`v128.load32_splat`) and its two multiply-adds. Eight
/// accumulators, two vectors of b and one of a: eleven of the fifteen
/// 128-bit registers V8 allocates on x86-64, so nothing spills even where a
/// multiply-add needs a temporary (SIMD128 without relaxed SIMD).
///
/// Written out by hand, with no closures or loops over the tile: the wasm
/// build is optimised for size, which unrolls nothing, and an accumulator
/// left in an array would live in memory instead of a register.
#[inline(always)]
unsafe fn tile<const R: usize>(
    kc: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
) {
    // SAFETY: the caller's bounds (see `panel`).
    unsafe {
        let mut s0 = load_row(c, cols);
        let mut s1 = if R > 1 {
            load_row(c.add(ldc), cols)
        } else {
            s0
        };
        let mut s2 = if R > 2 {
            load_row(c.add(2 * ldc), cols)
        } else {
            s0
        };
        let mut s3 = if R > 3 {
            load_row(c.add(3 * ldc), cols)
        } else {
            s0
        };
        let (mut ap, mut bp) = (a, b);
        for _ in 0..kc {
            let row = [F4::load(bp), F4::load(bp.add(4))];
            accumulate(&mut s0, F4::splat(*ap), &row);
            if R > 1 {
                accumulate(&mut s1, F4::splat(*ap.add(lda)), &row);
            }
            if R > 2 {
                accumulate(&mut s2, F4::splat(*ap.add(2 * lda)), &row);
            }
            if R > 3 {
                accumulate(&mut s3, F4::splat(*ap.add(3 * lda)), &row);
            }
            ap = ap.add(1);
            bp = bp.add(NR);
        }
        store_row(&s0, c, cols);
        if R > 1 {
            store_row(&s1, c.add(ldc), cols);
        }
        if R > 2 {
            store_row(&s2, c.add(2 * ldc), cols);
        }
        if R > 3 {
            store_row(&s3, c.add(3 * ldc), cols);
        }
    }
}

/// # Safety
/// `cols` (≤ NR) readable f32 at `row`.
#[inline(always)]
unsafe fn load_row(row: *const f32, cols: usize) -> [F4; NV] {
    unsafe {
        if cols == NR {
            [F4::load(row), F4::load(row.add(4))]
        } else {
            let mut t = [0.0f32; NR];
            std::ptr::copy_nonoverlapping(row, t.as_mut_ptr(), cols);
            [F4::load(t.as_ptr()), F4::load(t.as_ptr().add(4))]
        }
    }
}

#[inline(always)]
fn accumulate(sums: &mut [F4; NV], a: F4, row: &[F4; NV]) {
    sums[0] = sums[0].mul_add(a, row[0]);
    sums[1] = sums[1].mul_add(a, row[1]);
}

/// # Safety
/// `cols` (≤ NR) writable f32 at `out`.
#[inline(always)]
unsafe fn store_row(sums: &[F4; NV], out: *mut f32, cols: usize) {
    unsafe {
        if cols == NR {
            sums[0].store(out);
            sums[1].store(out.add(4));
        } else {
            let mut t = [0.0f32; NR];
            sums[0].store(t.as_mut_ptr());
            sums[1].store(t.as_mut_ptr().add(4));
            std::ptr::copy_nonoverlapping(t.as_ptr(), out, cols);
        }
    }
}

#[cfg(test)]
mod tests;
