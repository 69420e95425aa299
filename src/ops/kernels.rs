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
        // Lane-wise partial maxima, and v·0 (0, or NaN for ±∞ and NaN)
        // summed: both vectorise, with no early exit.
        let mut lane_max = [f32::NEG_INFINITY; LANES];
        let mut lane_bad = [0.0f32; LANES];
        let mut chunks = r.chunks_exact(LANES);
        for c in &mut chunks {
            for ((v, m), b) in c.iter().zip(lane_max.iter_mut()).zip(lane_bad.iter_mut()) {
                *m = larger(*m, *v);
                *b += v * 0.0;
            }
        }
        let mut max = lane_max
            .iter()
            .fold(f32::NEG_INFINITY, |m, &v| larger(m, v));
        let mut bad: f32 = lane_bad.iter().sum();
        for &v in chunks.remainder() {
            max = larger(max, v);
            bad += v * 0.0;
        }
        if bad != 0.0 {
            // Only rows holding an infinity or a NaN get here; the textbook
            // form says what they mean.
            softmax_scalar(r);
            continue;
        }
        let mut partial = [0.0f32; LANES];
        let mut chunks = r.chunks_exact_mut(LANES);
        for c in &mut chunks {
            for (v, s) in c.iter_mut().zip(partial.iter_mut()) {
                *v = exp_nonpositive(*v - max);
                *s += *v;
            }
        }
        let mut sum: f32 = partial.iter().sum();
        for v in chunks.into_remainder() {
            *v = exp_nonpositive(*v - max);
            sum += *v;
        }
        let inv = 1.0 / sum;
        for v in r.iter_mut() {
            *v *= inv;
        }
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
mod tests {
    use super::*;

    #[test]
    fn erf_matches_libm_everywhere() {
        let xs: Vec<f32> = (-40_960..=40_960).map(|i| i as f32 / 4096.0).collect();
        let reference = libm_erf(&xs);
        let mut worst = (0.0f32, 0.0f32);
        for (&x, &r) in xs.iter().zip(&reference) {
            let err = (erf(x) - r).abs();
            if err > worst.1 {
                worst = (x, err);
            }
        }
        assert!(
            worst.1 < 5e-7,
            "worst |erf - libm| = {} at x = {}",
            worst.1,
            worst.0
        );
        assert_eq!(erf(0.0), 0.0);
        assert_eq!(erf(f32::INFINITY), 1.0);
        assert_eq!(erf(f32::NEG_INFINITY), -1.0);
    }

    #[test]
    fn gelu_matches_burn_on_the_cpu_backend() {
        let device = Device::flex();
        let x = Tensor::<3>::random(
            [2, 7, 333],
            burn::tensor::Distribution::Normal(0.0, 3.0),
            &device,
        );
        let xs = values(x.clone());
        let (ours, burn) = (values(gelu(x.clone())), values(activation::gelu(x)));
        // Both are x/2·(1 + erf(x/√2)) in float32: each erf within ERF_ERROR
        // of the exact one (ours is tested against libm below, libm's is
        // within an ulp), then three roundings each. A bound on any
        // processor, whatever the order of operations.
        for ((&x, &a), &b) in xs.iter().zip(&ours).zip(&burn) {
            let allowed = x.abs() * ERF_ERROR + 6.0 * U as f32 * a.abs().max(b.abs());
            assert!(
                (a - b).abs() <= allowed,
                "gelu({x}): {a} vs {b}, allowed {allowed}"
            );
        }
    }

