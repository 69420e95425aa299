//! GELU and softmax for the CPU backend, vectorised.
//!
//! Burn's flex backend evaluates GELU with libm's `erff` and softmax with
//! `expf`, one scalar at a time: together about a sixth of a ViT-Tiny forward
//! pass on the CPU. On the CPU backend outside autodiff, [`gelu`] and
//! [`softmax_last`] take the tensor's buffer, run branch-free approximations
//! (a few f32 ulps) that the compiler vectorises — AVX-512 or AVX2 picked at
//! run time on x86-64, SIMD128 in the browser — and hand a tensor back.
//! Every other device (wgpu, autodiff for training) keeps Burn's own ops.

use burn::tensor::activation;
use burn::tensor::{DType, Device, Tensor, TensorData};

use super::lanes::F4;

/// Which vectorised kernels this build runs on this CPU: "AVX-512",
/// "AVX2/FMA", "x86-64 (no AVX2)" or "WebAssembly SIMD128". gemm (Burn's
/// CPU matrix products) and [`simd_dispatch`] choose alike: AVX-512 only
/// with the `avx512` feature and a CPU that has AVX-512F.
pub fn kernel_path() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if cfg!(feature = "avx512") && std::is_x86_feature_detected!("avx512f") {
            return "AVX-512";
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return "AVX2/FMA";
        }
        "x86-64 (no AVX2)"
    }
    #[cfg(target_arch = "wasm32")]
    {
        "WebAssembly SIMD128"
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "wasm32")))]
    {
        std::env::consts::ARCH
    }
}

