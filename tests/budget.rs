//! A model too large for its device is refused before any weight is
//! widened, with its size, the limit, and what would fit it; f16 matrices
//! kept when asked to or when needed.

mod common;

use common::{message, read};
use vitrine::checkpoint::LoadOptions;
use vitrine::{Checkpoint, CheckpointError, F16Matrices, MemoryLimits};

/// Loads `weights` and `config` within `limits`, f16 matrices as `policy` says.
fn within(
    weights: &[u8],
    config: &[u8],
    limits: MemoryLimits,
    policy: F16Matrices,
) -> Result<Checkpoint, CheckpointError> {
    LoadOptions::new()
        .limits(limits)
        .f16_matrices(policy)
        .load(weights, Some(config), None)
}

#[test]
fn too_large_for_the_device_is_refused_before_widening() {
    let weights = read("timm_d96", "model.safetensors");
    let config = read("timm_d96", "config.json");
    // timm_d96's qkv (288×96 f32 = 108 KiB) and MLP (384×96, 144 KiB) weights exceed 100 KiB.
    let tight = MemoryLimits {
        max_tensor_bytes: 100 * 1024,
        max_total_bytes: u64::MAX,
        device: "this GPU".into(),
    };
    let (e, msg) = message(within(&weights, &config, tight, F16Matrices::Widen));
    assert!(
        matches!(&e, CheckpointError::TooLarge { tensor: Some(t), limit: 102400, .. } if t == "blocks.0.attn.qkv.weight"),
        "{e:?}"
    );
    assert!(
        msg.starts_with("the model is too large for this GPU: tensor `blocks."),
        "{msg}"
    );
    assert!(
        msg.contains("tensor `blocks.0.attn.qkv.weight` needs 108 KB as f32, more than the 100 KB one buffer may hold"),
        "{msg}"
    );

    let small_memory = MemoryLimits {
        max_tensor_bytes: u64::MAX,
        max_total_bytes: 1 << 20,
        device: "the browser's WebAssembly memory".into(),
    };
    let (e, msg) = message(within(&weights, &config, small_memory, F16Matrices::Widen));
    assert!(
        matches!(e, CheckpointError::TooLarge { tensor: None, .. }),
        "{e:?}"
    );
    assert!(
        msg.starts_with(
            "the model is too large for the browser's WebAssembly memory: its weights need"
        ),
        "{msg}"
    );
    // Generous limits load it.
    let roomy = MemoryLimits {
        max_tensor_bytes: 1 << 20,
        max_total_bytes: 64 << 20,
        device: "x".into(),
    };
    assert!(within(&weights, &config, roomy, F16Matrices::Widen).is_ok());
}

/// A model whose weights do not fit as f32 but whose f16 matrices would is
/// refused with both sizes named and how to fit it; where the device keeps
/// f16 matrices (the page's CPU module) it loads.
#[test]
fn too_large_as_f32_but_not_as_f16_says_so() {
    // timm_tiny's fixture: 8.2 MB of weights as f32, 4.5 MB with its
    // matrices (stored in f16) kept in f16.
    let weights = read("timm_tiny", "model.safetensors");
    let config = read("timm_tiny", "config.json");
    let limits = MemoryLimits {
        max_tensor_bytes: u64::MAX,
        max_total_bytes: 6 << 20,
        device: "the browser's WebAssembly memory".into(),
    };
    let (e, msg) = message(within(
        &weights,
        &config,
        limits.clone(),
        F16Matrices::Widen,
    ));
    assert!(
        matches!(
            &e,
            CheckpointError::TooLarge {
                tensor: None,
                advice: Some(_),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        msg.starts_with("the model is too large for the browser's WebAssembly memory: its weights need 8.2 MB as f32, more than the 6.0 MB available; with its weight matrices kept in f16 it needs 4.5 MB, which fits: the CPU backend keeps an f16 file's matrices in f16"),
        "{msg}"
    );
    // Kept in f16 when asked to, or when needed; widened when it fits.
    for (policy, max, f16) in [
        (F16Matrices::Keep, 6 << 20, true),
        (F16Matrices::KeepIfNeeded, 6 << 20, true),
        (F16Matrices::KeepIfNeeded, 9 << 20, false),
        (F16Matrices::Keep, 9 << 20, true),
    ] {
        let ck = within(
            &weights,
            &config,
            MemoryLimits {
                max_total_bytes: max,
                ..limits.clone()
            },
            policy,
        )
        .expect("fits");
        let noted = ck
            .notes
            .iter()
            .any(|n| n.starts_with("weight matrices kept in f16"));
        assert_eq!(
            noted,
            f16 && policy == F16Matrices::KeepIfNeeded,
            "{:?}",
            ck.notes
        );
        let model = vitrine::Classifier::new(ck, burn::tensor::Device::flex());
        let qkv = model.model().blocks[0].attn.qkv.weight.val().dtype();
        assert_eq!(
            qkv == burn::tensor::DType::F16,
            f16,
            "{policy:?} within {max}"
        );
    }

    // An f32 file is told to be saved in f16 first.
    let weights = read("timm_gray", "model.safetensors");
    let config = read("timm_gray", "config.json");
    let (_, msg) = message(within(
        &weights,
        &config,
        MemoryLimits {
            max_total_bytes: weights.len() as u64 * 3 / 4,
            ..limits.clone()
        },
        F16Matrices::KeepIfNeeded,
    ));
    assert!(
        msg.contains(
            "save the checkpoint in f16 (PyTorch: `model.half()`) and load that on the CPU backend"
        ),
        "{msg}"
    );
    // Where even f16 would not fit, no advice.
    let (e, _) = message(within(
        &weights,
        &config,
        MemoryLimits {
            max_total_bytes: 1 << 10,
            ..limits.clone()
        },
        F16Matrices::Keep,
    ));
    assert!(
        matches!(e, CheckpointError::TooLarge { advice: None, .. }),
        "{e:?}"
    );
}
