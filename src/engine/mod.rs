//! A loaded model ready to classify: preprocessing, the forward pass, and one
//! read-back of the small results (logits and CLS attention), shared by the
//! CLI, the tests and the browser; and a [`Viewer`] that keeps the last
//! image prepared, for the page's questions about it.

use burn::tensor::{Device, Tensor, TensorData};

use crate::backend::now_ms;
use crate::checkpoint::{Checkpoint, Progress};
use crate::exec::{Executor, KeptForward};
use crate::explain::relevance::RelevanceMaps;
use crate::explain::{AttentionMaps, AttentionTrace, MapQueries, head_mean};
use crate::model::{VisionTransformer, VitConfig};
use crate::preprocess::{Prepared, PreprocessConfig, PreprocessError, prepare};
use crate::walkthrough::{Focus, Walkthrough};

mod error;
mod relevance;
mod viewer;

pub use error::ClassifyError;
use error::finite;
pub use viewer::{Viewer, ViewerError};

/// A model on a device, with what it needs to interpret images and outputs.
pub struct Classifier {
    pub config: VitConfig,
    pub preprocess: PreprocessConfig,
    pub labels: Vec<String>,
    /// What the loader assumed (shown to the user).
    pub notes: Vec<String>,
    model: VisionTransformer,
    /// What runs the model's encoder, chosen once from where it lives.
    executor: Executor,
    device: Device,
    /// The most working memory a relevance pass may take, in bytes.
    relevance_budget: u64,
}

/// Time spent in each step, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Timings {
    pub preprocess: f64,
    pub forward: f64,
    pub readback: f64,
}

/// One image's result, on the host.
#[derive(Clone, Debug)]
pub struct Prediction {
    /// The head's output, [classes]; for a backbone (no head) the class
    /// token's features after the final norm, [D].
    pub logits: Vec<f32>,
    /// softmax of the logits; empty for a backbone.
    pub probabilities: Vec<f32>,
    /// CLS attention of every head of every layer.
    pub attention: AttentionMaps,
    /// The full [H, N+1, N+1] attention of the requested layer.
    pub layer_attention: Option<Vec<f32>>,
    /// Its mean over heads, [N+1, N+1].
    pub layer_mean: Option<Vec<f32>>,
    /// Attention rollout of the class token to each patch, [N].
    pub rollout: Vec<f32>,
    /// The model's input after preprocessing, [C, H, W] row-major, normalised.
    pub input: Vec<f32>,
    /// The rectangle [x0, y0, x1, y1] of the image that the input shows, in
    /// image pixels (the whole model input when classifying a ready input).
    pub view_box: [f64; 4],
    pub timings: Timings,
}

/// One image's relevance maps for one class, with the logits they came with.
#[derive(Clone, Debug)]
pub struct Relevance {
    pub maps: RelevanceMaps,
    /// [classes]
    pub logits: Vec<f32>,
    pub probabilities: Vec<f32>,
    /// `forward` covers the forward and backward passes; `readback` the
    /// read-back and the host's part of the maps.
    pub timings: Timings,
}

impl Prediction {
    /// This prediction placed on the image it was prepared from: the part
    /// of the image the model saw, and the preprocessing's time.
    pub fn of_image(mut self, image: &Prepared, preprocess_ms: f64) -> Self {
        self.view_box = image.view_box;
        self.timings.preprocess = preprocess_ms;
        self
    }

    /// The `k` most probable classes as (index, probability), best first.
    pub fn top(&self, k: usize) -> Vec<(usize, f32)> {
        top_k(&self.probabilities, k)
    }
}

/// Indices and values of the `k` largest values, largest first (ties: lower index first).
pub fn top_k(values: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx.into_iter().take(k).map(|i| (i, values[i])).collect()
}

/// Numerically stable softmax.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

impl Classifier {
    /// Wraps a model already on `device` (tests, freshly trained models);
    /// labels are `class 0`, `class 1`, ….
    pub fn from_model(
        model: VisionTransformer,
        config: VitConfig,
        preprocess: PreprocessConfig,
        device: &Device,
    ) -> Self {
        Self {
            labels: crate::checkpoint::default_labels(config.num_classes),
            config,
            preprocess,
            notes: Vec::new(),
            executor: Executor::for_model(&model),
            model,
            device: device.clone(),
            relevance_budget: u64::MAX,
        }
    }

    /// Uploads a checked checkpoint to `device`, freeing its host copy of
    /// each tensor as it goes.
    pub fn new(checkpoint: Checkpoint, device: Device) -> Self {
        Self::new_reporting(checkpoint, device, &|_, _, _| ())
    }