/// Defines `pub fn $name(args)` running the `#[inline(always)]` loop `$body`
/// compiled for AVX-512 (with the `avx512` feature) or AVX2+FMA when the CPU
/// has them (checked at run time, so one binary serves every x86-64), and as
/// plain code otherwise (which the wasm build's `+simd128` vectorises).
macro_rules! simd_dispatch {
    ($(#[$doc:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) => $body:ident) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[cfg(feature = "avx512")]
                {
                    #[target_feature(enable = "avx512f")]
                    fn avx512($($arg: $ty),*) {
                        $body($($arg),*)
                    }
                    if std::is_x86_feature_detected!("avx512f") {
                        // SAFETY: the CPU has AVX-512F (checked just above).
                        return unsafe { avx512($($arg),*) };
                    }
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has AVX2 and FMA (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

/// Exact (erf) GELU, x·Φ(x), as timm's `nn.GELU()`.
///
/// Under autodiff on the CPU backend (training), the value and the slope
/// Φ(x) + x·φ(x) come from the same vectorised kernels and are stitched
/// into the graph as x·Φ(x) + (x − x̄)·slope, with x̄ a constant copy of x:
/// the second term is exactly zero and carries the rest of the gradient.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if x.dtype() != DType::F32 {
        return activation::gelu(x);
    }
    if is_plain_cpu(&device) {
        let shape = x.shape();
        let mut values = f32_values(x);
        gelu_in_place(&mut values);
        return Tensor::from_data(TensorData::new(values, shape), &device);
    }
    let inner_device = device.clone().inner();
    if device.is_autodiff() && is_plain_cpu(&inner_device) {
        let shape = x.shape();
        let values = f32_values(x.clone().inner());
        let mut cdf = values.clone();
        let mut slope = values.clone();
        gelu_parts(&mut cdf, &mut slope);
        let constant = |v: Vec<f32>| {
            Tensor::<D>::from_data(TensorData::new(v, shape.clone()), &inner_device).autodiff()
        };
        let (cdf, slope, frozen) = (constant(cdf), constant(slope), constant(values));
        return x.clone() * cdf + (x - frozen) * slope;
    }
    activation::gelu(x)
}

/// GELU's derivative Φ(x) + x·φ(x) at each value of `x` (the exact GELU's
/// slope, for a backward pass written by hand).
pub fn gelu_slope<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if is_plain_cpu(&device) && x.dtype() == DType::F32 {
        let shape = x.shape();
        let mut cdf = f32_values(x);
        let mut slope = cdf.clone();
        gelu_parts(&mut cdf, &mut slope);
        cdf.iter_mut().zip(&slope).for_each(|(c, s)| *c += s);
        return Tensor::from_data(TensorData::new(cdf, shape), &device);
    }
    // 1/√(2π)
    const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
    let cdf = (x.clone().mul_scalar(std::f64::consts::FRAC_1_SQRT_2).erf() + 1.0).mul_scalar(0.5);
    let pdf = x
        .clone()
        .powi_scalar(2)
        .mul_scalar(-0.5)
        .exp()
        .mul_scalar(INV_SQRT_2PI);
    cdf + x * pdf
}

pub(crate) fn f32_values<const D: usize>(x: Tensor<D>) -> Vec<f32> {
    match x.into_data().try_into_vec::<f32>() {
        Ok(values) => values,
        Err(_) => unreachable!("only f32 tensors come here"),
    }
}

/// Softmax along the last dimension.
pub fn softmax_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    if !is_plain_cpu(&device) || x.dtype() != DType::F32 {
        return activation::softmax(x, D - 1);
    }
    let shape = x.shape();
    let row = shape.dims::<D>()[D - 1];
    let mut values = f32_values(x);
    if row > 0 {
        softmax_rows(&mut values, row);
    }
    Tensor::from_data(TensorData::new(values, shape), &device)
}

/// True for Burn's CPU backend without autodiff: the device whose buffers
/// live in this process's memory and need no gradient graph.
pub(crate) fn is_plain_cpu(device: &Device) -> bool {
    #[cfg(feature = "cpu")]
    {
        // Equality ignores autodiff, which needs asking separately.
        !device.is_autodiff() && *device == Device::flex()
    }
    #[cfg(not(feature = "cpu"))]
    {
        let _ = device;
        false
    }
}

simd_dispatch! {
    /// GELU of every value, in place.
    pub fn gelu_in_place(values: &mut [f32]) => gelu_loop
}

simd_dispatch! {
    /// Softmax of every run of `row` values, in place.
    pub fn softmax_rows(values: &mut [f32], row: usize) => softmax_loop
}

/// Lanes of the partial sums: enough for one AVX-512 register.
const LANES: usize = 16;

#[inline(always)]
fn softmax_loop(values: &mut [f32], row: usize) {
    if cfg!(target_arch = "wasm32") {
        return softmax_lanes(values, row);
    }
    for r in values.chunks_exact_mut(row) {
        let first = r[0];
        let (head, rest) = r.as_chunks_mut::<LANES>();
        // The row's last, partial run of lanes goes through the same vector
        // code in a full one, padded with what changes nothing: the row's
        // first value for the maximum, −∞ (whose exponential is 0) for the
        // sum.
        let mut tail = [first; LANES];
        tail[..rest.len()].copy_from_slice(rest);
        // Lane-wise partial maxima (a NaN is passed over).
        let mut lane_max = [f32::NEG_INFINITY; LANES];
        for c in head.iter().chain([&tail]) {
            for i in 0..LANES {
                lane_max[i] = larger(lane_max[i], c[i]);
            }
        }
        let max = lane_max.into_iter().fold(f32::NEG_INFINITY, larger);
        if !max.is_finite() {
            // A row holding +∞, or only −∞ and NaN: the textbook form says
            // what it means.
            softmax_scalar(r);
            continue;
        }
        tail[rest.len()..].fill(f32::NEG_INFINITY);
        let mut partial = [0.0f32; LANES];
        for c in head.iter_mut() {
            exp_and_sum(c, max, &mut partial);
        }
        exp_and_sum(&mut tail, max, &mut partial);
        rest.copy_from_slice(&tail[..rest.len()]);
        let sum = partial.iter().sum::<f32>();
        // A NaN anywhere makes the sum NaN, and every value of the
        // textbook form's result (as it does here).
        let inv = 1.0 / sum;
        for v in r.iter_mut() {
            *v *= inv;
        }
    }
}

/// Softmax's second pass over one run of lanes: e^(v − max) in place, and
/// its lane-wise sums.
#[inline(always)]
fn exp_and_sum(c: &mut [f32; LANES], max: f32, sum: &mut [f32; LANES]) {
    for i in 0..LANES {
        c[i] = exp_nonpositive(c[i] - max);
        sum[i] += c[i];
    }
}

/// The larger of `a` and `b`, `a` when `b` is NaN. Written as a comparison:
/// `f32::max` (IEEE maxNum) has no SIMD128 instruction and would become one
/// libm call per value in the browser build.
#[inline(always)]
fn larger(a: f32, b: f32) -> f32 {
    if b > a { b } else { a }
}

/// The textbook softmax, for rows holding an infinity or a NaN.
fn softmax_scalar(r: &mut [f32]) {
    let max = r.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0;
    for v in r.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in r.iter_mut() {
        *v /= sum;
    }
}

/// e^x for x ≤ 0 (what softmax feeds it), within 2 f32 ulps; 0 below −87
/// (where e^x leaves f32's normal range).
/// x = n·ln2 + r with |r| ≤ ln2/2, e^r from its degree-7 Taylor polynomial,
/// 2^n written straight into the exponent bits. Branch-free.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding then subtracting 1.5·2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let underflow = x < -87.0;
    let x = if underflow { -87.0 } else { x };
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    // n as an integer, read from t's low mantissa bits (`as i32` would not vectorise).
    let n_int = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let scale = f32::from_bits((n_int.wrapping_add(127) as u32) << 23);
    if underflow { 0.0 } else { p * scale }
}

