//! Every kind of bad checkpoint gets a typed error whose message names the
//! problem and the tensor or field; none panics.

mod common;

use common::{fixtures, message, read};
use pollster::FutureExt;
use vitrine::checkpoint::safetensors::{SafeTensors, SafetensorsError, serialize};
use vitrine::{Checkpoint, CheckpointError};

type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

fn tensors(model: &str) -> Tensors {
    let bytes = read(model, "model.safetensors");
    let st = SafeTensors::parse(&bytes).unwrap();
    st.tensors
        .iter()
        .map(|(k, v)| (k.clone(), v.shape.clone(), v.to_f32()))
        .collect()
}

/// Loads `weights` with the fixture's own config files.
fn load(model: &str, weights: &[u8]) -> Result<Checkpoint, CheckpointError> {
    let config = read(model, "config.json");
    Checkpoint::from_bytes(weights, Some(&config), None)
}

#[test]
fn not_safetensors() {
    let png = std::fs::read(fixtures().join("images/camera.png")).unwrap();
    let (e, m) = message(load("timm_gray", &png));
    assert!(
        matches!(
            e,
            CheckpointError::File(SafetensorsError::NotSafetensors { .. })
        ),
        "{m}"
    );
    assert!(m.starts_with("not a safetensors file"), "{m}");
    let (_, m) = message(load("timm_gray", b"abc"));
    assert!(m.contains("only 3 bytes"), "{m}");
    let (_, m) = message(load("timm_gray", b"\x04\0\0\0\0\0\0\0{bad"));
    assert!(m.contains("not valid JSON"), "{m}");
}

/// A file named as PyTorch's that is neither of its formats says so (not
/// that it is no safetensors file), naming the file.
#[test]
fn not_pytorch_either() {
    let png = std::fs::read(fixtures().join("images/camera.png")).unwrap();
    for name in ["pytorch_model.bin", "dino.PTH", "model.pt"] {
        let (e, m) = message(
            vitrine::checkpoint::LoadOptions::new()
                .file_name(name)
                .load(&png, None, None),
        );
        assert!(matches!(e, CheckpointError::Torch(_)), "{m}");
        assert!(
            m.starts_with(&format!("{name} is not a PyTorch checkpoint")),
            "{m}"
        );
    }
    // Named as safetensors, it is judged as one.
    let (_, m) = message(
        vitrine::checkpoint::LoadOptions::new()
            .file_name("model.safetensors")
            .load(&png, None, None),
    );
    assert!(m.starts_with("not a safetensors file"), "{m}");
}

#[test]
fn truncated_file_names_the_tensor() {
    let bytes = read("timm_gray", "model.safetensors");
    let cut = &bytes[..bytes.len() * 2 / 3];
    let (e, m) = message(load("timm_gray", cut));
    assert!(
        matches!(e, CheckpointError::File(SafetensorsError::Truncated { .. })),
        "{m}"
    );
    assert!(m.starts_with("truncated safetensors file: tensor `"), "{m}");
    assert!(m.contains(&format!("but it has {}", cut.len())), "{m}");
}

#[test]
fn header_longer_than_the_file() {
    let bytes = read("timm_gray", "model.safetensors");
    // Cut inside the JSON header.
    let (e, m) = message(load("timm_gray", &bytes[..200]));
    assert!(
        matches!(
            e,
            CheckpointError::File(SafetensorsError::HeaderTooLarge { file_len: 200, .. })
        ),
        "{m}"
    );
    assert!(m.contains("but the whole file has 200"), "{m}");
    // A header length near u64::MAX must not be trusted for an allocation.
    let mut huge = bytes.clone();
    huge[..8].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
    let (e, _) = message(load("timm_gray", &huge));
    assert!(matches!(
        e,
        CheckpointError::File(SafetensorsError::HeaderTooLarge { .. })
    ));
}

