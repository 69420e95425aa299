//! How a model runs, chosen once when it is loaded: the model (`model/`)
//! says what a ViT computes, in the paper's order, through Burn's
//! operations; an [`Executor`] says what runs it.
//!
//! - [`Executor::Fused`]: on Burn's plain CPU device, the encoder's blocks
//!   through the fused kernels of [`crate::ops::encoder`] (two passes a
//!   block over the weights in place, natively and in the browser's CPU
//!   module);
//! - [`Executor::Operations`]: everywhere else (WebGPU, autodiff for
//!   training, a model whose weights the fused kernels cannot read in
//!   place), Burn's operations, the model's own `forward`.
//!
//! Both give the same trace for classification: the final tokens, and each
//! block's attention weights when asked; and for a relevance map, a forward
//! pass that keeps what the backward pass needs, then ∂logit/∂A of every
//! layer (on the fused path, both on the fused kernels: `ops::backward`).
//! The walk-through runs the blocks before and after the one it shows on
//! the executor, and that block through the model's operations, which
//! expose every step of it.

use burn::tensor::{Tensor, TensorData};

use crate::explain::relevance::{self, RelevanceTensors};
use crate::explain::{MapQueries, gradient};
use crate::model::VisionTransformer;
#[cfg(feature = "cpu")]
use crate::ops::encoder::{BlockParams, FusedEncoder};
#[cfg(feature = "cpu")]
use crate::ops::host::Values;
#[cfg(feature = "cpu")]
use crate::ops::keep::Kept;

/// Called with each block's index and attention weights [B, heads, T, T].
pub type LookAttention<'a> = &'a mut dyn FnMut(usize, &Tensor<4>);

/// What runs a model's encoder.
pub enum Executor {
    /// The fused CPU kernels, with the model's weights read in place.
    #[cfg(feature = "cpu")]
    Fused(FusedEncoder),
    /// Burn's operations, on the model's device.
    Operations,
}

impl Executor {
    /// The fastest executor that can run `model` where it is: the fused
    /// kernels where it lives on Burn's plain CPU device with every weight
    /// readable in place and its blocks all of one size, else Burn's
    /// operations.
    pub fn for_model(model: &VisionTransformer) -> Self {
        #[cfg(feature = "cpu")]
        {
            let blocks: Vec<BlockParams> = model
                .blocks
                .iter()
                .map(|b| BlockParams {
                    norm1: &b.norm1,
                    qkv: &b.attn.qkv,
                    q_norm: b.attn.q_norm.as_ref(),
                    k_norm: b.attn.k_norm.as_ref(),
                    proj: &b.attn.proj,
                    ls1: b.ls1.as_ref().map(|ls| ls.gamma.val()),
                    norm2: &b.norm2,
                    fc1: &b.mlp.fc1,
                    fc2: &b.mlp.fc2,
                    ls2: b.ls2.as_ref().map(|ls| ls.gamma.val()),
                    quick_gelu: b.mlp.quick_gelu,
                    heads: b.attn.num_heads,
                })
                .collect();
            if let Some(fused) = FusedEncoder::of(&blocks, model.norm.as_ref(), model.norm_eps) {
                return Executor::Fused(fused);
            }
        }
        Executor::Operations
    }

