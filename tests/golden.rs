//! Golden tests: vitrine against timm and transformers (PyTorch) on real
//! photos, from fixtures made by `tests/fixtures/make_fixtures.py`.
//!
//! The references are the exact maths: timm and transformers run in float64
//! on the checkpoint's weights. vitrine computes in float32, so it cannot
//! match them exactly, and how far it lands depends on the order of its sums,
//! which differs between kernel paths (AVX-512, AVX2, wgpu, wasm). So the
//! bound is not tuned on one processor: for each image the fixture records
//! how far PyTorch's own float32 forward pass is from float64
//! (`S.torch_f32_error`: logits, CLS attention, last-layer attention,
//! rollout), and vitrine must be within twice that of the exact values, or
//! within 1e-4 (logits) and 1e-5 (attention, rollout) where PyTorch happens
//! to be closer than half of those; [`tolerances`] has the rule. Twice,
//! because two float32 implementations that round in a different order each
//! land somewhere in a ball of about the same radius around the exact value,
//! and PyTorch's radius is itself one draw, not a maximum. Top-5 must be
//! identical; vitrine's own preprocessing within 0.01 mean absolute
//! difference of the reference input, with the same top-1 class.
//!
//! `./build.sh test` runs the tests twice: with the AVX-512 kernels where
//! the CPU has them, and built without them (`--no-default-features
//! --features cpu,wgpu,train`), which takes the AVX2/FMA path on every x86-64.

mod common;

use burn::tensor::Device;
use common::*;
use pollster::FutureExt;
use vitrine::checkpoint::LoadOptions;
use vitrine::walkthrough::Focus;
use vitrine::{Checkpoint, Classifier, F16Matrices};

const MODELS: [&str; 16] = [
    "timm_tiny",
    "timm_d96",
    "timm_gray",
    "hf_vit",
    "timm_dino",
    "hf_dino",
    "timm_deit3",
    "timm_clip",
    "timm_dinov2",
    "timm_reg4",
    "timm_gap",
    "timm_avgmax",
    "timm_deit_dist",
    "hf_deit",
    "hf_dinov2",
    "hf_dinov2_reg",
];

#[test]
fn cpu_matches_pytorch_on_every_fixture() {
    for model in MODELS {
        let ck =
            Checkpoint::from_path(&fixtures().join("models").join(model)).expect("fixture loads");
        let classifier = Classifier::new(ck, Device::flex());
        check_against_reference(model, &classifier);
    }
}

/// The CPU module in the page keeps an f16 file's weight matrices in f16
/// and widens them inside the matrix kernel: held to the same references
/// and bounds, classification and walk-through, on every fixture (those
/// stored in f32 or bf16 load in f32 as before).
#[test]
fn f16_kept_matrices_match_pytorch_on_every_fixture() {
    let mut kept = 0;
    for model in MODELS {
        let ck = LoadOptions::new()
            .f16_matrices(F16Matrices::Keep)
            .open(&fixtures().join("models").join(model))
            .expect("fixture loads");
        let classifier = Classifier::new(ck, Device::flex());
        let qkv = classifier.model().blocks[0].attn.qkv.weight.val().dtype();
        if qkv == burn::tensor::DType::F16 {
            kept += 1;
        }
        check_against_reference(model, &classifier);
        check_walkthrough(model, &classifier);
    }
    // Thirteen fixtures are stored in f16 (as the hub's files often are).
    assert_eq!(kept, 13, "fixtures that kept f16 matrices");
}

/// The golden fixtures as `torch.save` wrote them (`tests/fixtures/torch/`),
/// each with its model's config, held to the same references and bounds:
/// a bare state dict in the zip archive and in the format before PyTorch
/// 1.6, `pytorch_model.bin` in a transformers folder, and DINO's training
/// checkpoint (the teacher, under `backbone.`, beside the student).
#[test]
fn pytorch_files_match_pytorch() {
    let torch = fixtures().join("torch");
    let with_config = |file: &str, model: &str| {
        let config = std::fs::read(fixtures().join("models").join(model).join("config.json"));
        LoadOptions::new()
            .file_name(file)
            .load(
                &std::fs::read(torch.join(file)).unwrap(),
                Some(&config.unwrap()),
                None,
            )
            .unwrap_or_else(|e| panic!("{file}: {e}"))
    };
    for (ck, model) in [
        (with_config("timm_d96.pth", "timm_d96"), "timm_d96"),
        (with_config("timm_d96_legacy.pth", "timm_d96"), "timm_d96"),
        (with_config("dino_checkpoint.pth", "timm_gray"), "timm_gray"),
        (
            Checkpoint::from_path(&torch.join("hf_deit")).unwrap(),
            "hf_deit",
        ),
    ] {
        check_against_reference(model, &Classifier::new(ck, Device::flex()));
    }
}

