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
use vitrine::engine::top_k;
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

fn top5(v: &[f32]) -> Vec<usize> {
    top_k(v, 5).into_iter().map(|(i, _)| i).collect()
}

/// The least bounds: what a float32 ViT of these sizes reaches comfortably.
const LOGIT_FLOOR: f32 = 1e-4;
const ATTENTION_FLOOR: f32 = 1e-5;

/// The allowed distance from the float64 reference for (logits, CLS
/// attention, last-layer attention, rollout): twice PyTorch float32's own
/// distance on this image, and never less than the floors.
fn tolerances(torch_f32_error: &[f32]) -> [f32; 4] {
    let floors = [
        LOGIT_FLOOR,
        ATTENTION_FLOOR,
        ATTENTION_FLOOR,
        ATTENTION_FLOOR,
    ];
    assert_eq!(torch_f32_error.len(), 4, "torch_f32_error has 4 entries");
    std::array::from_fn(|i| floors[i].max(2.0 * torch_f32_error[i]))
}

/// Runs every golden image of `model` through `classifier` from the reference input.
fn check_against_reference(model: &str, classifier: &Classifier) {
    let kernels = if *classifier.device() == Device::flex() {
        format!("CPU, {}", vitrine::ops::kernel_path())
    } else {
        "wgpu".to_string()
    };
    let g = golden(model);
    let last = classifier.config.depth - 1;
    for stem in stems(&g) {
        let [logit_tol, cls_tol, full_tol, roll_tol] =
            tolerances(&g[&format!("{stem}.torch_f32_error")].1);
        let input = &g[&format!("{stem}.input")].1;
        let pred = classifier
            .classify_input(input, Some(last))
            .block_on()
            .expect("finite outputs");
        let want_logits = &g[&format!("{stem}.logits")].1;
        let d_logits = max_abs_diff(&pred.logits, want_logits);
        let d_cls = max_abs_diff(&pred.attention.cls, &g[&format!("{stem}.cls_attention")].1);
        let d_full = max_abs_diff(
            pred.layer_attention.as_ref().unwrap(),
            &g[&format!("{stem}.attn_last")].1,
        );
        let d_roll = max_abs_diff(&pred.rollout, &g[&format!("{stem}.rollout")].1);
        println!(
            "{model}/{stem} ({kernels}): |vitrine - float64| (allowed) logits {d_logits:.2e} ({logit_tol:.1e}), \
             cls attention {d_cls:.2e} ({cls_tol:.1e}), last layer {d_full:.2e} ({full_tol:.1e}), \
             rollout {d_roll:.2e} ({roll_tol:.1e})"
        );
        let bad = |what: &str, d: f32, tol: f32| {
            format!(
                "{model}/{stem}: {what} differs from the float64 reference by {d:e}, more than {tol:e} ({kernels})"
            )
        };
        assert!(d_roll <= roll_tol, "{}", bad("rollout", d_roll, roll_tol));
        assert!(
            d_logits <= logit_tol,
            "{}",
            bad("logits", d_logits, logit_tol)
        );
        assert!(d_cls <= cls_tol, "{}", bad("CLS attention", d_cls, cls_tol));
        assert!(
            d_full <= full_tol,
            "{}",
            bad("last-layer attention", d_full, full_tol)
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

/// The families' options are read from timm's names and `model_args`.
#[test]
fn timm_families_read_their_options() {
    let load = |m: &str| Checkpoint::from_path(&fixtures().join("models").join(m)).unwrap();
    let c = load("timm_deit3").config;
    assert_eq!(
        (c.init_values, c.no_embed_class, c.qk_norm),
        (Some(1e-6), true, true)
    );
    let c = load("timm_clip").config;
    assert!(c.pre_norm && c.quick_gelu && c.norm_eps == 1e-5, "{c:?}");
    let c = load("timm_dinov2").config;
    assert_eq!(
        (c.patch_size, c.img_size, c.num_classes),
        (14, [224, 224], 0)
    );
    assert_eq!(c.init_values, Some(1e-5));
    // Without a config, layer scale, QK norm and the patch-only positions
    // are read off the tensors; QuickGELU and the norm's epsilon cannot be.
    let weights = std::fs::read(fixtures().join("models/timm_deit3/model.safetensors")).unwrap();
    let c = Checkpoint::from_bytes(&weights, None, None).unwrap().config;
    assert!(
        c.init_values.is_some() && c.qk_norm && c.no_embed_class,
        "{c:?}"
    );
    // Extra tokens and pooling, from the presets and `model_args`.
    use vitrine::Pool;
    let c = load("timm_reg4").config;
    assert_eq!(
        (c.reg_tokens, c.no_embed_class, c.num_prefix_tokens()),
        (4, true, 5)
    );
    let c = load("timm_gap").config;
    assert!(!c.class_token && !c.fc_norm && !c.qkv_bias, "{c:?}");
    assert_eq!((c.global_pool, c.num_tokens()), (Pool::Avg, 256));
    let c = load("timm_avgmax").config;
    assert_eq!(
        (c.global_pool, c.fc_norm, c.reg_tokens),
        (Pool::AvgMax, true, 2)
    );
    let c = load("timm_deit_dist").config;
    assert_eq!(
        (c.distilled, c.global_pool, c.num_tokens()),
        (true, Pool::TokenAndDistillation, 198)
    );
    // Without a config the same options are read off the tensors.
    for model in ["timm_reg4", "timm_gap", "timm_avgmax", "timm_deit_dist"] {
        let dir = fixtures().join("models").join(model);
        let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
        let inferred = Checkpoint::from_bytes(&weights, None, None).unwrap().config;
        let c = load(model).config;
        assert_eq!(
            (
                inferred.class_token,
                inferred.distilled,
                inferred.reg_tokens,
                inferred.fc_norm,
                inferred.no_embed_class
            ),
            (
                c.class_token,
                c.distilled,
                c.reg_tokens,
                c.fc_norm,
                c.no_embed_class
            ),
            "{model}"
        );
        // avgmax and avg cannot be told apart by their tensors.
        if model != "timm_avgmax" {
            assert_eq!(inferred.global_pool, c.global_pool, "{model}");
        }
    }
    // What is not supported is named by family and feature, one line each.
    let dir = fixtures().join("models/timm_tiny");
    let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
    for (edit, want) in [
        (
            serde_json::json!({"architecture": "vit_so400m_patch14_siglip_224"}),
            "timm `vit_so400m_patch14_siglip_224`: the attention-pool head (`attn_pool`) is not supported",
        ),
        (
            serde_json::json!({"architecture": "vit_tiny_patch16_224", "model_args": {"global_pool": "map"}}),
            "timm `vit_tiny_patch16_224`: the attention-pool head (`attn_pool`, model_args.global_pool = \"map\") is not supported",
        ),
        (
            serde_json::json!({"architecture": "vit_tiny_patch16_224", "model_args": {"global_pool": ""}}),
            "timm `vit_tiny_patch16_224`: pooling other than token, avg, max or avgmax (model_args.global_pool = \"\") is not supported",
        ),
        (
            serde_json::json!({"architecture": "vit_tiny_patch16_224", "model_args": {"class_token": false, "global_pool": "token"}}),
            "global_pool `token` needs a class token",
        ),
        (
            serde_json::json!({"architecture": "vit_giant_patch14_dinov2"}),
            "timm `vit_giant_patch14_dinov2`: the SwiGLU MLP of ViT-g is not supported",
        ),
        (
            serde_json::json!({"architecture": "vit_tiny_patch16_224", "model_args": {"dynamic_img_pad": true}}),
            "padding inputs to a multiple of the patch (`dynamic_img_pad`)",
        ),
    ] {
        let e =
            Checkpoint::from_bytes(&weights, Some(edit.to_string().as_bytes()), None).unwrap_err();
        assert!(e.to_string().contains(want), "{e}");
        assert!(!e.to_string().contains('\n'), "one line: {e}");
    }
    // `dynamic_img_size` is accepted: vitrine resizes the positions when it loads.
    let dynamic = serde_json::json!({"architecture": "vit_tiny_patch16_224",
        "model_args": {"depth": 4, "dynamic_img_size": true}});
    Checkpoint::from_bytes(&weights, Some(dynamic.to_string().as_bytes()), None).unwrap();
}

/// transformers' DeiT, DINOv2 and DINOv2-with-registers families: their
/// names, configs and heads.
#[test]
fn transformers_families_read_their_configs() {
    use vitrine::{HfFamily, Layout, Pool};
    let load = |m: &str| Checkpoint::from_path(&fixtures().join("models").join(m)).unwrap();
    let ck = load("hf_deit");
    assert_eq!(ck.layout, Layout::HuggingFace(HfFamily::Deit));
    assert_eq!(
        (ck.config.distilled, ck.config.global_pool),
        (true, Pool::TokenAndDistillation)
    );
    assert_eq!(ck.labels[0], "t-shirt");
    let ck = load("hf_dinov2");
    assert_eq!(ck.layout, Layout::HuggingFace(HfFamily::Dinov2));
    let c = &ck.config;
    assert_eq!(
        (c.global_pool, c.init_values, c.norm_eps, c.img_size),
        (Pool::TokenAndAvg, Some(1e-5), 1e-6, [98, 98])
    );
    let notes = ck.notes.join("\n");
    assert!(
        notes.contains("from 9×9 to 7×7 patches") && notes.contains("mask token"),
        "{notes}"
    );
    // Registers in transformers' layout: the class token's position folded
    // into it, the registers after it with none, as timm's `no_embed_class`.
    let ck = load("hf_dinov2_reg");
    assert_eq!(
        ck.layout,
        Layout::HuggingFace(HfFamily::Dinov2WithRegisters)
    );
    let c = &ck.config;
    assert_eq!(
        (c.reg_tokens, c.no_embed_class, c.class_token, c.global_pool),
        (4, true, true, Pool::TokenAndAvg)
    );
    assert_eq!((c.pos_embed_len(), c.img_size), (49, [98, 98]));
    let notes = ck.notes.join("\n");
    assert!(
        notes.contains("from 9×9 to 7×7 patches (bicubic with antialias")
            && notes.contains("mask token"),
        "{notes}"
    );

    let dir = fixtures().join("models/hf_deit");
    let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let refused = |edit: &dyn Fn(&mut serde_json::Value), want: &str| {
        let mut c = config.clone();
        edit(&mut c);
        let e = Checkpoint::from_bytes(&weights, Some(c.to_string().as_bytes()), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{e}");
    };
    refused(
        &|c| {
            c["model_type"] = "swin".into();
            c["architectures"] = serde_json::json!(["SwinForImageClassification"]);
        },
        "transformers `SwinForImageClassification` (model_type `swin`) is not supported: \
         vitrine reads ViT, DeiT and DINOv2",
    );
    refused(
        &|c| c["model_type"] = "vit".into(),
        "model_type `vit` does not match the tensors, which are named as transformers' `deit`",
    );
    refused(
        &|c| {
            c["model_type"] = "dinov2_with_registers".into();
            c["architectures"] = serde_json::json!(["Dinov2WithRegistersModel"]);
        },
        "model_type `dinov2_with_registers` does not match the tensors, which are named as \
         transformers' `deit` models name them",
    );
    let dir2 = fixtures().join("models/hf_dinov2");
    let mut swiglu: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir2.join("config.json")).unwrap()).unwrap();
    swiglu["use_swiglu_ffn"] = true.into();
    let e = Checkpoint::from_bytes(
        &std::fs::read(dir2.join("model.safetensors")).unwrap(),
        Some(swiglu.to_string().as_bytes()),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(
            "transformers DINOv2 with `use_swiglu_ffn` (ViT-g's SwiGLU MLP) is not supported"
        ),
        "{e}"
    );
    refused(
        &|c| c["architectures"] = serde_json::json!(["DeiTForMaskedImageModeling"]),
        "transformers `DeiTForMaskedImageModeling` is not supported: for model_type `deit`, \
         vitrine reads DeiTModel, DeiTForImageClassification, DeiTForImageClassificationWithTeacher",
    );
}

/// transformers 5 names the tensors inside a model otherwise than the files
/// it saves (`vit.layers.N.attention.q_proj`, `o_proj`, `mlp.fc1`; DINOv2's
/// `encoder.layer.N.attention.q_proj`); a file written from
/// `model.state_dict()` carries those names, and loads the same, in each
/// family (the names recorded by transformers itself in the fixtures).
#[test]
fn transformers_5_in_model_names_load_the_same() {
    for (model, stem) in [
        ("hf_vit", "chelsea"),
        ("hf_deit", "coffee"),
        ("hf_dinov2", "chelsea"),
    ] {
        let names: std::collections::BTreeMap<String, String> = serde_json::from_slice(
            &std::fs::read(fixtures().join(format!("golden/{model}_v5_names.json"))).unwrap(),
        )
        .unwrap();
        assert!(names.values().any(|n| n.contains("_proj.")), "{model}");
        let v5 = rewritten(model, |n| Some(names[n].clone()), |_| {});
        let hub = Checkpoint::from_path(&fixtures().join("models").join(model)).unwrap();
        let g = golden(model);
        let input = &g[&format!("{stem}.input")].1;
        let logits = |ck: &Checkpoint| {
            Classifier::new(ck.clone(), Device::flex())
                .classify_input(input, None)
                .block_on()
                .unwrap()
                .logits
        };
        assert_eq!(logits(&v5), logits(&hub), "{model}");
        check_against_reference(model, &Classifier::new(v5, Device::flex()));
    }
}

/// `dir`'s tensors renamed by `rename` (dropped where it gives `None`), with
/// its config edited by `edit`: the checkpoint that gives.
fn rewritten(
    dir: &str,
    rename: impl Fn(&str) -> Option<String>,
    edit: impl Fn(&mut serde_json::Value),
) -> Checkpoint {
    let dir = fixtures().join("models").join(dir);
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let file = vitrine::checkpoint::safetensors::SafeTensors::parse(&bytes).unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = file
        .tensors
        .iter()
        .filter_map(|(name, view)| Some((rename(name)?, view.shape.clone(), view.to_f32())))
        .collect();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    let pre = std::fs::read(dir.join("preprocessor_config.json")).unwrap();
    Checkpoint::from_bytes(
        &vitrine::checkpoint::safetensors::serialize(&tensors, false),
        Some(config.to_string().as_bytes()),
        Some(&pre),
    )
    .unwrap()
}

/// The other task models and backbones of the DeiT and DINOv2 families,
/// made from the fixtures' tensors as transformers names them: a DeiT
/// classifier on either token alone (whose mean is the teacher model's
/// answer), `DeiTModel` and `Dinov2Model` (whose features are the class
/// token that `Dinov2ForImageClassification`'s head reads).
#[test]
fn transformers_task_models_and_backbones_of_each_family() {
    use vitrine::Pool;
    let g = golden("hf_deit");
    let input = &g["coffee.input"].1;
    let run = |ck: &Checkpoint| {
        Classifier::new(ck.clone(), Device::flex())
            .classify_input(input, None)
            .block_on()
            .unwrap()
            .logits
    };
    // DeiTForImageClassification: the class token's head alone.
    let cls = rewritten(
        "hf_deit",
        |n| match n.split_once('.') {
            Some(("cls_classifier", rest)) => Some(format!("classifier.{rest}")),
            Some(("distillation_classifier", _)) => None,
            _ => Some(n.to_string()),
        },
        |c| c["architectures"] = serde_json::json!(["DeiTForImageClassification"]),
    );
    assert_eq!(cls.config.global_pool, Pool::Token);
    assert!(cls.config.distilled);
    let teacher_ck = Checkpoint::from_path(&fixtures().join("models/hf_deit")).unwrap();
    let teacher = run(&teacher_ck);
    let on_cls = run(&cls);
    // DeiTModel: the class token's features.
    let backbone = rewritten(
        "hf_deit",
        |n| n.strip_prefix("deit.").map(String::from),
        |c| c["architectures"] = serde_json::json!(["DeiTModel"]),
    );
    assert_eq!(
        (backbone.config.num_classes, backbone.config.outputs()),
        (0, 128)
    );
    let cls_features = run(&backbone);
    // The teacher model's pooled features are the two tokens' mean, so the
    // distillation token is twice that less the class token; its head,
    // applied by hand, and the class token's head average to the answer.
    let focus = Focus {
        patches: vec![0],
        layer: 0,
        head: 0,
    };
    let mean = Classifier::new(teacher_ck.clone(), Device::flex())
        .walkthrough(input, &focus)
        .block_on()
        .pooled;
    let dist: Vec<f32> = mean
        .iter()
        .zip(&cls_features)
        .map(|(m, c)| 2.0 * m - c)
        .collect();
    let bytes = std::fs::read(fixtures().join("models/hf_deit/model.safetensors")).unwrap();
    let file = vitrine::checkpoint::safetensors::SafeTensors::parse(&bytes).unwrap();
    let w = file.tensors["distillation_classifier.weight"].to_f32(); // [10, 128]
    let b = file.tensors["distillation_classifier.bias"].to_f32();
    let by_hand: Vec<f32> = (0..10)
        .map(|k| {
            let on_dist = b[k] + (0..128).map(|i| w[k * 128 + i] * dist[i]).sum::<f32>();
            (on_cls[k] + on_dist) / 2.0
        })
        .collect();
    assert!(
        max_abs_diff(&by_hand, &teacher) < 1e-4,
        "{by_hand:?} vs {teacher:?}"
    );
    assert!(max_abs_diff(&on_cls, &teacher) > 0.1, "the heads differ");

    let g = golden("hf_dinov2");
    let input = &g["chelsea.input"].1;
    let full = Classifier::new(
        Checkpoint::from_path(&fixtures().join("models/hf_dinov2")).unwrap(),
        Device::flex(),
    );
    let focus = Focus {
        patches: vec![0],
        layer: 0,
        head: 0,
    };
    let pooled = full.walkthrough(input, &focus).block_on().pooled;
    assert_eq!(pooled.len(), 192, "the class token and the patches' mean");
    let backbone = rewritten(
        "hf_dinov2",
        |n| n.strip_prefix("dinov2.").map(String::from),
        |c| c["architectures"] = serde_json::json!(["Dinov2Model"]),
    );
    assert!(backbone.notes.iter().any(|n| n.contains("no classifier")));
    let features = Classifier::new(backbone, Device::flex())
        .classify_input(input, None)
        .block_on()
        .unwrap()
        .logits;
    // The walk-through runs Burn's operations, classification the fused
    // blocks: the same features within float32 rounding.
    let d = max_abs_diff(&features, &pooled[..96]);
    assert!(d <= 1e-4 * largest(&pooled[..96]), "features off by {d:e}");
}

#[test]
fn hf_labels_come_from_id2label() {
    let ck = Checkpoint::from_path(&fixtures().join("models/hf_vit")).unwrap();
    assert_eq!(
        ck.labels,
        ["cat", "dog", "<b>bold</b> & co", "rocket", "coffee"]
    );
    assert_eq!(
        ck.layout,
        vitrine::Layout::HuggingFace(vitrine::HfFamily::Vit)
    );
    assert_eq!(ck.config.norm_eps, 1e-12);
    let ck = Checkpoint::from_path(&fixtures().join("models/timm_d96")).unwrap();
    assert_eq!(ck.labels[1], "trouser");
}

/// DINO-style backbones (timm `num_classes: 0`; transformers `ViTModel`
/// with its pooler, no `vit.` prefix) load without a head and say so; their
/// output is the class token's features (checked against the reference in
/// the tests above).
#[test]
fn backbones_load_without_a_classifier() {
    for (model, pooler) in [("timm_dino", false), ("hf_dino", true)] {
        let ck = Checkpoint::from_path(&fixtures().join("models").join(model)).unwrap();
        assert_eq!(ck.config.num_classes, 0, "{model}");
        assert!(ck.labels.is_empty(), "{model}: {:?}", ck.labels);
        let notes = ck.notes.join("\n");
        assert!(notes.contains("no classifier"), "{model}: {notes}");
        assert_eq!(notes.contains("pooler"), pooler, "{model}: {notes}");
        let classifier = Classifier::new(ck.clone(), Device::flex());
        let img = photo("chelsea");
        let p = classifier
            .classify(img.as_raw(), img.width(), img.height(), None)
            .block_on()
            .unwrap();
        assert_eq!(p.logits.len(), 384, "{model}: the class token's features");
        assert!(p.probabilities.is_empty() && p.top(5).is_empty(), "{model}");
    }
    // A file with a head that its config calls a backbone is refused.
    let dir = fixtures().join("models/timm_tiny");
    let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    config["num_classes"] = 0.into();
    let e =
        Checkpoint::from_bytes(&weights, Some(config.to_string().as_bytes()), None).unwrap_err();
    assert!(e.to_string().contains("unexpected tensor `head."), "{e}");
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
