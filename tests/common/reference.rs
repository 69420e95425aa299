//! A classifier held to a fixture's golden references (PyTorch in float64),
//! within bounds derived from PyTorch's own float32 error.

use pollster::FutureExt;
use vitrine::Classifier;
use vitrine::engine::top_k;

use burn::tensor::Device;

use super::{golden, max_abs_diff, stems};

pub fn top5(v: &[f32]) -> Vec<usize> {
    top_k(v, 5).into_iter().map(|(i, _)| i).collect()
}

/// The least bounds: what a float32 ViT of these sizes reaches comfortably.
pub const LOGIT_FLOOR: f32 = 1e-4;
pub const ATTENTION_FLOOR: f32 = 1e-5;

/// The allowed distance from the float64 reference for (logits, CLS
/// attention, last-layer attention, rollout): twice PyTorch float32's own
/// distance on this image, and never less than the floors.
pub fn tolerances(torch_f32_error: &[f32]) -> [f32; 4] {
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
pub fn check_against_reference(model: &str, classifier: &Classifier) {
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