    /// [`Classifier::new`], telling `progress` how far the upload has come.
    pub fn new_reporting(checkpoint: Checkpoint, device: Device, progress: Progress) -> Self {
        let (config, preprocess) = (checkpoint.config.clone(), checkpoint.preprocess.clone());
        let (labels, notes) = (checkpoint.labels.clone(), checkpoint.notes.clone());
        let model = checkpoint.build_reporting(&device, progress);
        Self {
            config,
            preprocess,
            labels,
            notes,
            executor: Executor::for_model(&model),
            model,
            device,
            relevance_budget: u64::MAX,
        }
    }

    /// The model itself (for walk-throughs and benchmarks).
    pub fn model(&self) -> &VisionTransformer {
        &self.model
    }

    /// What runs the model's encoder (its name is in the model's status line).
    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// The device the model lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Resizes, crops and normalises RGBA pixels (`width × height × 4`
    /// bytes) as this model's preprocessing says; also how long it took, in ms.
    pub fn prepare(
        &self,
        rgba: &[u8],
        width: u32,
        height: u32,
    ) -> Result<(Prepared, f64), PreprocessError> {
        let t0 = now_ms();
        let prepared = prepare(rgba, width, height, &self.preprocess)?;
        Ok((prepared, now_ms() - t0))
    }

    /// Classifies RGBA pixels (`width × height × 4` bytes).
    pub async fn classify(
        &self,
        rgba: &[u8],
        width: u32,
        height: u32,
        keep_layer: Option<usize>,
    ) -> Result<Prediction, ClassifyError> {
        let (image, preprocess_ms) = self.prepare(rgba, width, height)?;
        self.classify_prepared(&image, keep_layer, preprocess_ms)
            .await
    }

    /// Classifies a prepared image (see [`Classifier::classify_input`]);
    /// `preprocess_ms` is reported in its timings.
    pub async fn classify_prepared(
        &self,
        image: &Prepared,
        keep_layer: Option<usize>,
        preprocess_ms: f64,
    ) -> Result<Prediction, ClassifyError> {
        let prediction = self.classify_input(&image.input, keep_layer).await?;
        Ok(prediction.of_image(image, preprocess_ms))
    }

    /// The papers' figures of a preprocessed input ([C, H, W]): token
    /// norms, the registers' share of attention, position similarity (see
    /// [`crate::figures`]). Panics when `input` has the wrong length.
    pub async fn token_figures(&self, input: &[f32]) -> crate::figures::TokenFigures {
        crate::figures::token_figures(
            &self.model,
            &self.executor,
            &self.config,
            &self.device,
            input,
        )
        .await
    }

    /// The PCA of the patch features of preprocessed inputs ([C, H, W]
    /// each), fitted over all of them (see [`crate::figures::feature_pca`]).
    /// Panics when an input has the wrong length or none is given.
    pub async fn feature_pca(&self, inputs: &[&[f32]], split: bool) -> crate::figures::FeaturePca {
        let features: Vec<_> = inputs
            .iter()
            .map(|input| {
                crate::figures::patch_features(
                    &self.model,
                    &self.executor,
                    &self.config,
                    &self.device,
                    input,
                )
            })
            .collect();
        crate::figures::feature_pca(&features, self.config.grid(), split).await
    }

    /// The forward pass of a preprocessed input ([C, H, W]) step by step,
    /// for the teaching view (see [`crate::walkthrough`]).
    ///
    /// Panics when `input` has the wrong length or `focus` names a patch,
    /// layer or head that does not exist (callers check against the config).
    pub async fn walkthrough(&self, input: &[f32], focus: &Focus) -> Walkthrough {
        crate::walkthrough::walk(
            &self.model,
            &self.executor,
            &self.config,
            &self.device,
            input,
            focus,
        )
        .await
    }

    /// Classifies an already preprocessed input, [C, H, W] row-major. Fails
    /// when the outputs are not numbers (NaN or infinite), rather than
    /// giving the caller "NaN%".
    ///
    /// Panics if `input` has the wrong length or `keep_layer` is out of range:
    /// callers get inputs from [`preprocess`] and layers from the config.
    pub async fn classify_input(
        &self,
        input: &[f32],
        keep_layer: Option<usize>,
    ) -> Result<Prediction, ClassifyError> {
        Ok(self.classify_traced(input, keep_layer, false).await?.0)
    }

    /// [`Classifier::classify_input`], keeping what a relevance map's
    /// backward pass needs ([`Classifier::relevance_kept`]) where the
    /// model has a classifier and its relevance pass fits the budget (the
    /// kept values are a part of what that pass holds); `None` elsewhere.
    pub async fn classify_input_keeping(
        &self,
        input: &[f32],
        keep_layer: Option<usize>,
    ) -> Result<(Prediction, Option<KeptForward>), ClassifyError> {
        let keep = self.config.has_head() && self.relevance_bytes() <= self.relevance_budget;
        self.classify_traced(input, keep_layer, keep).await
    }