    /// Its name, as the model's status line shows it.
    pub fn name(&self) -> &'static str {
        match self {
            #[cfg(feature = "cpu")]
            Executor::Fused(_) => "fused CPU kernels",
            Executor::Operations => "Burn's operations",
        }
    }

    /// The L blocks and the final norm of `model`: tokens [B, T, D] →
    /// [B, T, D]; `look(i, A)`, when given, sees block i's attention
    /// weights [B, heads, T, T].
    pub fn encode(
        &self,
        model: &VisionTransformer,
        tokens: Tensor<3>,
        mut look: Option<LookAttention>,
    ) -> Tensor<3> {
        match self {
            #[cfg(feature = "cpu")]
            Executor::Fused(fused) => fused.encode(tokens, look),
            Executor::Operations => model.encode(tokens, |i, steps| {
                if let Some(look) = look.as_mut() {
                    look(i, &steps.attention.weights);
                }
            }),
        }
    }

    /// Blocks `range` alone, without the final norm: tokens [B, T, D] →
    /// [B, T, D]; `look(i, A)`, when given, sees block i's attention
    /// weights.
    pub fn encode_blocks(
        &self,
        model: &VisionTransformer,
        tokens: Tensor<3>,
        range: std::ops::Range<usize>,
        mut look: Option<LookAttention>,
    ) -> Tensor<3> {
        match self {
            #[cfg(feature = "cpu")]
            Executor::Fused(fused) => fused.encode_blocks(tokens, range, look),
            Executor::Operations => model.encode_blocks(tokens, range, |i, steps| {
                if let Some(look) = look.as_mut() {
                    look(i, &steps.attention.weights);
                }
            }),
        }
    }

    /// Logits (or a backbone's features): images [B, C, H, W] → [B, classes].
    pub fn forward(&self, model: &VisionTransformer, images: Tensor<4>) -> Tensor<2> {
        model.forward_head(self.encode(model, model.embed(images), None))
    }

    /// One image's forward pass ([1, C, H, W]), keeping what the backward
    /// pass of [`Executor::attention_gradients`] needs.
    pub fn forward_keeping(&self, model: &VisionTransformer, images: Tensor<4>) -> KeptForward {
        #[cfg(feature = "cpu")]
        if let Executor::Fused(fused) = self
            && fused.can_go_back()
        {
            assert_eq!(images.dims()[0], 1, "one image at a time");
            let (encoded, kept) = fused.encode_keeping(model.embed(images));
            let [_, t, d] = encoded.dims();
            let device = encoded.device();
            let last = Tensor::from_data(TensorData::new(kept.last.clone(), [t, d]), &device);
            return KeptForward::Fused {
                logits: model.forward_head(encoded.clone()),
                tokens: encoded.squeeze_dim(0),
                last,
                kept,
            };
        }
        KeptForward::Operations(gradient::forward(model, images))
    }

    /// The bytes the backward pass keeps for its speed when allowed to
    /// (`transpose` of [`Executor::attention_gradients`]): the weight
    /// matrices' transposes on the fused path, nothing on the other.
    pub fn transposed_bytes(&self) -> u64 {
        match self {
            #[cfg(feature = "cpu")]
            Executor::Fused(fused) => fused.transposed_bytes(),
            Executor::Operations => 0,
        }
    }

    /// Each layer's attention weights and the gradient of logit `class`
    /// with respect to them, [H, T, T] each, first layer first; `eps` is
    /// the model's LayerNorm epsilon. `transpose` lets the fused path make
    /// and keep [`Executor::transposed_bytes`] more.
    pub fn attention_gradients(
        &self,
        model: &VisionTransformer,
        forward: &KeptForward,
        class: usize,
        eps: f64,
        transpose: bool,
    ) -> Vec<(Tensor<3>, Tensor<3>)> {
        match (self, forward) {
            #[cfg(feature = "cpu")]
            (Executor::Fused(fused), KeptForward::Fused { last, .. }) => {
                let grads = fused_gradients(fused, model, forward, class, eps, transpose);
                let [t, _] = last.dims();
                let device = last.device();
                let square = |v: Vec<f32>| {
                    let h = v.len() / (t * t);
                    Tensor::<3>::from_data(TensorData::new(v, [h, t, t]), &device)
                };
                forward
                    .weights()
                    .into_iter()
                    .zip(grads.into_iter().map(square))
                    .collect()
            }
            (_, KeptForward::Operations(forward)) => forward
                .weights()
                .into_iter()
                .zip(gradient::attention_gradients(model, forward, class, eps))
                .collect(),
            #[cfg(feature = "cpu")]
            (Executor::Operations, KeptForward::Fused { .. }) => {
                unreachable!("a fused forward pass comes from the fused executor")
            }
        }
    }

    /// The relevance maps of logit `class` up to the host's last step
    /// ([`RelevanceTensors::finish`]): from [`Executor::attention_gradients`]
    /// on the device, or on the fused path on the host, where its
    /// gradients and the kept attention weights are already.
    pub fn relevance_maps(
        &self,
        model: &VisionTransformer,
        forward: &KeptForward,
        class: usize,
        eps: f64,
        transpose: bool,
    ) -> RelevanceTensors {
        let q = MapQueries::of(model);
        #[cfg(feature = "cpu")]
        if let (Executor::Fused(fused), KeptForward::Fused { .. }) = (self, forward) {
            let grads = fused_gradients(fused, model, forward, class, eps, transpose);
            let weights = forward.weights();
            let heads = weights[0].dims()[0];
            let weights: Vec<Values> = weights
                .into_iter()
                .map(|w| Values::of(w).expect("kept weights are f32 on the CPU"))
                .collect();
            let layers: Vec<(&[f32], &[f32])> = weights
                .iter()
                .map(Values::get)
                .zip(grads.iter().map(Vec::as_slice))
                .collect();
            let maps = relevance::host_maps(&layers, heads, q);
            fused.give_back(grads);
            return maps;
        }
        relevance::device_maps(
            self.attention_gradients(model, forward, class, eps, transpose),
            q,
        )
    }
}

