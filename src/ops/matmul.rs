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
mod tests {
    use super::*;
    use burn::nn::LinearConfig;
    use burn::tensor::Distribution;

    /// The exact product (in f64, whose error is negligible here) and, per
    /// element, Σ|a·b| + |bias|, which bounds float32's error.
    fn naive(
        m: usize,
        k: usize,
        n: usize,
        a: &[f32],
        b: &[f32],
        bias: Option<&[f32]>,
    ) -> (Vec<f64>, Vec<f64>) {
        let (mut c, mut size) = (vec![0.0f64; m * n], vec![0.0f64; m * n]);
        for i in 0..m {
            for j in 0..n {
                let mut s = bias.map_or(0.0, |b| b[j] as f64);
                let mut z = s.abs();
                for p in 0..k {
                    let t = a[i * k + p] as f64 * b[p * n + j] as f64;
                    s += t;
                    z += t.abs();
                }
                c[i * n + j] = s;
                size[i * n + j] = z;
            }
        }
        (c, size)
    }

    /// γₙ = n·u/(1 − n·u), u = 2⁻²⁴: a float32 sum of n terms (products
    /// included, fused or not) is within γₙ·Σ|terms| of the exact sum in
    /// any order (Higham, Accuracy and Stability of Numerical Algorithms,
    /// §3.1). A bound that holds on every processor and kernel path.
    fn gamma(terms: usize) -> f64 {
        let nu = terms as f64 / (1u64 << 24) as f64;
        nu / (1.0 - nu)
    }

    fn values(seed: u64, len: usize) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn gemm_matches_a_naive_product_on_every_edge() {
        // Rows around the tile's 4, columns around its 8, and the ViT's shapes.
        for (m, k, n) in [
            (3, 2, 7),
            (4, 5, 8),
            (5, 3, 9),
            (6, 4, 16),
            (9, 11, 17),
            (1, 1, 1),
            (2, 3, 5),
            (3, 7, 12),
            (4, 5, 13),
            (5, 16, 24),
            (7, 9, 25),
            (50, 48, 144),
            (197, 64, 197),
            (197, 192, 576),
            (197, 768, 40),
            (10, 3072, 13),
            (1, 192, 10),
            (0, 4, 4),
            (4, 0, 4),
        ] {
            let (a, b, bias) = (values(1, m * k), values(2, k * n), values(3, n));
            for bias in [None, Some(&bias[..])] {
                let (want, size) = naive(m, k, n, &a, &b, bias);
                let mut c = vec![f32::NAN; m * n];
                gemm(m, k, n, &a, &b, bias, &mut c);
                assert!(
                    c.iter().all(|x| x.is_finite()),
                    "{m}×{k}×{n}: a value left unwritten"
                );
                // k products and the bias: k + 1 terms, one more rounding to f32.
                let g = gamma(k + 2);
                for (e, ((&got, &exact), &z)) in c.iter().zip(&want).zip(&size).enumerate() {
                    assert!(
                        (got as f64 - exact).abs() <= g * z,
                        "{m}×{k}×{n} [{e}]: {got} vs exact {exact}, allowed {:e}",
                        g * z
                    );
                }
            }
        }
    }

    /// Strided operands and output (one head's columns of wider matrices),
    /// added onto what the output held; what lies between is untouched.
    #[test]
    fn gemm_add_reads_and_writes_in_place() {
        for (m, k, n) in [(5, 3, 9), (13, 64, 17), (197, 64, 197), (3, 300, 10)] {
            let (lda, ldb, ldc) = (k + 3, n + 5, n + 7);
            let a = values(4, m * lda);
            let b = values(5, k * ldb);
            let before = values(6, m * ldc);
            let mut c = before.clone();
            gemm_add(m, k, n, &a, lda, &b, ldb, &mut c, ldc);
            let dense = |v: &[f32], rows: usize, cols: usize, ld: usize| -> Vec<f32> {
                (0..rows)
                    .flat_map(|r| v[r * ld..r * ld + cols].to_vec())
                    .collect()
            };
            let (want, size) = naive(m, k, n, &dense(&a, m, k, lda), &dense(&b, k, n, ldb), None);
            let g = gamma(k + 2);
            for r in 0..m {
                for j in 0..ldc {
                    let (got, was) = (c[r * ldc + j], before[r * ldc + j]);
                    if j >= n {
                        assert_eq!(got, was, "{m}×{k}×{n}: column {j} written");
                        continue;
                    }
                    let exact = want[r * n + j] + was as f64;
                    let allowed = g * (size[r * n + j] + was.abs() as f64);
                    assert!(
                        (got as f64 - exact).abs() <= allowed,
                        "{m}×{k}×{n} [{r}, {j}]: {got} vs {exact}"
                    );
                }
            }
        }
    }