/// The walk-through's least bounds, by the same reasoning as [`LOGIT_FLOOR`]:
/// patch embeddings are O(1) values, mean attention distances are in pixels
/// (up to a few hundred).
const EMBEDDING_FLOOR: f32 = 1e-5;
const DISTANCE_FLOOR: f32 = 1e-3;

/// A cosine similarity is a dot product of two unit vectors of D values,
/// whose float32 error is at most γ_D·Σ|uᵢvᵢ| ≤ γ_D = D·u/(1 − D·u), u = 2⁻²⁴
/// (Higham §3.1; Σ|uᵢvᵢ| ≤ 1 by Cauchy–Schwarz), in any summation order.
fn similarity_floor(d: usize) -> f32 {
    let du = d as f64 * 2f64.powi(-24);
    (du / (1.0 - du)).max(1e-6) as f32
}

/// The allowed distance from the float64 reference for the walk-through's
/// (patch embeddings, mean attention distance, position similarity), from
/// `S.walk_f32_error` with the rule of [`tolerances`]; `d` is the width.
fn walk_tolerances(walk_f32_error: &[f32], d: usize) -> [f32; 3] {
    let floors = [EMBEDDING_FLOOR, DISTANCE_FLOOR, similarity_floor(d)];
    assert_eq!(walk_f32_error.len(), 3, "walk_f32_error has 3 entries");
    std::array::from_fn(|i| floors[i].max(2.0 * walk_f32_error[i]))
}

/// The page's step-by-step view shows real intermediate values; they are
/// held to the reference like the outputs are.
fn check_walkthrough(model: &str, classifier: &Classifier) {
    let g = golden(model);
    let patches: Vec<usize> = g["walk_patches"].1.iter().map(|&p| p as usize).collect();
    let focus = Focus {
        patches,
        layer: 0,
        head: 0,
    };
    let n = classifier.config.num_patches();
    for stem in stems(&g) {
        let [embed_tol, dist_tol, sim_tol] = walk_tolerances(
            &g[&format!("{stem}.walk_f32_error")].1,
            classifier.config.embed_dim,
        );
        let w = classifier
            .walkthrough(&g[&format!("{stem}.input")].1, &focus)
            .block_on();
        let d_embed = max_abs_diff(&w.patch_embeddings, &g[&format!("{stem}.patch_embed")].1);
        let d_dist = max_abs_diff(&w.mean_distance, &g[&format!("{stem}.mean_distance")].1);
        let rows: Vec<f32> = focus
            .patches
            .iter()
            .flat_map(|&i| w.position_similarity[i * n..(i + 1) * n].iter().copied())
            .collect();
        let d_sim = max_abs_diff(&rows, &g["position_similarity"].1);
        println!(
            "{model}/{stem} walk-through: |vitrine - float64| (allowed) patch embeddings {d_embed:.2e} ({embed_tol:.1e}), \
             mean distance {d_dist:.2e} px ({dist_tol:.1e}), position similarity {d_sim:.2e} ({sim_tol:.1e})"
        );
        assert!(
            d_embed <= embed_tol,
            "{model}/{stem}: patch embeddings differ by {d_embed:e}"
        );
        assert!(
            d_dist <= dist_tol,
            "{model}/{stem}: mean attention distance differs by {d_dist:e} px"
        );
        assert!(
            d_sim <= sim_tol,
            "{model}/{stem}: position similarity differs by {d_sim:e}"
        );
    }
}

#[test]
fn walkthrough_matches_pytorch_on_every_fixture() {
    for model in MODELS {
        let ck =
            Checkpoint::from_path(&fixtures().join("models").join(model)).expect("fixture loads");
        check_walkthrough(model, &Classifier::new(ck, Device::flex()));
    }
}

/// vitrine's own preprocessing of a photo for `ck`.
fn our_input(img: &image::RgbaImage, ck: &Checkpoint) -> Vec<f32> {
    vitrine::preprocess::preprocess(img.as_raw(), img.width(), img.height(), &ck.preprocess)
        .expect("a photo preprocesses")
}

