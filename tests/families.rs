//! Each checkpoint family's names, configs, heads and backbones: what the
//! loader reads of timm's and transformers' files, held to the golden
//! references where a family's layout could go wrong.

mod common;

use burn::tensor::Device;
use common::*;
use pollster::FutureExt;
use vitrine::walkthrough::Focus;
use vitrine::{Checkpoint, Classifier};

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
