//! The tests of `ops::kernels`.

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

    // GELU keeping its slope: the same values and slopes both ways.
    let (mut ours, mut theirs) = (xs[..xs.len() - 1].to_vec(), xs[..xs.len() - 1].to_vec());
    let (mut our_slope, mut their_slope) = (vec![0.0; ours.len()], vec![0.0; ours.len()]);
    gelu_keeping_slope_lanes(&mut ours, &mut our_slope);
    gelu_keeping_slope_loop(&mut theirs, &mut their_slope);
    assert_eq!(bits(&ours), bits(&theirs), "gelu keeping its slope");
    assert_eq!(bits(&our_slope), bits(&their_slope), "gelu's slope");
}

/// The forward pass that keeps GELU's slope gives GELU's values bit for
/// bit, and the slope Φ(x) + x·φ(x) of [`gelu_parts`] (which the autodiff
/// test holds to Burn's gradient).
#[test]
fn gelu_keeping_its_slope_is_gelu_and_its_parts() {
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let xs: Vec<f32> = (-9 * 512..9 * 512 + 3).map(|i| i as f32 / 512.0).collect();
    let (mut values, mut slope) = (xs.clone(), vec![0.0; xs.len()]);
    gelu_keeping_slope(&mut values, &mut slope);
    let mut gelu = xs.clone();
    gelu_in_place(&mut gelu);
    assert_eq!(bits(&values), bits(&gelu), "values");
    let (mut cdf, mut density) = (xs.clone(), xs.clone());
    gelu_parts(&mut cdf, &mut density);
    let parts: Vec<f32> = cdf.iter().zip(&density).map(|(c, d)| c + d).collect();
    assert_eq!(bits(&slope), bits(&parts), "slope");
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
