//! Four f32 lanes: one SIMD128 register in the browser build, a plain array
//! elsewhere (where the same code runs in the tests).
//!
//! The wasm build is optimised for size, and at that level LLVM vectorises
//! no loop by itself: the browser's CPU kernels ([`super::matmul`], GELU and
//! softmax in [`super::kernels`]) are written with these lanes instead.
//! Each operation is the scalar one applied lane by lane, so a lanes kernel
//! gives bit for bit what its scalar twin gives.

#[cfg(target_arch = "wasm32")]
use core::arch::wasm32::*;

#[derive(Clone, Copy, Debug)]
pub struct F4(
    #[cfg(target_arch = "wasm32")] v128,
    #[cfg(not(target_arch = "wasm32"))] [f32; 4],
);

#[cfg(target_arch = "wasm32")]
impl F4 {
    #[inline(always)]
    pub fn splat(x: f32) -> Self {
        F4(f32x4_splat(x))
    }
    /// # Safety
    /// Four readable f32 at `p` (any alignment).
    #[inline(always)]
    pub unsafe fn load(p: *const f32) -> Self {
        F4(unsafe { v128_load(p.cast()) })
    }
    /// # Safety
    /// Four writable f32 at `p` (any alignment).
    #[inline(always)]
    pub unsafe fn store(self, p: *mut f32) {
        unsafe { v128_store(p.cast(), self.0) }
    }
    #[inline(always)]
    pub fn add(self, o: Self) -> Self {
        F4(f32x4_add(self.0, o.0))
    }
    #[inline(always)]
    pub fn sub(self, o: Self) -> Self {
        F4(f32x4_sub(self.0, o.0))
    }
    #[inline(always)]
    pub fn mul(self, o: Self) -> Self {
        F4(f32x4_mul(self.0, o.0))
    }
    #[inline(always)]
    pub fn div(self, o: Self) -> Self {
        F4(f32x4_div(self.0, o.0))
    }
    /// `o` where `self < o`, else `self` (so NaN in `o` is passed over).
    #[inline(always)]
    pub fn max(self, o: Self) -> Self {
        F4(f32x4_pmax(self.0, o.0))
    }
    /// `o` where `o < self`, else `self`.
    #[inline(always)]
    pub fn min(self, o: Self) -> Self {
        F4(f32x4_pmin(self.0, o.0))
    }
    /// 0 where `x < limit`, else `self`.
    #[inline(always)]
    pub fn zero_where_below(self, x: Self, limit: f32) -> Self {
        F4(v128_andnot(self.0, f32x4_lt(x.0, f32x4_splat(limit))))
    }
    /// 2^n for t = n + `round` (n an integer), `round` = 1.5·2^23: n sits in
    /// t's low mantissa bits and goes straight into the exponent.
    #[inline(always)]
    pub fn pow2_of_rounded(self, round: f32) -> Self {
        let n = i32x4_sub(self.0, i32x4_splat(round.to_bits() as i32));
        F4(i32x4_shl(i32x4_add(n, i32x4_splat(127)), 23))
    }
    #[inline(always)]
    pub fn to_array(self) -> [f32; 4] {
        let mut out = [0.0; 4];
        // SAFETY: four writable f32.
        unsafe { self.store(out.as_mut_ptr()) };
        out
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl F4 {
    #[inline(always)]
    fn map2(self, o: Self, f: impl Fn(f32, f32) -> f32) -> Self {
        F4(std::array::from_fn(|i| f(self.0[i], o.0[i])))
    }
    #[inline(always)]
    pub fn splat(x: f32) -> Self {
        F4([x; 4])
    }
    /// # Safety
    /// Four readable f32 at `p` (any alignment).
    #[inline(always)]
    pub unsafe fn load(p: *const f32) -> Self {
        F4(unsafe { p.cast::<[f32; 4]>().read_unaligned() })
    }
    /// # Safety
    /// Four writable f32 at `p` (any alignment).
    #[inline(always)]
    pub unsafe fn store(self, p: *mut f32) {
        unsafe { p.cast::<[f32; 4]>().write_unaligned(self.0) }
    }
    #[inline(always)]
    pub fn add(self, o: Self) -> Self {
        self.map2(o, |a, b| a + b)
    }
    #[inline(always)]
    pub fn sub(self, o: Self) -> Self {
        self.map2(o, |a, b| a - b)
    }
    #[inline(always)]
    pub fn mul(self, o: Self) -> Self {
        self.map2(o, |a, b| a * b)
    }
    #[inline(always)]
    pub fn div(self, o: Self) -> Self {
        self.map2(o, |a, b| a / b)
    }
    /// `o` where `self < o`, else `self` (so NaN in `o` is passed over).
    #[inline(always)]
    pub fn max(self, o: Self) -> Self {
        self.map2(o, |a, b| if a < b { b } else { a })
    }
    /// `o` where `o < self`, else `self`.
    #[inline(always)]
    pub fn min(self, o: Self) -> Self {
        self.map2(o, |a, b| if b < a { b } else { a })
    }
    /// 0 where `x < limit`, else `self`.
    #[inline(always)]
    pub fn zero_where_below(self, x: Self, limit: f32) -> Self {
        self.map2(x, |v, x| if x < limit { 0.0 } else { v })
    }
    /// 2^n for t = n + `round` (n an integer), `round` = 1.5·2^23: n sits in
    /// t's low mantissa bits and goes straight into the exponent.
    #[inline(always)]
    pub fn pow2_of_rounded(self, round: f32) -> Self {
        F4(self.0.map(|t| {
            let n = (t.to_bits() as i32).wrapping_sub(round.to_bits() as i32);
            f32::from_bits((n.wrapping_add(127) as u32) << 23)
        }))
    }
    #[inline(always)]
    pub fn to_array(self) -> [f32; 4] {
        self.0
    }
}

impl F4 {
    #[inline(always)]
    pub fn zero() -> Self {
        F4::splat(0.0)
    }
    /// The first four values of `s`.
    #[inline(always)]
    pub fn read(s: &[f32]) -> Self {
        assert!(s.len() >= 4);
        // SAFETY: four values, checked just above.
        unsafe { F4::load(s.as_ptr()) }
    }
    /// Into the first four values of `s`.
    #[inline(always)]
    pub fn write(self, s: &mut [f32]) {
        assert!(s.len() >= 4);
        // SAFETY: four values, checked just above.
        unsafe { self.store(s.as_mut_ptr()) }
    }
    /// self + a·b: a multiply and an add, as SIMD128 has no fused form.
    #[cfg(not(all(target_arch = "wasm32", feature = "relaxed-simd")))]
    #[inline(always)]
    pub fn mul_add(self, a: Self, b: Self) -> Self {
        self.add(a.mul(b))
    }
    /// self + a·b in relaxed SIMD's `f32x4.relaxed_madd`: one fused
    /// multiply-add (rounded once) where the CPU has one, else a multiply and
    /// an add. Only for functions compiled with relaxed-simd (the matrix
    /// kernel's `panel`): elsewhere it would be a call, not an instruction.
    #[cfg(all(target_arch = "wasm32", feature = "relaxed-simd"))]
    #[inline(always)]
    pub fn mul_add(self, a: Self, b: Self) -> Self {
        F4(f32x4_relaxed_madd(a.0, b.0, self.0))
    }
}
