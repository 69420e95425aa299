//! The papers' figures against PyTorch: each token's length after each
//! block and the registers' share of the class token's attention, on the
//! timm fixtures' golden images (`tests/fixtures/make_figures.py`, float64
//! references); position similarity against the walk-through's references;
//! the patch embedding's principal components against torch.linalg.eigh in
//! float64.
//!
//! Bounds as in tests/golden.rs: twice PyTorch float32's own distance from
//! the float64 values on the same image, and never less than a floor: for
//! the norms 2.5e-6 of the largest (2.5 times the largest relative error
//! PyTorch float32 shows on these fixtures, make_figures.py prints it), for
//! the shares 1e-5 (golden.rs's attention floor).

mod common;

use burn::tensor::Device;
use common::*;
use pollster::FutureExt;
use vitrine::{Checkpoint, Classifier};

const NORM_FLOOR: f32 = 2.5e-6;
const SHARE_FLOOR: f32 = 1e-5;

fn check(model: &str, device: &Device, label: &str) {
    let ck = Checkpoint::from_path(&fixtures().join("models").join(model)).expect("fixture loads");
    let config = ck.config.clone();
    let classifier = Classifier::new(ck, device.clone());
    let g = golden(model);
    let f = golden("figures");
    let mut failures = Vec::new();
    for stem in stems(&g) {
        let input = &g[&format!("{stem}.input")].1;
        let got = classifier.token_figures(input).block_on();
        let key = format!("{model}.{stem}");
        let error = &f[&format!("{key}.torch_f32_error")].1;

        let (shape, want) = &f[&format!("{key}.token_norms")];
        assert_eq!(
            shape,
            &[config.depth, config.num_tokens()],
            "{key}: norms' shape"
        );
        let tol = (2.0 * error[0]).max(NORM_FLOOR * largest(want));
        let d = max_abs_diff(&got.token_norms, want);
        println!("{key} ({label}): token norms |vitrine - float64| {d:.2e} (allowed {tol:.1e})");
        if d > tol {
            failures.push(format!(
                "{key}: token norms off by {d:e}, more than {tol:e} ({label})"
            ));
        }

        match f.get(&format!("{key}.register_share")) {
            Some((shape, want)) => {
                assert_eq!(
                    shape,
                    &[config.depth, config.num_heads],
                    "{key}: shares' shape"
                );
                let tol = (2.0 * error[1]).max(SHARE_FLOOR);
                let d = max_abs_diff(&got.register_share, want);
                println!(
                    "{key} ({label}): registers' share |vitrine - float64| {d:.2e} (allowed {tol:.1e})"
                );
                if d > tol {
                    failures.push(format!("{key}: registers' share off by {d:e} ({label})"));
                }
            }
            None => assert!(
                got.register_share.is_empty(),
                "{key}: no registers, no share"
            ),
        }

        // The walk-through's references hold the rows of its focus patches.
        let (_, patches) = &g["walk_patches"];
        let (_, want) = &g["position_similarity"];
        let n = config.num_patches();
        assert_eq!(got.position_similarity.len(), n * n, "{key}: [N, N]");
        let rows: Vec<f32> = patches
            .iter()
            .flat_map(|&p| got.position_similarity[p as usize * n..(p as usize + 1) * n].to_vec())
            .collect();
        let d = max_abs_diff(&rows, want);
        if d > 1e-5 {
            failures.push(format!("{key}: position similarity off by {d:e} ({label})"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

const MODELS: [&str; 4] = ["timm_tiny", "timm_reg4", "timm_deit_dist", "timm_gap"];

#[test]
fn cpu_figures_match_pytorch() {
    for model in MODELS {
        check(model, &Device::flex(), "cpu");
    }
}

#[test]
fn wgpu_figures_match_pytorch() {
    let Some(device) = wgpu_device() else { return };
    for model in MODELS {
        check(model, &device, "wgpu");
    }
}

/// The patch embedding's first principal components and their shares of
/// the variance, within twice float32's own distance (torch.linalg.eigh on
/// the float32 covariance), and at least 1e-6 (shares) and 1e-4 (each
/// component's entries, up to its sign).
#[test]
fn filter_components_match_pytorch() {
    for model in ["timm_tiny", "timm_d96", "timm_gray"] {
        let ck =
            Checkpoint::from_path(&fixtures().join("models").join(model)).expect("fixture loads");
        let built = ck.build(&Device::flex());
        let got = vitrine::figures::filter_components(&built, 28).block_on();
        let f = golden("figures");
        let (shape, want) = &f[&format!("{model}.filters.components")];
        let [k, len] = [shape[0], shape[1]];
        let error = &f[&format!("{model}.filters.torch_f32_error")].1;
        let variance = &f[&format!("{model}.filters.variance")].1;
        assert_eq!(
            (got.variance.len(), got.components.len()),
            (k, k * len),
            "{model}: sizes"
        );
        let d = max_abs_diff(&got.variance, variance);
        assert!(
            d <= (2.0 * error[0]).max(1e-6),
            "{model}: shares off by {d:e}"
        );
        for i in 0..k {
            let (a, b) = (
                &got.components[i * len..(i + 1) * len],
                &want[i * len..(i + 1) * len],
            );
            let flipped: Vec<f32> = b.iter().map(|v| -v).collect();
            let d = max_abs_diff(a, b).min(max_abs_diff(a, &flipped));
            let tol = (2.0 * error[1 + i]).max(1e-4);
            assert!(
                d <= tol,
                "{model}: component {i} off by {d:e} (allowed {tol:e})"
            );
        }
    }
}

/// The PCA of patch features as colour (DINOv2's figure) over each golden
/// image alone, over a model's images together, and without the foreground
/// step: the same foreground, and the first component, the colours (each
/// channel up to its sign: c or 1 − c) and the shares within twice
/// float32's own distance (make_figures.py runs the forward and eigh in
/// float32 too), and at least 1e-4 (as the filters' components).
fn check_feature_pca(device: &Device, label: &str) {
    let f = golden("figures");
    for model in ["timm_tiny", "timm_reg4"] {
        let ck =
            Checkpoint::from_path(&fixtures().join("models").join(model)).expect("fixture loads");
        let classifier = Classifier::new(ck, device.clone());
        let g = golden(model);
        let stems = stems(&g);
        let mut sets: Vec<(Vec<String>, bool)> =
            stems.iter().map(|s| (vec![s.clone()], true)).collect();
        if stems.len() > 1 {
            sets.push((stems.clone(), true));
        }
        sets.push((stems.clone(), false));
        for (images, split) in sets {
            let key = format!(
                "{model}.pca.{}",
                if split {
                    images.join("+")
                } else {
                    "all".into()
                }
            );
            let inputs: Vec<&[f32]> = images
                .iter()
                .map(|s| g[&format!("{s}.input")].1.as_slice())
                .collect();
            let got = classifier.feature_pca(&inputs, split).block_on();
            let error = &f[&format!("{key}.torch_f32_error")].1;
            let want = |what: &str| &f[&format!("{key}.{what}")].1;
            let flat = |v: &Vec<Vec<f32>>| v.concat();
            let foreground: Vec<f32> = got.foreground.concat().iter().map(|&b| b as f32).collect();
            assert_eq!(
                foreground,
                *want("foreground"),
                "{key} ({label}): foreground"
            );
            let d_first = max_abs_diff(&flat(&got.first), want("first"));
            let rgb = flat(&got.rgb);
            let d_rgb = (0..3)
                .map(|c| {
                    let a: Vec<f32> = rgb.iter().skip(c).step_by(3).copied().collect();
                    let b: Vec<f32> = want("rgb").iter().skip(c).step_by(3).copied().collect();
                    // Flipped where foreground: the background stays 0.
                    let flipped: Vec<f32> = b
                        .iter()
                        .zip(&foreground)
                        .map(|(v, &fg)| if fg > 0.0 { 1.0 - v } else { 0.0 })
                        .collect();
                    max_abs_diff(&a, &b).min(max_abs_diff(&a, &flipped))
                })
                .fold(0.0f32, f32::max);
            let mut shares = got.variance.clone();
            shares.push(got.first_variance);
            let d_shares = max_abs_diff(&shares, want("variance"));
            println!(
                "{key} ({label}): |vitrine - float64| first {d_first:.2e}, rgb {d_rgb:.2e}, shares {d_shares:.2e}"
            );
            for (what, d, e) in [
                ("first", d_first, error[0]),
                ("rgb", d_rgb, error[1]),
                ("shares", d_shares, error[2]),
            ] {
                let tol = (2.0 * e).max(1e-4);
                assert!(
                    d <= tol,
                    "{key} ({label}): {what} off by {d:e} (allowed {tol:e})"
                );
            }
        }
    }
}

#[test]
fn cpu_feature_pca_matches_pytorch() {
    check_feature_pca(&Device::flex(), "cpu");
}

#[test]
fn wgpu_feature_pca_matches_pytorch() {
    let Some(device) = wgpu_device() else { return };
    check_feature_pca(&device, "wgpu");
}