#[test]
fn preprocessing_matches_timm_and_transformers_on_real_photos() {
    for model in MODELS {
        let ck = Checkpoint::from_path(&fixtures().join("models").join(model)).unwrap();
        let classifier = Classifier::new(ck.clone(), Device::flex());
        let g = golden(model);
        for stem in stems(&g) {
            let img = photo(&stem);
            let ours = our_input(&img, &ck);
            let reference = &g[&format!("{stem}.input")].1;
            let mad = mean_abs_diff(&ours, reference);
            let pred = classifier
                .classify(img.as_raw(), img.width(), img.height(), None)
                .block_on()
                .unwrap();
            let want = top5(&g[&format!("{stem}.logits")].1)[0];
            // The largest output: the top class, or a backbone's largest feature.
            let top1 = top5(&pred.logits)[0];
            println!("{model}/{stem}: input mean |Δ| {mad:.4}, top-1 {top1} (reference {want})");
            assert!(
                mad <= 0.01,
                "{model}/{stem}: preprocessing differs by {mad} on average"
            );
            assert_eq!(top1, want, "{model}/{stem}: top-1 after our preprocessing");
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
    // 1,000 unnamed classes are ImageNet-1k's, as timm takes them (the
    // names transformers' google/vit-base-patch16-224 config lists).
    assert!(notes.contains("ImageNet-1k's"), "{notes}");
    assert_eq!(ck.labels.len(), 1000);
    assert_eq!(
        [&ck.labels[0], &ck.labels[281], &ck.labels[999]],
        [
            "tench, Tinca tinca",
            "tabby, tabby cat",
            "toilet tissue, toilet paper, bathroom tissue"
        ]
    );
    check_against_reference("timm_tiny", &Classifier::new(ck, Device::flex()));

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

/// At other input sizes (`LoadOptions::image_size`, the CLI's
/// `--image-size`), the position embeddings are interpolated as timm and
/// transformers do it, and the outputs follow theirs at that size with the
/// same bounds as at the checkpoint's own size.
#[test]
fn other_input_sizes_match_timm_and_transformers() {
    for (file, model, size) in [
        ("resized", "timm_tiny", 160),
        ("resized", "timm_tiny", 288),
        ("resized", "hf_vit", 64),
        ("resized", "hf_vit", 128),
        // Registers (positions for the patches only) and DeiT's two tokens.
        ("resized_families", "timm_reg4", 168),
        ("resized_families", "timm_reg4", 280),
        ("resized_families", "hf_deit", 64),
        ("resized_families", "hf_deit", 128),
    ] {
        let g = golden(file);
        let ck = LoadOptions::new()
            .image_size([size, size])
            .open(&fixtures().join("models").join(model))
            .unwrap();
        assert!(
            ck.notes.iter().any(|n| n.contains("interpolated")),
            "{:?}",
            ck.notes
        );
        let classifier = Classifier::new(ck.clone(), Device::flex());
        let key = format!("{model}.{size}.chelsea");
        let [logit_tol, cls_tol, _, roll_tol] = tolerances(&g[&format!("{key}.torch_f32_error")].1);
        let input = &g[&format!("{key}.input")].1;
        let pred = classifier.classify_input(input, None).block_on().unwrap();
        let want = &g[&format!("{key}.logits")].1;
        let d = [
            max_abs_diff(&pred.logits, want),
            max_abs_diff(&pred.attention.cls, &g[&format!("{key}.cls_attention")].1),
            max_abs_diff(&pred.rollout, &g[&format!("{key}.rollout")].1),
        ];
        println!(
            "{key}: |vitrine - float64| logits {:.2e} ({logit_tol:.1e}), cls attention {:.2e} ({cls_tol:.1e}), rollout {:.2e} ({roll_tol:.1e})",
            d[0], d[1], d[2]
        );
        assert!(
            d[0] <= logit_tol && d[1] <= cls_tol && d[2] <= roll_tol,
            "{key}: {d:?}"
        );
        assert_eq!(top5(&pred.logits), top5(want), "{key}: top-5");
        // Our own preprocessing at that size agrees with the library's.
        let mad = mean_abs_diff(&our_input(&photo("chelsea"), &ck), input);
        assert!(
            mad <= 0.01,
            "{key}: preprocessing differs by {mad} on average"
        );
    }
    // A size that is not a multiple of the patch is refused with its reason.
    let e = LoadOptions::new()
        .image_size([100, 100])
        .open(&fixtures().join("models/hf_vit"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a multiple of patch size 16"), "{e}");
}

/// The wgpu backend (natively on Vulkan, e.g. Mesa's lavapipe) gives the same numbers.
#[test]
fn wgpu_matches_pytorch() {
    let Some(device) = wgpu_device() else { return };
    for model in [
        "timm_tiny",
        "hf_vit",
        "hf_dino",
        "timm_deit3",
        "timm_clip",
        "timm_reg4",
        "timm_gap",
        "timm_avgmax",
        "timm_deit_dist",
        "hf_deit",
        "hf_dinov2",
    ] {
        let ck = Checkpoint::from_path(&fixtures().join("models").join(model)).unwrap();
        let classifier = Classifier::new(ck, device.clone());
        check_against_reference(model, &classifier);
        check_walkthrough(model, &classifier);
    }
}
