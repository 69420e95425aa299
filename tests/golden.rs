//! Golden tests: vitrine against timm and transformers (PyTorch) on real
//! photos, from fixtures made by `tests/fixtures/make_fixtures.py`.
//!
//! Logits within 1e-4, attention within 1e-5, top-5 identical; vitrine's own
//! preprocessing within 0.01 mean absolute difference of the reference input,
//! with the same top-1 class.

mod common;

use burn::tensor::Device;
use common::*;
use vitrine::engine::top_k;
use vitrine::{Checkpoint, Classifier, backend};

const MODELS: [&str; 4] = ["timm_tiny", "timm_d96", "timm_gray", "hf_vit"];

fn top5(v: &[f32]) -> Vec<usize> {
    top_k(v, 5).into_iter().map(|(i, _)| i).collect()
}

/// Runs every golden image of `model` through `classifier` from the reference input.
fn check_against_reference(model: &str, classifier: &Classifier, logit_tol: f32, attn_tol: f32) {
    let g = golden(model);
    let last = classifier.config.depth - 1;
    for stem in stems(&g) {
        let input = &g[&format!("{stem}.input")].1;
        let pred = classifier.classify_input_blocking(input, Some(last));
        let want_logits = &g[&format!("{stem}.logits")].1;
        let d_logits = max_abs_diff(&pred.logits, want_logits);
        let d_cls = max_abs_diff(&pred.attention.cls, &g[&format!("{stem}.cls_attention")].1);
        let d_full = max_abs_diff(
            pred.layer_attention.as_ref().unwrap(),
            &g[&format!("{stem}.attn_last")].1,
        );
        let d_roll = max_abs_diff(&pred.rollout, &g[&format!("{stem}.rollout")].1);
        println!(
            "{model}/{stem}: logits {d_logits:.2e}, cls attention {d_cls:.2e}, last layer {d_full:.2e}, rollout {d_roll:.2e}"
        );
        assert!(
            d_roll <= attn_tol,
            "{model}/{stem}: rollout differs by {d_roll}"
        );
        assert!(
            d_logits <= logit_tol,
            "{model}/{stem}: logits differ by {d_logits}"
        );
        assert!(
            d_cls <= attn_tol,
            "{model}/{stem}: CLS attention differs by {d_cls}"
        );
        assert!(
            d_full <= attn_tol,
            "{model}/{stem}: last-layer attention differs by {d_full}"
        );
        assert_eq!(
            top5(&pred.logits),
            top5(want_logits),
            "{model}/{stem}: top-5"
        );
    }
}

#[test]
fn cpu_matches_pytorch_on_every_fixture() {
    for model in MODELS {
        let ck =
            Checkpoint::from_path(&fixtures().join("models").join(model)).expect("fixture loads");
        let classifier = Classifier::new(&ck, Device::flex());
        check_against_reference(model, &classifier, 1e-4, 1e-5);
    }
}

#[test]
fn preprocessing_matches_timm_and_transformers_on_real_photos() {
    for model in MODELS {
        let ck = Checkpoint::from_path(&fixtures().join("models").join(model)).unwrap();
        let classifier = Classifier::new(&ck, Device::flex());
        let g = golden(model);
        for stem in stems(&g) {
            let img = photo(&stem);
            let ours = vitrine::preprocess::preprocess(
                img.as_raw(),
                img.width(),
                img.height(),
                &ck.preprocess,
            )
            .unwrap();
            let reference = &g[&format!("{stem}.input")].1;
            let mad = mean_abs_diff(&ours, reference);
            let pred = classifier
                .classify_blocking(img.as_raw(), img.width(), img.height(), None)
                .unwrap();
            let want = top5(&g[&format!("{stem}.logits")].1)[0];
            println!(
                "{model}/{stem}: input mean |Δ| {mad:.4}, top-1 {} (reference {want})",
                pred.top(1)[0].0
            );
            assert!(
                mad <= 0.01,
                "{model}/{stem}: preprocessing differs by {mad} on average"
            );
            assert_eq!(
                pred.top(1)[0].0,
                want,
                "{model}/{stem}: top-1 after our preprocessing"
            );
        }
    }
}

#[test]
fn without_config_the_shapes_are_inferred() {
    let dir = fixtures().join("models/timm_tiny");
    let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
    let ck = Checkpoint::from_bytes(&weights, None, None).unwrap();
    let c = &ck.config;
    assert_eq!(
        (c.embed_dim, c.depth, c.num_heads, c.patch_size, c.img_size),
        (192, 4, 3, 16, [224, 224])
    );
    assert_eq!((c.mlp_hidden, c.num_classes, c.in_chans), (768, 1000, 3));
    let notes = ck.notes.join("\n");
    assert!(notes.contains("heads = D/64 = 3"), "{notes}");
    assert!(notes.contains("preprocessing assumed"), "{notes}");
    check_against_reference(
        "timm_tiny",
        &Classifier::new(&ck, Device::flex()),
        1e-4,
        1e-5,
    );

    // A width that is not a multiple of 64 gets one head, and says so.
    let weights = std::fs::read(fixtures().join("models/timm_d96/model.safetensors")).unwrap();
    let ck = Checkpoint::from_bytes(&weights, None, None).unwrap();
    assert_eq!(ck.config.num_heads, 1);
    assert!(
        ck.notes[0].contains("not a multiple of 64"),
        "{:?}",
        ck.notes
    );
}

#[test]
fn hf_labels_come_from_id2label() {
    let ck = Checkpoint::from_path(&fixtures().join("models/hf_vit")).unwrap();
    assert_eq!(
        ck.labels,
        ["cat", "dog", "<b>bold</b> & co", "rocket", "coffee"]
    );
    assert_eq!(ck.layout, vitrine::Layout::HuggingFace);
    assert_eq!(ck.config.norm_eps, 1e-12);
    let ck = Checkpoint::from_path(&fixtures().join("models/timm_d96")).unwrap();
    assert_eq!(ck.labels[1], "trouser");
}

/// The wgpu backend (natively on Vulkan, e.g. Mesa's lavapipe) gives the same numbers.
#[test]
fn wgpu_matches_pytorch() {
    if std::env::var("VITRINE_SKIP_WGPU").is_ok() {
        eprintln!("VITRINE_SKIP_WGPU set: skipping the wgpu comparison");
        return;
    }
    let device = backend::device(backend::BackendKind::Wgpu)
        .expect("a wgpu adapter (install mesa-vulkan-drivers, or set VITRINE_SKIP_WGPU=1)");
    for model in ["timm_tiny", "hf_vit"] {
        let ck = Checkpoint::from_path(&fixtures().join("models").join(model)).unwrap();
        check_against_reference(model, &Classifier::new(&ck, device.clone()), 1e-4, 1e-5);
    }
}