    #[test]
    fn exp_matches_std() {
        let mut worst = 0.0f32;
        for i in 0..=87 * 4096 {
            let x = -(i as f32) / 4096.0;
            let (ours, std) = (exp_nonpositive(x), x.exp());
            worst = worst.max((ours - std).abs() / std);
        }
        assert!(worst < 4e-7, "worst relative error {worst}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-1000.0), 0.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
    }

    /// The unit roundoff of f32.
    const U: f64 = 1.0 / (1u64 << 24) as f64;
    /// erf's largest distance from the exact one: ours within 5e-7 of
    /// libm's (tested below), libm's within an ulp (6e-8) of the exact.
    const ERF_ERROR: f32 = 5.6e-7;
    /// exp_nonpositive's largest relative error (tested above).
    const EXP_ERROR: f64 = 4e-7;

    /// Checks a float32 softmax of `x` (rows of `row`) against the exact one,
    /// within what float32 allows on any processor and in any summation
    /// order: each e^(x−max) carries exp's error plus the rounding of
    /// x − max magnified by |x − max|; the sum of n positive terms is within
    /// γₙ = n·u/(1 − n·u) of the exact sum (Higham, Accuracy and Stability
    /// of Numerical Algorithms, §4.2); the reciprocal and the product round
    /// once each.
    fn check_softmax(what: &str, x: &[f32], got: &[f32], row: usize) {
        let gamma = row as f64 * U / (1.0 - row as f64 * U);
        for (r, (xs, ps)) in x.chunks(row).zip(got.chunks(row)).enumerate() {
            let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let exps: Vec<f64> = xs.iter().map(|&v| (v as f64 - max).exp()).collect();
            let sum: f64 = exps.iter().sum();
            let term = |v: f32| EXP_ERROR + (max - v as f64) * U;
            let worst_term = xs.iter().map(|&v| term(v)).fold(0.0, f64::max);
            for ((&v, &p), e) in xs.iter().zip(ps).zip(&exps) {
                let exact = e / sum;
                let relative = (term(v) + worst_term + gamma + 2.0 * U) * 1.01;
                let allowed = exact * relative + f32::MIN_POSITIVE as f64;
                assert!(
                    (p as f64 - exact).abs() <= allowed,
                    "{what}, row {r}: {p} vs exact {exact}, allowed {allowed:e}"
                );
            }
        }
    }

    #[test]
    fn softmax_is_within_float32s_bound_of_the_exact_one() {
        let device = Device::flex();
        for row in [1, 3, 4, 5, 16, 50, 197] {
            let x = Tensor::<2>::random(
                [9, row],
                burn::tensor::Distribution::Normal(0.0, 8.0),
                &device,
            );
            let xs = values(x.clone());
            check_softmax("softmax_last", &xs, &values(softmax_last(x.clone())), row);
            check_softmax(
                "burn's softmax",
                &xs,
                &values(activation::softmax(x, 1)),
                row,
            );
            let mut lanes = xs.clone();
            softmax_lanes(&mut lanes, row);
            check_softmax("the browser build's softmax", &xs, &lanes, row);
        }
    }

    #[test]
    fn softmax_of_non_finite_rows_is_what_the_formula_says() {
        let mut v = vec![
            0.0,
            f32::NEG_INFINITY,
            0.0,
            1.0,
            f32::INFINITY,
            2.0,
            1.0,
            f32::NAN,
            2.0,
        ];
        softmax_rows(&mut v, 3);
        assert_eq!(&v[..3], &[0.5, 0.0, 0.5]);
        assert!(v[3..6].iter().any(|x| x.is_nan()));
        assert!(v[6..].iter().all(|x| x.is_nan()));
    }

    #[test]
    fn gelu_under_autodiff_has_burns_value_and_gradient() {
        let device = Device::flex().autodiff();
        assert!(!is_plain_cpu(&device));
        let start = Tensor::<2>::random(
            [3, 500],
            burn::tensor::Distribution::Normal(0.0, 3.0),
            &Device::flex(),
        );
        let weights = Tensor::<2>::random(
            [3, 500],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let run = |f: fn(Tensor<2>) -> Tensor<2>| {
            let x = start.clone().autodiff().require_grad();
            let y = f(x.clone());
            let grads = (y.clone() * weights.clone()).sum().backward();
            (values(y.inner()), values(x.grad(&grads).unwrap()))
        };
        let (ours, ours_grad) = run(gelu);
        let (burn, burn_grad) = run(activation::gelu);
        // The value as in gelu_matches_burn_on_the_cpu_backend; the gradient
        // w·(Φ(x) + x·φ(x)): Φ from erf (half its error), x·φ(x) ≤ 1/4 from
        // exp, a few roundings.
        let (xs, ws) = (values(start), values(weights.inner()));
        for i in 0..xs.len() {
            let (x, w) = (xs[i], ws[i]);
            let allowed = x.abs() * ERF_ERROR + 6.0 * U as f32 * ours[i].abs().max(burn[i].abs());
            assert!(
                (ours[i] - burn[i]).abs() <= allowed,
                "value at {x}: {} vs {}",
                ours[i],
                burn[i]
            );
            let (a, b) = (ours_grad[i], burn_grad[i]);
            let allowed = w.abs() * (ERF_ERROR + 0.25 * EXP_ERROR as f32 + 8.0 * U as f32)
                + 8.0 * U as f32 * a.abs().max(b.abs());
            assert!(
                (a - b).abs() <= allowed,
                "gradient at {x}: {a} vs {b}, allowed {allowed}"
            );
        }
    }

    #[test]
    fn the_browser_builds_lanes_match_the_scalar_kernels_bit_for_bit() {
        let lanes = |f: fn(F4) -> F4, xs: &[f32]| -> Vec<f32> {
            xs.chunks_exact(4)
                .flat_map(|c| f(F4::read(c)).to_array())
                .collect()
        };
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let mut xs: Vec<f32> = (0..=110 * 1024).map(|i| -(i as f32) / 1024.0).collect();
        xs.extend([f32::NEG_INFINITY, -0.0, -1e-30, -87.0]);
        xs.truncate(xs.len() / 4 * 4);
        let scalar: Vec<f32> = xs.iter().map(|&x| exp_nonpositive(x)).collect();
        assert_eq!(
            bits(&lanes(exp_nonpositive_lanes, &xs)),
            bits(&scalar),
            "exp"
        );

        let mut xs: Vec<f32> = (-12 * 1024..12 * 1024).map(|i| i as f32 / 1024.0).collect();
        xs.extend([f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 0.0]);
        let scalar: Vec<f32> = xs.iter().map(|&x| erf(x)).collect();
        assert_eq!(bits(&lanes(erf_lanes, &xs)), bits(&scalar), "erf");

        // 4k + 3 values: the lanes and the scalar tail.
        let mut ours = xs[..xs.len() - 1].to_vec();
        let mut theirs = ours.clone();
        gelu_lanes(&mut ours);
        gelu_loop(&mut theirs);
        assert_eq!(bits(&ours), bits(&theirs), "gelu");
    }

    #[test]
    fn the_browser_builds_softmax_of_non_finite_rows_is_what_the_formula_says() {
        // (Its finite rows are held to float32's bound above.)
        let mut v = vec![
            0.0,
            f32::NEG_INFINITY,
            0.0,
            7.0,
            1.0,
            f32::INFINITY,
            2.0,
            1.0,
            9.0,
        ];
        softmax_lanes(&mut v, 9);
        assert!(v.iter().all(|x| x.is_nan()), "{v:?}");
        let mut v = vec![0.0, f32::NEG_INFINITY, 0.0, 0.0, 0.0];
        softmax_lanes(&mut v, 5);
        assert_eq!(v, [0.25, 0.0, 0.25, 0.25, 0.25]);
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_into_vec().unwrap()
    }

    /// libm's erff, through Burn's flex backend.
    fn libm_erf(xs: &[f32]) -> Vec<f32> {
        values(Tensor::<1>::from_floats(xs, &Device::flex()).erf())
    }
}