    async fn classify_traced(
        &self,
        input: &[f32],
        keep_layer: Option<usize>,
        keep: bool,
    ) -> Result<(Prediction, Option<KeptForward>), ClassifyError> {
        let c = &self.config;
        let [h, w] = c.img_size;
        assert_eq!(input.len(), c.in_chans * h * w, "input length");
        assert!(keep_layer.is_none_or(|l| l < c.depth), "layer out of range");

        let t0 = now_ms();
        let x = Tensor::<4>::from_data(
            TensorData::new(input.to_vec(), [1, c.in_chans, h, w]),
            &self.device,
        );
        let mut trace = AttentionTrace::new(MapQueries::of(&self.model), keep_layer);
        let (logits, kept) = if keep {
            let kept = self.executor.forward_keeping(&self.model, x);
            for (i, weights) in kept.weights().iter().enumerate() {
                trace.record(i, &weights.clone().unsqueeze_dim(0));
            }
            (kept.logits(), Some(kept))
        } else {
            let tokens = self.executor.encode(
                &self.model,
                self.model.embed(x),
                Some(&mut |i, a| trace.record(i, a)),
            );
            (self.model.forward_head(tokens), None)
        };
        let maps = trace.finish();
        // One read-back: logits, CLS attention and the optional layer, flattened together.
        let mut parts = vec![
            logits.reshape([-1]),
            maps.rollout.reshape([-1]),
            maps.cls_attention.reshape([-1]),
        ];
        parts.extend(maps.layer_attention.map(|a| a.reshape([-1])));
        let flat = Tensor::cat(parts, 0);
        // Backends queue work lazily: natively, wait for it so that the forward
        // time is the computation. A browser cannot block, so there the
        // forward time is the dispatch and the read-back includes the GPU's work.
        #[cfg(not(target_arch = "wasm32"))]
        let _ = self.device.sync();
        let t1 = now_ms();
        let data = flat
            .into_data_async()
            .await
            .expect("read-back of model outputs")
            .try_into_vec::<f32>()
            .expect("f32 outputs");
        let t2 = now_ms();

        let classes = c.outputs();
        let n = c.num_patches();
        let cls_len = c.depth * c.num_heads * n;
        let logits = data[..classes].to_vec();
        let rollout = data[classes..classes + n].to_vec();
        let cls = data[classes + n..classes + n + cls_len].to_vec();
        let layer_attention = keep_layer.map(|_| data[classes + n + cls_len..].to_vec());
        finite(if c.has_head() { "logits" } else { "features" }, &logits)?;
        finite("CLS attention", &cls)?;
        finite("attention rollout", &rollout)?;
        if let Some(a) = &layer_attention {
            finite("attention", a)?;
        }
        let layer_mean = layer_attention
            .as_deref()
            .map(|a| head_mean(a, c.num_heads));
        let prediction = Prediction {
            probabilities: if c.has_head() {
                softmax(&logits)
            } else {
                Vec::new()
            },
            logits,
            layer_mean,
            attention: AttentionMaps {
                layers: c.depth,
                heads: c.num_heads,
                grid: c.grid(),
                cls,
            },
            layer_attention,
            rollout,
            input: input.to_vec(),
            view_box: [0.0, 0.0, w as f64, h as f64],
            timings: Timings {
                preprocess: 0.0,
                forward: t1 - t0,
                readback: t2 - t1,
            },
        };
        Ok((prediction, kept))
    }

    /// Logits of many preprocessed inputs ([C, H, W] each, concatenated), in
    /// batches of `batch`: [images × outputs] row-major (evaluation).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn logits_batched(&self, inputs: &[f32], batch: usize) -> Vec<f32> {
        let c = &self.config;
        let [h, w] = c.img_size;
        let per = c.in_chans * h * w;
        assert_eq!(inputs.len() % per, 0, "input length");
        let mut out = Vec::with_capacity(inputs.len() / per * c.outputs());
        for chunk in inputs.chunks(per * batch.max(1)) {
            let b = chunk.len() / per;
            let x = Tensor::<4>::from_data(
                TensorData::new(chunk.to_vec(), [b, c.in_chans, h, w]),
                &self.device,
            );
            let logits = self.executor.forward(&self.model, x).into_data();
            out.extend(logits.try_into_vec::<f32>().expect("f32 logits"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_and_softmax() {
        let p = softmax(&[1.0, 3.0, 2.0, 3.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(
            top_k(&p, 3).iter().map(|t| t.0).collect::<Vec<_>>(),
            vec![1, 3, 2]
        );
    }
}
