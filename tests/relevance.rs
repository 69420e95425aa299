//! Relevance maps against PyTorch: gradient-weighted rollout, Chefer et
//! al.'s relevance and each head's gradient-weighted attention, for the top
//! two classes of every golden image of the timm fixtures with a classifier
//! (`tests/fixtures/make_relevance.py`, float64 references).
//!
//! Bounds follow tests/golden.rs: twice PyTorch float32's own distance from
//! the float64 values on the same image and class, and never less than a
//! floor. The maps' scale depends on the model (the gradient of a logit),
//! so the floor is relative to the map's largest value: PyTorch float32's
//! own error reaches 1.2e-5 of it on these fixtures (make_relevance.py
//! prints each), and [`RELATIVE_FLOOR`] is 2.5 times that, the "twice"
//! of golden.rs with room for one draw being PyTorch's luckiest.

mod common;

use burn::tensor::Device;
use common::*;
use pollster::FutureExt;
use vitrine::checkpoint::LoadOptions;
use vitrine::{Checkpoint, Classifier, ClassifyError, F16Matrices};

const MODELS: [&str; 8] = [
    "timm_tiny",
    "timm_d96",
    "timm_gray",
    "timm_deit3",
    "timm_clip",
    "timm_gap",
    "timm_avgmax",
    "timm_deit_dist",
];

const RELATIVE_FLOOR: f32 = 3e-5;

fn classifier(model: &str, device: &Device) -> Classifier {
    let ck = Checkpoint::from_path(&fixtures().join("models").join(model)).expect("fixture loads");
    Classifier::new(ck, device.clone())
}

fn check(model: &str, classifier: &Classifier, label: &str) {
    let g = golden(model);
    let r = golden("relevance");
    let mut failures = Vec::new();
    for stem in stems(&g) {
        let input = &g[&format!("{stem}.input")].1;
        for rank in 0..2 {
            let key = format!("{model}.{stem}.{rank}");
            let class = r[&format!("{key}.class")].1[0] as usize;
            let ratio = f64::from(r[&format!("{key}.discard_ratio")].1[0]);
            let f32_error = &r[&format!("{key}.torch_f32_error")].1;
            let got = classifier
                .relevance_input(input, Some(class), ratio)
                .block_on()
                .expect("relevance");
            assert_eq!(got.maps.class, class);
            let pairs = [
                ("grad-rollout", &got.maps.grad_rollout, "grad_rollout"),
                ("chefer", &got.maps.chefer, "chefer"),
                ("heads", &got.maps.heads_map, "heads"),
            ];
            for (i, (what, ours, name)) in pairs.into_iter().enumerate() {
                let want = &r[&format!("{key}.{name}")].1;
                let tol = (2.0 * f32_error[i]).max(RELATIVE_FLOOR * largest(want));
                let d = max_abs_diff(ours, want);
                println!(
                    "{key} class {class} ({label}): {what} |vitrine - float64| {d:.2e} (allowed {tol:.1e}, largest value {:.1e})",
                    largest(want)
                );
                if d > tol {
                    failures.push(format!(
                        "{key} class {class}: {what} differs from the float64 reference by {d:e}, more than {tol:e} ({label})"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn cpu_relevance_matches_pytorch() {
    let label = format!("CPU, {}", vitrine::ops::kernel_path());
    for model in MODELS {
        check(model, &classifier(model, &Device::flex()), &label);
    }
}

/// With an f16 file's matrices kept in f16 (the page's CPU module), as
/// without.
#[test]
fn cpu_relevance_with_f16_matrices_matches_pytorch() {
    for model in MODELS {
        let ck = LoadOptions::new()
            .f16_matrices(F16Matrices::Keep)
            .open(&fixtures().join("models").join(model))
            .unwrap();
        let classifier = Classifier::new(ck, Device::flex());
        check(model, &classifier, "CPU, matrices kept in f16");
    }
}

#[test]
fn wgpu_relevance_matches_pytorch() {
    let Some(device) = wgpu_device() else { return };
    for model in ["timm_tiny", "timm_deit_dist", "timm_gap"] {
        check(model, &classifier(model, &device), "wgpu");
    }
}

/// Two classes get different maps, and asking for one class first leaves
/// nothing behind that changes another's: the top class's maps are the
/// same, bit for bit, before and after.
#[test]
fn maps_follow_the_class_and_keep_no_state() {
    let c = classifier("timm_tiny", &Device::flex());
    let input = &golden("timm_tiny")["chelsea.input"].1;
    let ratio = vitrine::explain::DISCARD_RATIO;
    let top = c.relevance_input(input, None, ratio).block_on().unwrap();
    let probs = top.probabilities.clone();
    let best = vitrine::engine::top_k(&probs, 2);
    assert_eq!(top.maps.class, best[0].0, "no class asked: the top one");
    let second = c
        .relevance_input(input, Some(best[1].0), ratio)
        .block_on()
        .unwrap();
    let again = c
        .relevance_input(input, Some(best[0].0), ratio)
        .block_on()
        .unwrap();
    assert_eq!(again.maps, top.maps, "the top class's maps changed");
    for which in [
        vitrine::explain::Explanation::GradRollout,
        vitrine::explain::Explanation::Chefer,
    ] {
        let (a, b) = (top.maps.map(which), second.maps.map(which));
        let d = max_abs_diff(a, b);
        assert!(
            d > 0.05 * largest(a),
            "{which:?}: the maps of classes {} and {} are nearly the same (largest difference {d:e})",
            best[0].0,
            best[1].0
        );
    }
    // The logits the maps came with are the classification's (natively
    // the classification takes the fused blocks, the maps Burn's
    // operations, so within float32 rounding).
    let plain = c.classify_input(input, None).block_on().unwrap();
    let d = max_abs_diff(&plain.logits, &top.logits);
    assert!(
        d <= 1e-5 * largest(&plain.logits).max(1.0),
        "logits off by {d:e}"
    );
}

#[test]
fn impossible_questions_get_errors() {
    let c = classifier("timm_d96", &Device::flex());
    let input = &golden("timm_d96")["coffee.input"].1;
    let e = c
        .relevance_input(input, Some(7), 0.9)
        .block_on()
        .unwrap_err();
    assert_eq!(
        e,
        ClassifyError::NoSuchClass {
            class: 7,
            classes: 7
        }
    );
    assert!(e.to_string().contains("0 to 6"), "{e}");
    for bad in [1.0, -0.1, f64::NAN] {
        let e = c.relevance_input(input, None, bad).block_on().unwrap_err();
        assert!(matches!(e, ClassifyError::DiscardRatio(_)), "{bad}: {e}");
    }
    // A pass that needs more memory than allowed is refused, sizes named.
    let needed = c.relevance_bytes();
    let capped = classifier("timm_d96", &Device::flex()).with_relevance_budget(needed - 1);
    let e = capped
        .relevance_input(input, None, 0.9)
        .block_on()
        .unwrap_err();
    assert_eq!(
        e,
        ClassifyError::RelevanceTooLarge {
            needed,
            budget: needed - 1
        }
    );
    assert!(
        e.to_string().contains("a smaller input size needs less"),
        "{e}"
    );
    let fits = classifier("timm_d96", &Device::flex()).with_relevance_budget(needed);
    assert!(fits.relevance_input(input, None, 0.9).block_on().is_ok());
    let backbone = classifier("timm_dino", &Device::flex());
    let input = &golden("timm_dino")["astronaut.input"].1;
    let e = backbone
        .relevance_input(input, None, 0.9)
        .block_on()
        .unwrap_err();
    assert_eq!(e, ClassifyError::NoClassifier);
}