#[test]
fn missing_and_unexpected_keys() {
    let mut t = tensors("timm_gray");
    t.retain(|(n, _, _)| n != "blocks.1.mlp.fc2.bias");
    let (e, m) = message(load("timm_gray", &serialize(&t, false)));
    assert_eq!(
        e,
        CheckpointError::MissingKey {
            key: "blocks.1.mlp.fc2.bias".into()
        },
        "{m}"
    );
    assert_eq!(m, "missing tensor `blocks.1.mlp.fc2.bias`");

    let mut t = tensors("timm_gray");
    t.push(("blocks.0.attn.extra".into(), vec![2], vec![0.0, 1.0]));
    let (_, m) = message(load("timm_gray", &serialize(&t, false)));
    assert_eq!(
        m,
        "unexpected tensor `blocks.0.attn.extra` (this ViT has no place for it)"
    );

    // A third block's tensors where config.json says depth 2.
    let mut t = tensors("timm_gray");
    t.push(("blocks.2.norm1.weight".into(), vec![64], vec![1.0; 64]));
    let (_, m) = message(load("timm_gray", &serialize(&t, false)));
    assert!(
        m.contains("unexpected tensor `blocks.2.norm1.weight`"),
        "{m}"
    );
}

#[test]
fn hf_missing_key_uses_hf_names() {
    let bytes = read("hf_vit", "model.safetensors");
    let st = SafeTensors::parse(&bytes).unwrap();
    let t: Tensors = st
        .tensors
        .iter()
        .filter(|(k, _)| k.as_str() != "vit.encoder.layer.1.attention.attention.value.weight")
        .map(|(k, v)| (k.clone(), v.shape.clone(), v.to_f32()))
        .collect();
    let config = read("hf_vit", "config.json");
    let (_, m) = message(Checkpoint::from_bytes(
        &serialize(&t, false),
        Some(&config),
        None,
    ));
    assert_eq!(
        m,
        "missing tensor `vit.encoder.layer.1.attention.attention.value.weight`"
    );

    let t2: Tensors = st
        .tensors
        .iter()
        .filter(|(k, _)| k.as_str() != "classifier.bias")
        .map(|(k, v)| (k.clone(), v.shape.clone(), v.to_f32()))
        .collect();
    let (_, m) = message(Checkpoint::from_bytes(
        &serialize(&t2, false),
        Some(&config),
        None,
    ));
    assert_eq!(m, "missing tensor `classifier.bias`");
}

#[test]
fn wrong_shape_names_tensor_and_both_shapes() {
    let mut t = tensors("timm_gray");
    let head = t.iter_mut().find(|(n, _, _)| n == "head.bias").unwrap();
    head.1 = vec![11];
    head.2 = vec![0.0; 11];
    let (e, m) = message(load("timm_gray", &serialize(&t, false)));
    assert!(matches!(e, CheckpointError::WrongShape { .. }));
    assert_eq!(
        m,
        "tensor `head.bias` has shape [11], but config.json implies [10]"
    );
}

#[test]
fn unsupported_dtype() {
    let header = br#"{"cls_token":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0; 8]);
    let (e, m) = message(load("timm_gray", &bytes));
    assert!(matches!(
        e,
        CheckpointError::File(SafetensorsError::UnsupportedDtype { .. })
    ));
    assert_eq!(
        m,
        "tensor `cls_token` has dtype I64; only F32, F16, BF16 and F64 are supported"
    );
}

#[test]
fn f32_f16_and_bf16_load_to_the_same_model() {
    // timm_d96 is stored in bf16. Re-saved as f32 (exact) it must give the
    // same logits; re-saved as f16 (which rounds some values) nearly so.
    let t = tensors("timm_d96");
    let config = read("timm_d96", "config.json");
    let as_f32 = Checkpoint::from_bytes(&serialize(&t, false), Some(&config), None).unwrap();
    let as_f16 = Checkpoint::from_bytes(&serialize(&t, true), Some(&config), None).unwrap();
    let original = Checkpoint::from_path(&fixtures().join("models/timm_d96")).unwrap();
    let device = burn::tensor::Device::flex();
    let input = vec![0.3f32; 3 * 64 * 64];
    let run = |ck: &Checkpoint| {
        vitrine::Classifier::new(ck.clone(), device.clone())
            .classify_input(&input, None)
            .block_on()
            .unwrap()
            .logits
    };
    assert_eq!(run(&as_f32), run(&original));
    let d = common::max_abs_diff(&run(&as_f16), &run(&original));
    assert!(d < 0.05, "f16 storage changed logits by {d}");
}