simd_dispatch! {
    /// Φ(x) into `cdf` and x·φ(x) into `slope` (both hold x on entry): GELU's
    /// value is x·Φ(x), its derivative Φ(x) + x·φ(x).
    pub fn gelu_parts(cdf: &mut [f32], slope: &mut [f32]) => gelu_parts_loop
}

#[inline(always)]
fn gelu_parts_loop(cdf: &mut [f32], slope: &mut [f32]) {
    // 1/√(2π)
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    for (c, s) in cdf.iter_mut().zip(slope.iter_mut()) {
        let x = *c;
        *c = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
        *s = x * INV_SQRT_2PI * exp_nonpositive(-0.5 * x * x);
    }
}

simd_dispatch! {
    /// GELU of every value in place, as [`gelu_in_place`] (bit for bit),
    /// and its slope there, Φ(x) + x·φ(x), into `slope`: a forward pass
    /// that keeps what the backward pass needs, erf taken once.
    pub fn gelu_keeping_slope(values: &mut [f32], slope: &mut [f32]) => gelu_keeping_slope_loop
}

#[inline(always)]
fn gelu_keeping_slope_loop(values: &mut [f32], slope: &mut [f32]) {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let density = |x: f32| x * INV_SQRT_2PI * exp_nonpositive(-0.5 * x * x);
    if cfg!(target_arch = "wasm32") {
        return gelu_keeping_slope_lanes(values, slope);
    }
    for (v, s) in values.iter_mut().zip(slope.iter_mut()) {
        let x = *v;
        let e = erf(x * std::f32::consts::FRAC_1_SQRT_2);
        *v = 0.5 * x * (1.0 + e);
        *s = 0.5 * (1.0 + e) + density(x);
    }
}

