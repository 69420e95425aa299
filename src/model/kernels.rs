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

/// Defines `pub fn $name(args)` running the `#[inline(always)]` loop `$body`
/// compiled for AVX-512 or AVX2+FMA when the CPU has them (checked at run
/// time, so one binary serves every x86-64), and as plain code otherwise
/// (which the wasm build's `+simd128` vectorises).
macro_rules! simd_dispatch {
    ($(#[$doc:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) => $body:ident) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (checked just above).
                    return unsafe { avx512($($arg),*) };
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

fn f32_values<const D: usize>(x: Tensor<D>) -> Vec<f32> {
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
fn is_plain_cpu(device: &Device) -> bool {
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
    for r in values.chunks_exact_mut(row) {
        let max = r.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        // `|` rather than `any`: no early exit, so the scan vectorises.
        let nan = r.iter().fold(false, |seen, v| seen | v.is_nan());
        if !max.is_finite() || nan {
            // Only non-finite scores get here; the textbook form says what they mean.
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
    let x = x.max(-87.0);
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
    for v in values.iter_mut() {
        let x = *v;
        *v = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// erf(x) to within a few f32 ulps: an odd degree-13 polynomial over an even
/// degree-8 one in x clamped to [-4, 4] (beyond which erf is ±1 in f32).
/// The coefficients are the minimax fit used by Eigen and XLA for float erf.
/// Branch-free, so a loop of it vectorises.
#[inline(always)]
#[allow(clippy::excessive_precision)]
pub fn erf(x: f32) -> f32 {
    const ALPHA: [f32; 7] = [
        -2.72614225801306e-10,
        2.77068142495902e-08,
        -2.10102402082508e-06,
        -5.69250639462346e-05,
        -7.34990630326855e-04,
        -2.95459980854025e-03,
        -1.60960333262415e-02,
    ];
    const BETA: [f32; 5] = [
        -1.45660718464996e-05,
        -2.13374055278905e-04,
        -1.68282697438203e-03,
        -7.37332916720468e-03,
        -1.42647390514189e-02,
    ];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = ALPHA[0];
    for a in &ALPHA[1..] {
        p = p * x2 + a;
    }
    let mut q = BETA[0];
    for b in &BETA[1..] {
        q = q * x2 + b;
    }
    x * p / q
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
        let worst = max_diff(&values(gelu(x.clone())), &values(activation::gelu(x)));
        assert!(worst < 2e-6, "worst difference {worst}");
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

    #[test]
    fn softmax_matches_burn_on_the_cpu_backend() {
        let device = Device::flex();
        for row in [1, 5, 16, 50, 197] {
            let x = Tensor::<4>::random(
                [2, 3, 7, row],
                burn::tensor::Distribution::Normal(0.0, 8.0),
                &device,
            );
            let worst = max_diff(
                &values(softmax_last(x.clone())),
                &values(activation::softmax(x, 3)),
            );
            assert!(worst < 1e-6, "row {row}: worst difference {worst}");
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
        let (value, gradient) = (max_diff(&ours, &burn), max_diff(&ours_grad, &burn_grad));
        assert!(value < 2e-6, "value: {value}");
        assert!(gradient < 2e-6, "gradient: {gradient}");
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_into_vec().unwrap()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }

    /// libm's erff, through Burn's flex backend.
    fn libm_erf(xs: &[f32]) -> Vec<f32> {
        values(Tensor::<1>::from_floats(xs, &Device::flex()).erf())
    }
}
