//! Attention of every image and head at once, in place in the projections'
//! buffer, and the products over strided operands it runs on: the `gemm`
//! crate's natively (one thread each), vitrine's kernel in the browser.

#[cfg(not(target_arch = "wasm32"))]
use rayon::prelude::*;

use super::kernels::softmax_rows;
#[cfg(any(target_arch = "wasm32", test))]
use super::matmul::gemm_add;
#[cfg(target_arch = "wasm32")]
use super::serial::*;

/// softmax(Q·Kᵀ/√d)·V of every image and head, from `qkv` ([B·T, 3D]: each
/// row a token's queries, keys and values, heads side by side) into
/// `weights` [B, H, T, T] and `context` [B·T, D] (heads side by side, as
/// they are concatenated).
pub(super) fn attention(
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

/// A buffer's start, shared by tasks that each write their own part of it.
#[derive(Clone, Copy)]
pub(super) struct SendPtr(pub(super) *mut f32);

impl SendPtr {
    /// `len` values from `start` on.
    ///
    /// # Safety
    /// They are inside the buffer, and no one else reads or writes them
    /// while the slice lives.
    pub(super) unsafe fn rows<'a>(self, start: usize, len: usize) -> &'a mut [f32] {
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }

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
pub(super) unsafe fn product(
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
    // SAFETY: the caller's.
    unsafe {
        gemm_strided(
            [m, n, k],
            dst,
            ldd,
            accumulate,
            a,
            [lda, 1],
            b,
            [b_rows, b_cols],
            scale,
        )
    }
}

/// [`product`] in the browser.
#[cfg(target_arch = "wasm32")]
pub(super) use portable_product as product;

/// dst[m, n] (rows `ldd` apart) = `scale`·aᵀ·b for a [k, m] with rows
/// `lda` apart (read by columns), b as [`product`]'s: the gemm crate
/// packs aᵀ as it reads it.
///
/// # Safety
/// As [`product`]'s.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn product_at(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    ldd: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    b_rows: usize,
    b_cols: usize,
    scale: f32,
) {
    // SAFETY: the caller's.
    unsafe {
        gemm_strided(
            [m, n, k],
            dst,
            ldd,
            false,
            a,
            [1, lda],
            b,
            [b_rows, b_cols],
            scale,
        )
    }
}

/// The gemm crate's product on this thread, each operand with its
/// [row, column] strides.
///
/// # Safety
/// As [`product`]'s.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_strided(
    [m, n, k]: [usize; 3],
    dst: *mut f32,
    ldd: usize,
    accumulate: bool,
    a: *const f32,
    [a_rows, a_cols]: [usize; 2],
    b: *const f32,
    [b_rows, b_cols]: [usize; 2],
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
            a_cols as isize,
            a_rows as isize,
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

/// [`product_at`] in the browser (and natively in the tests): aᵀ copied
/// out, then [`portable_product`].
///
/// # Safety
/// As [`portable_product`]'s.
#[cfg(any(target_arch = "wasm32", test))]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn portable_product_at(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    ldd: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    b_rows: usize,
    b_cols: usize,
    scale: f32,
) {
    let mut at = vec![0.0; m * k];
    for p in 0..k {
        for i in 0..m {
            // SAFETY: a's (p, i) is inside it, by the caller's bounds.
            at[i * k + p] = unsafe { *a.add(p * lda + i) };
        }
    }
    // SAFETY: aᵀ is [m, k] row-major; the rest as the caller's.
    unsafe {
        portable_product(
            m,
            n,
            k,
            dst,
            ldd,
            false,
            at.as_ptr(),
            k,
            b,
            b_rows,
            b_cols,
            scale,
        )
    }
}

#[cfg(target_arch = "wasm32")]
pub(super) use portable_product_at as product_at;

/// [`product`] through [`super::matmul::gemm_add`], with a transposed
/// right operand (Kᵀ) copied out first: the browser's, and natively the
/// tests' check of it against the gemm crate's.
///
/// # Safety
/// As the native [`product`]; and no other reference to dst's rows is in
/// use (the browser runs one task at a time).
#[cfg(any(target_arch = "wasm32", test))]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn portable_product(
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// aᵀ·b read from a [k, m] by columns, as the backward pass reads Aᵀ
    /// and ∇Sᵀ: the browser's product (a copy, then its kernel) against
    /// the gemm crate's packing, and both against the plain sums.
    #[test]
    fn the_transposed_left_operand_is_read_the_same_both_ways() {
        let (m, n, k, lda, ld) = (11, 7, 19, 30, 12);
        let a: Vec<f32> = (0..k * lda)
            .map(|i| ((i * 7 % 23) as f32 - 11.0) / 8.0)
            .collect();
        let b: Vec<f32> = (0..k * ld)
            .map(|i| ((i * 5 % 19) as f32 - 9.0) / 4.0)
            .collect();
        let (mut native, mut portable) = (vec![0.0; m * ld], vec![0.0; m * ld]);
        let scale = 0.5;
        // SAFETY: a's (p, i) is at p·lda + i < k·lda, b's (p, j) at
        // p·ld + j < k·ld, dst's (i, j) at i·ld + j < m·ld.
        unsafe {
            product_at(
                m,
                n,
                k,
                native.as_mut_ptr(),
                ld,
                a.as_ptr(),
                lda,
                b.as_ptr(),
                ld,
                1,
                scale,
            );
            portable_product_at(
                m,
                n,
                k,
                portable.as_mut_ptr(),
                ld,
                a.as_ptr(),
                lda,
                b.as_ptr(),
                ld,
                1,
                scale,
            );
        }
        for i in 0..m {
            for j in 0..n {
                let want: f32 = scale * (0..k).map(|p| a[p * lda + i] * b[p * ld + j]).sum::<f32>();
                for (what, got) in [
                    ("native", native[i * ld + j]),
                    ("browser", portable[i * ld + j]),
                ] {
                    assert!(
                        (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                        "{what} ({i}, {j}): {got} vs {want}"
                    );
                }
            }
        }
    }
}
