//! The executors against each other and against Burn's operations.

use super::*;
use crate::model::testing::{random_model, variants};
use burn::tensor::{Device, Distribution};

fn fused(model: &VisionTransformer) -> FusedEncoder {
    match Executor::for_model(model) {
        Executor::Fused(fused) => fused,
        Executor::Operations => panic!("an f32 model on the CPU device runs fused"),
    }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec().unwrap()
}

/// Within float32 rounding of Burn's operations: every entry within
/// 2e-5 of the largest (the two sum in different orders).
fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let largest = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= 2e-5 * largest.max(1.0),
        "{what}: off by {worst:e} (largest value {largest:e})"
    );
}

/// Every kind of model, and one with a large LayerNorm epsilon, so that
/// one taken from the wrong place shows.
fn cases() -> Vec<(&'static str, crate::model::VitConfig)> {
    let mut cases = variants();
    let mut wide_eps = cases[1].1.clone();
    wide_eps.norm_eps = 0.5;
    cases.push(("layer scale, QK norm, eps 0.5", wide_eps));
    cases
}

/// The fused blocks give Burn's operations' tokens and attention
/// weights on every kind of model (all weights random, LayerNorms
/// too), for one image, two, and enough rows to split into more
/// chunks than threads.
#[test]
fn fused_blocks_match_burns_operations() {
    let device = Device::flex();
    for (name, cfg) in cases() {
        let model = random_model(&cfg);
        let fused = fused(&model);
        for (batch, threads) in [(1, 1), (1, 3), (2, 2), (40, 3)] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let images =
                Tensor::<4>::random([batch, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
            let tokens = model.embed(images);
            let mut want = Vec::new();
            let out = model.encode(tokens.clone(), |_, s| {
                want.push(values(s.attention.weights.clone()))
            });
            let mut got = Vec::new();
            let fused_out = pool.install(|| {
                fused.encode(
                    tokens,
                    Some(&mut |_, a: &Tensor<4>| got.push(values(a.clone()))),
                )
            });
            let what = format!("{name}, batch {batch}, {threads} threads");
            assert_eq!(fused_out.dims(), out.dims(), "{what}");
            assert_close(&format!("{what}: tokens"), &values(fused_out), &values(out));
            assert_eq!(got.len(), want.len(), "{what}: layers seen");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_close(&format!("{what}: layer {i}'s weights"), g, w);
            }
        }
    }
}

/// Without `look`, the same tokens (the weights' buffer is reused).
#[test]
fn not_looking_changes_nothing() {
    let model = random_model(&variants()[0].1);
    let images = Tensor::<4>::random(
        [2, 3, 16, 16],
        Distribution::Normal(0.0, 1.0),
        &Device::flex(),
    );
    let tokens = model.embed(images);
    let fused = fused(&model);
    let seen = values(fused.encode(tokens.clone(), Some(&mut |_, _: &Tensor<4>| {})));
    assert_eq!(values(fused.encode(tokens, None)), seen);
}

/// A dropped pass that kept hands its buffers, the attention weights'
/// included, to the next one, which keeps the same values; weights
/// still held elsewhere stay theirs.
#[test]
fn a_dropped_kept_pass_serves_the_next() {
    let model = random_model(&variants()[0].1);
    let images = Tensor::<4>::random(
        [1, 3, 16, 16],
        Distribution::Normal(0.0, 1.0),
        &Device::flex(),
    );
    let tokens = model.embed(images);
    let fused = fused(&model);
    let address = |t: &Tensor<3>| {
        crate::ops::host::Values::of(t.clone())
            .unwrap()
            .get()
            .as_ptr()
    };
    let (_, first) = fused.encode_keeping(tokens.clone());
    let at: Vec<_> = first.blocks.iter().map(|b| address(&b.weights)).collect();
    let want: Vec<_> = first
        .blocks
        .iter()
        .map(|b| values(b.weights.clone()))
        .collect();
    drop(first);
    let (_, second) = fused.encode_keeping(tokens.clone());
    let mut again: Vec<_> = second.blocks.iter().map(|b| address(&b.weights)).collect();
    let mut wanted = at.clone();
    again.sort();
    wanted.sort();
    assert_eq!(again, wanted, "the same buffers");
    for (b, w) in second.blocks.iter().zip(&want) {
        assert_eq!(&values(b.weights.clone()), w);
    }
    let held = second.blocks[0].weights.clone();
    let before = values(held.clone());
    drop(second);
    let (_, third) = fused.encode_keeping(tokens);
    assert!(
        third
            .blocks
            .iter()
            .all(|b| address(&b.weights) != address(&held))
    );
    assert_eq!(values(held), before, "a held tensor is not written");
}