/// The fused path's ∂logit/∂A, [H·T·T] a layer: the head's backward pass
/// in Burn's operations, then the blocks' on the fused kernels.
#[cfg(feature = "cpu")]
fn fused_gradients(
    fused: &FusedEncoder,
    model: &VisionTransformer,
    forward: &KeptForward,
    class: usize,
    eps: f64,
    transpose: bool,
) -> Vec<Vec<f32>> {
    let KeptForward::Fused {
        tokens, last, kept, ..
    } = forward
    else {
        unreachable!("a fused forward pass")
    };
    let g = gradient::head_back(model, last, tokens, class, eps);
    let g = g.into_data().try_into_vec::<f32>().expect("f32 gradient");
    fused
        .attention_gradients(kept, g, transpose)
        .expect("checked when the forward pass was kept")
}

/// One image's forward pass, with what its backward pass needs.
pub enum KeptForward {
    /// Burn's operations' values ([`gradient::forward`]).
    Operations(gradient::Forward),
    /// The fused kernels' buffers.
    #[cfg(feature = "cpu")]
    Fused {
        /// [1, classes]
        logits: Tensor<2>,
        /// The final norm's output [T, D], and its input [T, D].
        tokens: Tensor<2>,
        last: Tensor<2>,
        kept: Kept,
    },
}

impl KeptForward {
    /// Each layer's attention weights, [H, T, T], first layer first.
    pub fn weights(&self) -> Vec<Tensor<3>> {
        match self {
            KeptForward::Operations(f) => f.weights(),
            #[cfg(feature = "cpu")]
            KeptForward::Fused { kept, .. } => {
                kept.blocks.iter().map(|b| b.weights.clone()).collect()
            }
        }
    }

    /// The logits of the pass, [1, classes].
    pub fn logits(&self) -> Tensor<2> {
        match self {
            KeptForward::Operations(f) => f.logits.clone(),
            #[cfg(feature = "cpu")]
            KeptForward::Fused { logits, .. } => logits.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
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
                let images = Tensor::<4>::random(
                    [batch, 3, 16, 16],
                    Distribution::Normal(0.0, 1.0),
                    &device,
                );
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
        let normed = values(model.final_norm(executor.encode_blocks(
            &model,
            tokens.clone(),
            0..depth,
            None,
        )));
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
            let image =
                Tensor::<4>::random([1, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
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
}