#[test]
fn config_that_contradicts_the_tensors() {
    let weights = read("timm_gray", "model.safetensors");
    let config = String::from_utf8(read("timm_gray", "config.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&config).unwrap();
    json["model_args"]["embed_dim"] = 96.into();
    let bad = serde_json::to_vec(&json).unwrap();
    let (_, m) = message(Checkpoint::from_bytes(&weights, Some(&bad), None));
    assert_eq!(
        m,
        "tensor `patch_embed.proj.weight` has shape [64, 1, 4, 4], but config.json implies [96, 1, 4, 4]"
    );

    let mut json: serde_json::Value = serde_json::from_str(&config).unwrap();
    json["label_names"] = serde_json::json!(["a", "b"]);
    let (_, m) = message(Checkpoint::from_bytes(
        &weights,
        Some(&serde_json::to_vec(&json).unwrap()),
        None,
    ));
    assert_eq!(
        m,
        "config.json: label_names has 2 entries but the model has 10 classes"
    );

    let mut json: serde_json::Value = serde_json::from_str(&config).unwrap();
    json["model_args"]["num_heads"] = 3.into();
    let (_, m) = message(Checkpoint::from_bytes(
        &weights,
        Some(&serde_json::to_vec(&json).unwrap()),
        None,
    ));
    assert_eq!(
        m,
        "config.json: embed_dim 64 is not divisible by num_heads 3"
    );

    let (_, m) = message(Checkpoint::from_bytes(&weights, Some(b"{not json"), None));
    assert!(m.starts_with("config.json: not valid JSON"), "{m}");

    let hf_weights = read("hf_vit", "model.safetensors");
    let hf = String::from_utf8(read("hf_vit", "config.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&hf).unwrap();
    json["intermediate_size"] = 512.into();
    let (_, m) = message(Checkpoint::from_bytes(
        &hf_weights,
        Some(&serde_json::to_vec(&json).unwrap()),
        None,
    ));
    assert_eq!(
        m,
        "tensor `vit.encoder.layer.0.intermediate.dense.weight` has shape [256, 128], but config.json implies [512, 128]"
    );
}

#[test]
fn unknown_names_and_architectures() {
    let t = vec![("conv1.weight".to_string(), vec![2], vec![0.0, 0.0])];
    let (e, m) = message(load("timm_gray", &serialize(&t, false)));
    assert!(matches!(e, CheckpointError::UnknownLayout { .. }), "{m}");
    assert!(m.contains("conv1.weight"), "{m}");

    let weights = read("timm_gray", "model.safetensors");
    let (_, m) = message(Checkpoint::from_bytes(
        &weights,
        Some(br#"{"architecture": "resnet50"}"#),
        None,
    ));
    assert!(
        m.starts_with("config.json: architecture `resnet50` is not supported"),
        "{m}"
    );
}

#[test]
fn missing_file_is_an_io_error() {
    let (e, m) = message(Checkpoint::from_path(std::path::Path::new(
        "/nonexistent/model.safetensors",
    )));
    assert!(matches!(e, CheckpointError::Io { .. }));
    assert!(
        m.starts_with("cannot read /nonexistent/model.safetensors"),
        "{m}"
    );
}

/// A config that asks for an absurd model is refused from its numbers, at
/// once, before anything the size of that model is allocated.
#[test]
fn absurd_configs_are_refused_from_the_numbers() {
    let weights = read("timm_gray", "model.safetensors");
    let config = String::from_utf8(read("timm_gray", "config.json")).unwrap();
    let with = |key: &str, value: serde_json::Value| {
        let mut json: serde_json::Value = serde_json::from_str(&config).unwrap();
        // The class count is config.json's own `num_classes` (it overrides model_args').
        match key {
            "num_classes" => {
                json[key] = value;
                json.as_object_mut().unwrap().remove("label_names");
            }
            _ => json["model_args"][key] = value,
        }
        serde_json::to_vec(&json).unwrap()
    };
    for (key, value, expected) in [
        (
            "depth",
            serde_json::json!(1u64 << 63),
            "config.json: depth = 9223372036854775808 is larger than vitrine's limit of 1048576",
        ),
        (
            "depth",
            serde_json::json!(1_000_000_000),
            "config.json: depth = 1000000000 is larger than vitrine's limit of 1048576",
        ),
        (
            "embed_dim",
            serde_json::json!(1u64 << 31),
            "config.json: embed_dim = 2147483648 is larger than vitrine's limit of 1048576",
        ),
        (
            "num_classes",
            serde_json::json!(1_000_000_000),
            "config.json: num_classes = 1000000000 is larger than vitrine's limit of 1048576",
        ),
        (
            // Found by the fuzzer: the preprocessing's per-channel mean was
            // sized from this before the config was checked (an abort).
            "in_chans",
            serde_json::json!(1u64 << 55),
            "config.json: in_chans = 36028797018963968 is larger than vitrine's limit of 1048576",
        ),
        (
            "patch_size",
            serde_json::json!(56),
            "config.json: patch size 56 is larger than the image (28×28)",
        ),
        (
            "depth",
            serde_json::json!(u64::MAX),
            "config.json: depth = 18446744073709551615 is larger than vitrine's limit of 1048576",
        ),
        (
            "depth",
            serde_json::json!(-1),
            "config.json: `depth` must be a non-negative integer, found -1",
        ),
    ] {
        let t0 = std::time::Instant::now();
        let (_, m) = message(Checkpoint::from_bytes(
            &weights,
            Some(&with(key, value)),
            None,
        ));
        assert_eq!(m, expected);
        assert!(
            t0.elapsed().as_secs_f64() < 1.0,
            "{key}: took {:?}",
            t0.elapsed()
        );
    }
    // More classes than the head holds, in a config that names none.
    let mut json: serde_json::Value = serde_json::from_str(&config).unwrap();
    json.as_object_mut().unwrap().remove("label_names");
    json["num_classes"] = 100_000.into();
    let (_, m) = message(Checkpoint::from_bytes(
        &weights,
        Some(&serde_json::to_vec(&json).unwrap()),
        None,
    ));
    assert_eq!(
        m,
        "tensor `head.weight` has shape [10, 64], but config.json implies [100000, 64]"
    );
    // A depth the size limit allows but the file does not bear out stops at
    // the first missing block.
    let t0 = std::time::Instant::now();
    let (_, m) = message(Checkpoint::from_bytes(
        &weights,
        Some(&with("depth", 1_000_000.into())),
        None,
    ));
    assert_eq!(m, "missing tensor `blocks.2.norm1.weight`");
    assert!(t0.elapsed().as_secs_f64() < 1.0, "took {:?}", t0.elapsed());
    // transformers' config alike.
    let hf_weights = read("hf_vit", "model.safetensors");
    let (_, m) = message(Checkpoint::from_bytes(
        &hf_weights,
        Some(br#"{"model_type": "vit", "num_labels": 1000000000, "image_size": 96, "hidden_size": 128}"#),
        None,
    ));
    assert_eq!(
        m,
        "config.json: num_classes = 1000000000 is larger than vitrine's limit of 1048576"
    );
}

/// NaN or infinite weights are refused when the file loads, naming the
/// tensor; finite weights that overflow float32 in the forward pass give an
/// error, never "NaN%".
#[test]
fn weights_that_are_not_numbers() {
    let config = read("timm_gray", "config.json");
    // In an f32 file and in an f16 one (whose halves the loader keeps).
    for (value, shown, f16) in [
        (f32::NAN, "NaN", false),
        (f32::INFINITY, "inf", false),
        (f32::NEG_INFINITY, "-inf", false),
        (f32::NAN, "NaN", true),
        (f32::INFINITY, "inf", true),
        (f32::NEG_INFINITY, "-inf", true),
    ] {
        let mut t = tensors("timm_gray");
        let (name, _, values) = t
            .iter_mut()
            .find(|(n, _, _)| n == "blocks.1.mlp.fc1.weight")
            .unwrap();
        values[7] = value;
        values[9] = value;
        let name = name.clone();
        let (e, m) = message(Checkpoint::from_bytes(
            &serialize(&t, f16),
            Some(&config),
            None,
        ));
        assert!(
            matches!(
                e,
                CheckpointError::NotFinite {
                    count: 2,
                    first: 7,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            m,
            format!(
                "tensor `{name}` holds 2 values that are not finite numbers (the first, at index 7, is {shown}): the checkpoint is damaged"
            )
        );
    }
    // Finite weights whose products overflow float32: a head of 3e38s.
    let mut t = tensors("timm_gray");
    let (_, _, head) = t.iter_mut().find(|(n, _, _)| n == "head.weight").unwrap();
    head.iter_mut().for_each(|v| *v = 3e38);
    let ck = Checkpoint::from_bytes(&serialize(&t, false), Some(&config), None)
        .expect("finite weights load");
    let classifier = vitrine::Classifier::new(ck, burn::tensor::Device::flex());
    let e = classifier
        .classify_input(&vec![0.5; 28 * 28], None)
        .block_on()
        .expect_err("the forward pass overflows");
    assert!(
        matches!(
            e,
            vitrine::ClassifyError::NotANumber {
                output: "logits",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with("the model's output is not a number: "),
        "{e}"
    );
}