/// Blocks run in parts (the walk-through's way around the layer it
/// shows) give the tokens of one run, bit for bit, and number the
/// blocks they see from the encoder's first; on Burn's operations,
/// within rounding of the fused ones.
#[test]
fn blocks_in_parts_are_the_whole() {
    let cfg = &variants()[1].1;
    let model = random_model(cfg);
    let images = Tensor::<4>::random(
        [1, 3, 16, 16],
        Distribution::Normal(0.0, 1.0),
        &Device::flex(),
    );
    let tokens = model.embed(images);
    let executor = Executor::for_model(&model);
    let depth = model.blocks.len();
    let whole = values(executor.encode_blocks(&model, tokens.clone(), 0..depth, None));
    for split in 0..=depth {
        let mut seen = Vec::new();
        let mut look = |i: usize, _: &Tensor<4>| seen.push(i);
        let first = executor.encode_blocks(&model, tokens.clone(), 0..split, Some(&mut look));
        let parts = executor.encode_blocks(&model, first, split..depth, Some(&mut look));
        assert_eq!(values(parts), whole, "split at {split}");
        assert_eq!(seen, (0..depth).collect::<Vec<_>>(), "split at {split}");
    }
    let operations = Executor::Operations.encode_blocks(&model, tokens.clone(), 0..depth, None);
    assert_close("blocks", &whole, &values(operations));
    // With the final norm, the whole encoder.
    let normed =
        values(model.final_norm(executor.encode_blocks(&model, tokens.clone(), 0..depth, None)));
    assert_close(
        "encoder",
        &normed,
        &values(executor.encode(&model, tokens, None)),
    );
}

/// No images: nothing computed, every block still seen.
#[test]
fn an_empty_batch_is_no_work() {
    let cfg = &variants()[0].1;
    let model = random_model(cfg);
    let tokens = Tensor::<3>::zeros([0, 17, cfg.embed_dim], &Device::flex());
    let mut seen = Vec::new();
    let out = fused(&model).encode(
        tokens,
        Some(&mut |i, a: &Tensor<4>| seen.push((i, a.dims()))),
    );
    assert_eq!(out.dims(), [0, 17, cfg.embed_dim]);
    assert_eq!(seen, [(0, [0, 2, 17, 17]), (1, [0, 2, 17, 17])]);
}

/// The executor is chosen from where the model lives, and named for
/// what it is: fused on the plain CPU device, Burn's operations under
/// autodiff (training) and on a GPU (natively wgpu, e.g. lavapipe).
#[test]
fn the_executor_follows_the_device_and_says_which() {
    let cfg = &variants()[0].1;
    let cpu = Executor::for_model(&cfg.init(&Device::flex()));
    assert!(matches!(cpu, Executor::Fused(_)));
    assert_eq!(cpu.name(), "fused CPU kernels");
    #[cfg(feature = "train")]
    {
        let trained = Executor::for_model(&cfg.init(&Device::flex().autodiff()));
        assert!(matches!(trained, Executor::Operations));
        assert_eq!(trained.name(), "Burn's operations");
    }
    #[cfg(feature = "wgpu")]
    if std::env::var_os("VITRINE_SKIP_WGPU").is_none() {
        let gpu = crate::backend::device(crate::backend::BackendKind::Wgpu)
            .expect("a wgpu adapter (lavapipe natively)");
        let on_gpu = Executor::for_model(&cfg.init(&gpu));
        assert!(matches!(on_gpu, Executor::Operations));
    }
}

/// Both executors give the same logits through `forward`.
#[test]
fn both_executors_forward_the_same() {
    let model = random_model(&variants()[1].1);
    let images = Tensor::<4>::random(
        [2, 3, 16, 16],
        Distribution::Normal(0.0, 1.0),
        &Device::flex(),
    );
    let fused = values(Executor::for_model(&model).forward(&model, images.clone()));
    let operations = values(Executor::Operations.forward(&model, images));
    assert_close("logits", &fused, &operations);
}

/// The fused backward pass gives the operations' attention weights and
/// gradients (every kind of model, all weights random, for two classes),
/// within float32 rounding of the largest of each layer's values.
#[test]
fn the_fused_backward_gives_the_operations_gradients() {
    let device = Device::flex();
    for (name, cfg) in cases() {
        let model = random_model(&cfg);
        let fused = Executor::for_model(&model);
        let image = Tensor::<4>::random([1, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
        let kept = fused.forward_keeping(&model, image.clone());
        assert!(
            matches!(kept, KeptForward::Fused { .. }),
            "{name}: kept fused"
        );
        let operations = Executor::Operations.forward_keeping(&model, image);
        assert_close(
            &format!("{name}: logits"),
            &values(kept.logits()),
            &values(operations.logits()),
        );
        // The weights read by columns, then their transposes by rows.
        for (class, transpose) in [
            (0, false),
            (cfg.num_classes - 1, false),
            (0, true),
            (cfg.num_classes - 1, true),
        ] {
            let got = fused.attention_gradients(&model, &kept, class, cfg.norm_eps, transpose);
            let want = Executor::Operations.attention_gradients(
                &model,
                &operations,
                class,
                cfg.norm_eps,
                false,
            );
            assert_eq!(got.len(), want.len(), "{name}: layers");
            for (i, ((ga, gg), (wa, wg))) in got.into_iter().zip(want).enumerate() {
                let what = format!("{name}, class {class}, transposed {transpose}, layer {i}");
                assert_close(&format!("{what}: weights"), &values(ga), &values(wa));
                let (gg, wg) = (values(gg), values(wg));
                // Relative to the layer's largest gradient, however small.
                let largest = wg.iter().fold(0f32, |m, v| m.max(v.abs()));
                assert!(largest > 0.0, "{what}: a gradient to compare");
                let worst = gg
                    .iter()
                    .zip(&wg)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst <= 1e-4 * largest,
                    "{what}: gradient off by {worst:e} (largest {largest:e})"
                );
            }
        }
    }
}