    /// An f16 right operand (a weight kept as its file held it) gives the
    /// product of its f32 widening bit for bit, on every edge of the tile
    /// and of the k blocks, strided, with halves of every kind: normal,
    /// subnormal, zero, negative zero.
    #[test]
    fn an_f16_rhs_multiplies_as_its_f32_widening_exactly() {
        let halves = |seed: u64, len: usize| -> Vec<f16> {
            values(seed, len)
                .into_iter()
                .enumerate()
                .map(|(i, v)| match (i % 61, i % 67) {
                    // Now and then a subnormal half (below 2⁻¹⁴) or a zero
                    // of either sign: most runs of eight are all normal (the
                    // fast widening), the rest take the exact one.
                    (3, _) => f16::from_f32(v * 1e-5),
                    (_, 5) => f16::from_f32(if v < 0.0 { -0.0 } else { 0.0 }),
                    _ => f16::from_f32(v * 8.0),
                })
                .collect()
        };
        for (m, k, n, ldb) in [
            (1, 1, 1, 1),
            (3, 5, 7, 7),
            (4, 9, 8, 8),
            (5, 17, 13, 20),
            (9, 300, 17, 17),
            (197, 64, 192, 200),
            (6, 520, 24, 24),
        ] {
            let (a, b) = (values(7, m * k), halves(8, k * ldb));
            let widened: Vec<f32> = b.iter().map(|h| h.to_f32()).collect();
            let start = values(9, m * n);
            let (mut from_f16, mut from_f32) = (start.clone(), start);
            gemm_add(m, k, n, &a, k, &b[..], ldb, &mut from_f16, n);
            gemm_add(m, k, n, &a, k, &widened[..], ldb, &mut from_f32, n);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&from_f16), bits(&from_f32), "{m}×{k}×{n}, ldb {ldb}");
        }
    }

    #[test]
    #[should_panic(expected = "rhs holds 6 values, not 2×4")]
    fn gemm_refuses_operands_of_the_wrong_size() {
        let mut c = vec![0.0; 12];
        gemm(3, 2, 4, &[0.0; 6], &[0.0f32; 6][..], None, &mut c);
    }

    #[test]
    fn linear_and_batched_matmul_match_burn() {
        // Each side within γ·Σ|terms| of the exact value, so within twice
        // that of each other; Σ|terms| from |x|·|W| + |b| in float32, itself
        // within a factor (1 + γ) of the exact one.
        let check = |what: &str, ours: Vec<f32>, burn: Vec<f32>, size: Vec<f32>, terms: usize| {
            let g = gamma(terms);
            for ((a, b), z) in ours.iter().zip(&burn).zip(&size) {
                let allowed = 2.0 * g * (1.0 + g) * *z as f64;
                assert!(
                    ((a - b).abs() as f64) <= allowed,
                    "{what}: {a} vs {b}, allowed {allowed:e}"
                );
            }
        };
        let device = Device::flex();
        for bias in [true, false] {
            let layer = LinearConfig::new(40, 27).with_bias(bias).init(&device);
            let x = Tensor::<3>::random([2, 11, 40], Distribution::Normal(0.0, 1.0), &device);
            let mut size = x.clone().abs().matmul(layer.weight.val().abs().unsqueeze());
            if let Some(b) = &layer.bias {
                size = size + b.val().abs().unsqueeze();
            }
            let ours = f32_values(linear_here(&layer, x.clone()));
            let burn = f32_values(layer.forward(x));
            check(
                &format!("linear (bias {bias})"),
                ours,
                burn,
                f32_values(size),
                40 + 2,
            );
        }
        let q = Tensor::<4>::random([2, 3, 13, 8], Distribution::Normal(0.0, 1.0), &device);
        let k = Tensor::<4>::random([2, 3, 13, 8], Distribution::Normal(0.0, 1.0), &device);
        // A transposed view on the right, as attention's Q·Kᵀ has.
        let ours = matmul_here(q.clone(), k.clone().swap_dims(2, 3));
        assert_eq!(ours.dims(), [2, 3, 13, 13]);
        let size = q.clone().abs().matmul(k.clone().abs().swap_dims(2, 3));
        let burn = f32_values(q.matmul(k.swap_dims(2, 3)));
        check("matmul", f32_values(ours), burn, f32_values(size), 8 + 1);
    }
}