#[inline(always)]
fn gelu_loop(values: &mut [f32]) {
    if cfg!(target_arch = "wasm32") {
        return gelu_lanes(values);
    }
    for v in values.iter_mut() {
        let x = *v;
        *v = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// erf's numerator (odd, in x·x²ⁱ) and denominator (even) coefficients, highest first.
#[allow(clippy::excessive_precision)]
const ERF_ALPHA: [f32; 7] = [
    -2.72614225801306e-10,
    2.77068142495902e-08,
    -2.10102402082508e-06,
    -5.69250639462346e-05,
    -7.34990630326855e-04,
    -2.95459980854025e-03,
    -1.60960333262415e-02,
];
#[allow(clippy::excessive_precision)]
const ERF_BETA: [f32; 5] = [
    -1.45660718464996e-05,
    -2.13374055278905e-04,
    -1.68282697438203e-03,
    -7.37332916720468e-03,
    -1.42647390514189e-02,
];

/// erf(x) to within a few f32 ulps: an odd degree-13 polynomial over an even
/// degree-8 one in x clamped to [-4, 4] (beyond which erf is ±1 in f32).
/// The coefficients are the minimax fit used by Eigen and XLA for float erf.
/// Branch-free, so a loop of it vectorises.
#[inline(always)]
#[allow(clippy::excessive_precision)]
pub fn erf(x: f32) -> f32 {
    // Comparisons rather than `clamp`, which the browser build would turn
    // into libm calls (see [`larger`]); NaN stays NaN.
    #[allow(clippy::manual_clamp)]
    let x = if x < -4.0 {
        -4.0
    } else if x > 4.0 {
        4.0
    } else {
        x
    };
    let x2 = x * x;
    let mut p = ERF_ALPHA[0];
    for a in &ERF_ALPHA[1..] {
        p = p * x2 + a;
    }
    let mut q = ERF_BETA[0];
    for b in &ERF_BETA[1..] {
        q = q * x2 + b;
    }
    x * p / q
}

/// [`softmax_loop`] written with explicit four-lane vectors, for the wasm
/// build (see [`super::lanes`]); the partial sums run over 4 lanes, not 16.
fn softmax_lanes(values: &mut [f32], row: usize) {
    let whole = row / 4 * 4;
    for r in values.chunks_exact_mut(row) {
        let (head, tail) = r.split_at_mut(whole);
        let (mut max4, mut bad4) = (F4::splat(f32::NEG_INFINITY), F4::zero());
        for c in head.chunks_exact(4) {
            let v = F4::read(c);
            max4 = max4.max(v);
            bad4 = bad4.add(v.mul(F4::zero()));
        }
        let mut max = max4.to_array().into_iter().fold(f32::NEG_INFINITY, larger);
        let mut bad: f32 = bad4.to_array().iter().sum();
        for &v in tail.iter() {
            max = larger(max, v);
            bad += v * 0.0;
        }
        if bad != 0.0 {
            softmax_scalar(r);
            continue;
        }
        let (max4, mut sum4) = (F4::splat(max), F4::zero());
        for c in head.chunks_exact_mut(4) {
            let e = exp_nonpositive_lanes(F4::read(c).sub(max4));
            e.write(c);
            sum4 = sum4.add(e);
        }
        let mut sum: f32 = sum4.to_array().iter().sum();
        for v in tail.iter_mut() {
            *v = exp_nonpositive(*v - max);
            sum += *v;
        }
        let inv = 1.0 / sum;
        let inv4 = F4::splat(inv);
        for c in head.chunks_exact_mut(4) {
            F4::read(c).mul(inv4).write(c);
        }
        for v in tail.iter_mut() {
            *v *= inv;
        }
    }
}

/// [`gelu_loop`] with explicit four-lane vectors, for the wasm build.
fn gelu_lanes(values: &mut [f32]) {
    let mut chunks = values.chunks_exact_mut(4);
    let (half, one, scale) = (
        F4::splat(0.5),
        F4::splat(1.0),
        F4::splat(std::f32::consts::FRAC_1_SQRT_2),
    );
    for c in &mut chunks {
        let x = F4::read(c);
        half.mul(x).mul(one.add(erf_lanes(x.mul(scale)))).write(c);
    }
    for v in chunks.into_remainder() {
        let x = *v;
        *v = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// [`gelu_keeping_slope_loop`] with explicit four-lane vectors, for the
/// wasm build: the values as [`gelu_lanes`] makes them.
fn gelu_keeping_slope_lanes(values: &mut [f32], slope: &mut [f32]) {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let mut chunks = values.chunks_exact_mut(4);
    let mut slopes = slope.chunks_exact_mut(4);
    let (half, one, scale) = (
        F4::splat(0.5),
        F4::splat(1.0),
        F4::splat(std::f32::consts::FRAC_1_SQRT_2),
    );
    for (c, s) in (&mut chunks).zip(&mut slopes) {
        let x = F4::read(c);
        let e = erf_lanes(x.mul(scale));
        half.mul(x).mul(one.add(e)).write(c);
        let density = x
            .mul(F4::splat(INV_SQRT_2PI))
            .mul(exp_nonpositive_lanes(F4::splat(-0.5).mul(x).mul(x)));
        half.mul(one.add(e)).add(density).write(s);
    }
    for (v, s) in chunks
        .into_remainder()
        .iter_mut()
        .zip(slopes.into_remainder())
    {
        let x = *v;
        let e = erf(x * std::f32::consts::FRAC_1_SQRT_2);
        *v = 0.5 * x * (1.0 + e);
        *s = 0.5 * (1.0 + e) + x * INV_SQRT_2PI * exp_nonpositive(-0.5 * x * x);
    }
}

/// [`exp_nonpositive`], four lanes at a time, the same operations in the same order.
#[inline(always)]
fn exp_nonpositive_lanes(x: F4) -> F4 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0;
    let clamped = x.max(F4::splat(-87.0));
    let t = clamped
        .mul(F4::splat(std::f32::consts::LOG2_E))
        .add(F4::splat(ROUND));
    let n = t.sub(F4::splat(ROUND));
    let r = clamped
        .sub(n.mul(F4::splat(LN2_HI)))
        .sub(n.mul(F4::splat(LN2_LO)));
    let mut p = F4::splat(1.0 / 5040.0);
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = F4::splat(c).add(r.mul(p));
    }
    p.mul(t.pow2_of_rounded(ROUND)).zero_where_below(x, -87.0)
}

/// [`erf`], four lanes at a time, the same operations in the same order.
#[inline(always)]
fn erf_lanes(x: F4) -> F4 {
    let x = x.max(F4::splat(-4.0)).min(F4::splat(4.0));
    let x2 = x.mul(x);
    let mut p = F4::splat(ERF_ALPHA[0]);
    for a in &ERF_ALPHA[1..] {
        p = p.mul(x2).add(F4::splat(*a));
    }
    let mut q = F4::splat(ERF_BETA[0]);
    for b in &ERF_BETA[1..] {
        q = q.mul(x2).add(F4::splat(*b));
    }
    x.mul(p).div(q)
}

#[cfg(test)]
mod tests;
