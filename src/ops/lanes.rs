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

/// Eight u32 lanes of bit patterns: two SIMD128 registers in the browser
/// build, an array elsewhere. Only what widening halves needs.
#[derive(Clone, Copy)]
struct U32x8(
    #[cfg(target_arch = "wasm32")] [v128; 2],
    #[cfg(not(target_arch = "wasm32"))] [u32; 8],
);

#[cfg(target_arch = "wasm32")]
impl U32x8 {
    /// Eight little-endian u16 at `p`, each widened to u32.
    #[inline(always)]
    unsafe fn load_halves(p: *const u8) -> Self {
        let v = unsafe { v128_load(p.cast()) };
        U32x8([u32x4_extend_low_u16x8(v), u32x4_extend_high_u16x8(v)])
    }
    /// Eight little-endian i16 at `p`, each sign-extended to 32 bits.
    #[inline(always)]
    unsafe fn load_halves_signed(p: *const u8) -> Self {
        let v = unsafe { v128_load(p.cast()) };
        U32x8([i32x4_extend_low_i16x8(v), i32x4_extend_high_i16x8(v)])
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        self.zip(o, |a, b| i32x4_sub(a, b))
    }
    /// All ones where the lane is at least `o`'s, as unsigned numbers.
    #[inline(always)]
    fn at_least(self, o: Self) -> Self {
        self.zip(o, |a, b| u32x4_ge(a, b))
    }
    /// Whether any bit of any lane is set.
    #[inline(always)]
    fn any(self) -> bool {
        v128_any_true(v128_or(self.0[0], self.0[1]))
    }
    #[inline(always)]
    fn splat(x: u32) -> Self {
        U32x8([u32x4_splat(x); 2])
    }
    #[inline(always)]
    fn zip(self, o: Self, f: impl Fn(v128, v128) -> v128) -> Self {
        U32x8([f(self.0[0], o.0[0]), f(self.0[1], o.0[1])])
    }
    #[inline(always)]
    fn and(self, o: Self) -> Self {
        self.zip(o, |a, b| v128_and(a, b))
    }
    #[inline(always)]
    fn or(self, o: Self) -> Self {
        self.zip(o, |a, b| v128_or(a, b))
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self.zip(o, |a, b| i32x4_add(a, b))
    }
    #[inline(always)]
    fn shl(self, n: u32) -> Self {
        U32x8([i32x4_shl(self.0[0], n), i32x4_shl(self.0[1], n)])
    }
    /// All ones where the lanes are equal, else zero.
    #[inline(always)]
    fn eq(self, o: Self) -> Self {
        self.zip(o, |a, b| i32x4_eq(a, b))
    }
    /// `a` where `self` (a mask from `eq`) is set, else `b`.
    #[inline(always)]
    fn select(self, a: Self, b: Self) -> Self {
        U32x8([
            v128_bitselect(a.0[0], b.0[0], self.0[0]),
            v128_bitselect(a.0[1], b.0[1], self.0[1]),
        ])
    }
    /// The lanes as f32, minus `o`'s as f32, as bits.
    #[inline(always)]
    fn float_sub(self, o: Self) -> Self {
        self.zip(o, |a, b| f32x4_sub(a, b))
    }
    #[inline(always)]
    unsafe fn store(self, out: *mut f32) {
        unsafe {
            v128_store(out.cast(), self.0[0]);
            v128_store(out.add(4).cast(), self.0[1]);
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl U32x8 {
    #[inline(always)]
    unsafe fn load_halves(p: *const u8) -> Self {
        let b = unsafe { p.cast::<[u8; 16]>().read_unaligned() };
        U32x8(std::array::from_fn(|i| {
            u16::from_le_bytes([b[2 * i], b[2 * i + 1]]) as u32
        }))
    }
    #[inline(always)]
    unsafe fn load_halves_signed(p: *const u8) -> Self {
        let b = unsafe { p.cast::<[u8; 16]>().read_unaligned() };
        U32x8(std::array::from_fn(|i| {
            i16::from_le_bytes([b[2 * i], b[2 * i + 1]]) as i32 as u32
        }))
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        self.zip(o, u32::wrapping_sub)
    }
    #[inline(always)]
    fn at_least(self, o: Self) -> Self {
        self.zip(o, |a, b| if a >= b { u32::MAX } else { 0 })
    }
    #[inline(always)]
    fn any(self) -> bool {
        self.0.iter().any(|&a| a != 0)
    }
    #[inline(always)]
    fn splat(x: u32) -> Self {
        U32x8([x; 8])
    }
    #[inline(always)]
    fn zip(self, o: Self, f: impl Fn(u32, u32) -> u32) -> Self {
        U32x8(std::array::from_fn(|i| f(self.0[i], o.0[i])))
    }
    #[inline(always)]
    fn and(self, o: Self) -> Self {
        self.zip(o, |a, b| a & b)
    }
    #[inline(always)]
    fn or(self, o: Self) -> Self {
        self.zip(o, |a, b| a | b)
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self.zip(o, u32::wrapping_add)
    }
    #[inline(always)]
    fn shl(self, n: u32) -> Self {
        U32x8(self.0.map(|a| a << n))
    }
    #[inline(always)]
    fn eq(self, o: Self) -> Self {
        self.zip(o, |a, b| if a == b { u32::MAX } else { 0 })
    }
    #[inline(always)]
    fn select(self, a: Self, b: Self) -> Self {
        U32x8(std::array::from_fn(|i| {
            (a.0[i] & self.0[i]) | (b.0[i] & !self.0[i])
        }))
    }
    #[inline(always)]
    fn float_sub(self, o: Self) -> Self {
        self.zip(o, |a, b| (f32::from_bits(a) - f32::from_bits(b)).to_bits())
    }
    #[inline(always)]
    unsafe fn store(self, out: *mut f32) {
        unsafe {
            out.cast::<[f32; 8]>()
                .write_unaligned(self.0.map(f32::from_bits))
        }
    }
}

/// An IEEE half as f32, exactly (subnormals, infinities and NaN included),
/// by moving its bits into place (no instruction converts halves in
/// WebAssembly; `half`'s portable conversion is slower there).
#[inline]
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    const SHIFTED_EXP: u32 = 0x7c00 << 13; // the exponent bits, moved into f32's place
    let mut o = ((h & 0x7fff) as u32) << 13; // exponent and mantissa
    let exp = o & SHIFTED_EXP;
    o += (127 - 15) << 23; // rebias the exponent
    if exp == SHIFTED_EXP {
        o += (128 - 16) << 23; // infinity or NaN: all exponent bits set
    } else if exp == 0 {
        // Zero or subnormal: renormalise through a float subtraction (exact).
        o += 1 << 23;
        o = (f32::from_bits(o) - f32::from_bits(113 << 23)).to_bits();
    }
    f32::from_bits(o | ((h & 0x8000) as u32) << 16)
}

/// Eight little-endian IEEE halves at `src` (16 bytes) widened to f32 at
/// `dst`, exactly: where all eight are normal numbers, by moving their bits
/// into place; else as [`f16_to_f32`] does, with both of its special cases
/// computed and selected by masks. (The matrix kernel widens every weight
/// of an f16-kept matrix this way on every product, so the fast case is
/// what keeps an f16-kept model close to the f32 one's speed:
/// docs/performance.md.)
///
/// # Safety
/// 16 readable bytes at `src`, 8 writable f32 at `dst` (neither aligned).
#[inline(always)]
pub(crate) unsafe fn widen8(src: *const u8, dst: *mut f32) {
    const SHIFTED_EXP: u32 = 0x7c00 << 13;
    unsafe {
        // Normal halves (all but 2⁻¹⁴ of a weight matrix's, near enough),
        // in four operations: sign-extended, the sign fills the high bits;
        // shifted into f32's place and masked, sign, exponent and mantissa
        // are where f32 keeps them; the exponent is rebiased by an add.
        let s = U32x8::load_halves_signed(src);
        let exp = s.and(U32x8::splat(0x7c00));
        // Exponent 0 (zero, subnormal) or 31 (infinity, NaN): exp − 2¹⁰
        // wraps below zero or reaches 30·2¹⁰.
        let special = exp.sub(U32x8::splat(0x400)).at_least(U32x8::splat(0x7800));
        if !special.any() {
            s.shl(13)
                .and(U32x8::splat(0x8fff_e000))
                .add(U32x8::splat((127 - 15) << 23))
                .store(dst);
            return;
        }
        let exp_bits = U32x8::splat(SHIFTED_EXP);
        let h = U32x8::load_halves(src);
        let mut o = h.and(U32x8::splat(0x7fff)).shl(13);
        let exp = o.and(exp_bits);
        o = o.add(U32x8::splat((127 - 15) << 23));
        // Infinity or NaN: all exponent bits set.
        o = exp
            .eq(exp_bits)
            .select(o.add(U32x8::splat((128 - 16) << 23)), o);
        // Zero or subnormal: renormalised through an exact subtraction.
        let renormal = o
            .add(U32x8::splat(1 << 23))
            .float_sub(U32x8::splat(113 << 23));
        o = exp.eq(U32x8::splat(0)).select(renormal, o);
        let sign = h.and(U32x8::splat(0x8000)).shl(16);
        o.or(sign).store(dst);
    }
}

/// Little-endian IEEE halves widened to f32, exactly (subnormals,
/// infinities and NaN included), eight at a time ([`widen8`]), a tail
/// shorter than eight one by one ([`f16_to_f32`]).
pub(crate) fn widen_halves(bytes: &[u8]) -> Vec<f32> {
    let n = bytes.len() / 2;
    let mut out: Vec<f32> = Vec::with_capacity(n);
    let full = n / 8 * 8;
    for i in (0..full).step_by(8) {
        // SAFETY: 16 bytes at 2·i (i + 8 ≤ n); out has room for n values.
        unsafe { widen8(bytes.as_ptr().add(2 * i), out.as_mut_ptr().add(i)) };
    }
    // SAFETY: the first `full` values were just written.
    unsafe { out.set_len(full) };
    out.extend(
        bytes[2 * full..2 * n]
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))),
    );
    out
}
