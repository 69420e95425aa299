//! A loaded model ready to classify: preprocessing, the forward pass, and one
//! read-back of the small results (logits and CLS attention), shared by the
//! CLI, the tests and the browser; and a [`Viewer`] that keeps the last
//! image prepared, for the page's questions about it.

use std::sync::{Arc, Mutex};

use burn::tensor::{Device, Tensor, TensorData};

use crate::backend::now_ms;
use crate::checkpoint::{Checkpoint, Progress};
use crate::exec::{Executor, KeptForward};
use crate::explain::relevance::{self, RelevanceMaps};
use crate::explain::{AttentionMaps, AttentionTrace, MapQueries, head_mean};
use crate::model::{VisionTransformer, VitConfig};
use crate::preprocess::{Prepared, PreprocessConfig, PreprocessError, prepare};
use crate::walkthrough::{Focus, Walkthrough};

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

/// Why an image could not be classified.
#[derive(Clone, Debug, PartialEq)]
pub enum ClassifyError {
    /// The pixels could not be prepared (empty, wrong buffer, too large).
    Preprocess(PreprocessError),
    /// The forward pass gave NaN or ±Inf: weights that are finite but
    /// overflow float32 on the way (NaN and Inf weights are refused when the
    /// checkpoint loads).
    NotANumber {
        /// Which output: "logits", "CLS attention" or "attention rollout".
        output: &'static str,
        nan: usize,
        infinite: usize,
        len: usize,
    },
    /// Relevance to a class was asked of a model without a classifier.
    NoClassifier,
    /// Relevance to a class the model does not have.
    NoSuchClass { class: usize, classes: usize },
    /// A discard ratio outside [0, 1).
    DiscardRatio(f64),
    /// The relevance pass would need more working memory than allowed.
    RelevanceTooLarge { needed: u64, budget: u64 },
}

impl std::fmt::Display for ClassifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Preprocess(e) => e.fmt(f),
            Self::NotANumber {
                output,
                nan,
                infinite,
                len,
            } => write!(
                f,
                "the model's output is not a number: of the {len} values of its {output}, \
                 {nan} are NaN and {infinite} infinite (the checkpoint's weights overflow \
                 float32 somewhere in the forward pass; it is damaged or not meant for this \
                 architecture)"
            ),
            Self::NoClassifier => f.write_str(
                "this model has no classifier (it is a backbone), so there is no class score to \
                 explain; its attention maps still show where it looks",
            ),
            Self::NoSuchClass { class, classes } => write!(
                f,
                "there is no class {class}: this model has {classes} classes, 0 to {}",
                classes.saturating_sub(1)
            ),
            Self::RelevanceTooLarge { needed, budget } => write!(
                f,
                "a relevance map of this model at this input size needs about {:.1} GB of working \
                 memory (every layer's attention is kept for the backward pass), more than the \
                 {:.1} GB available here; a smaller input size needs less",
                *needed as f64 / 1e9,
                *budget as f64 / 1e9
            ),
            Self::DiscardRatio(r) => write!(
                f,
                "the discard ratio must be at least 0 and below 1 (the share of each layer's \
                 weighted attention set to zero), got {r}"
            ),
        }
    }
}

impl std::error::Error for ClassifyError {}

impl From<PreprocessError> for ClassifyError {
    fn from(e: PreprocessError) -> Self {
        Self::Preprocess(e)
    }
}

/// `Err` naming `output` when any of `values` is NaN or infinite.
fn finite(output: &'static str, values: &[f32]) -> Result<(), ClassifyError> {
    // One pass on every classification; the counts only when it fails.
    if values.iter().all(|v| v.is_finite()) {
        return Ok(());
    }
    let nan = values.iter().filter(|v| v.is_nan()).count();
    let infinite = values.iter().filter(|v| v.is_infinite()).count();
    Err(ClassifyError::NotANumber {
        output,
        nan,
        infinite,
        len: values.len(),
    })
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

    /// Caps the working memory of a relevance pass (the browser's 4 GB of
    /// wasm memory); beyond it, [`Classifier::relevance_input`] refuses.
    pub fn with_relevance_budget(mut self, bytes: u64) -> Self {
        self.relevance_budget = bytes;
        self
    }

    /// About how many bytes a relevance pass holds at once: per layer, the
    /// attention, its gradient, Q, K, V, the MLP's pre-activation and the
    /// block's inputs (all kept until the maps are formed), the head-mean
    /// matrices and their read-back; and one layer's backward pass in
    /// flight.
    pub fn relevance_bytes(&self) -> u64 {
        let c = &self.config;
        let (l, h, t) = (c.depth as u64, c.num_heads as u64, c.num_tokens() as u64);
        let (d, hidden) = (c.embed_dim as u64, c.mlp_hidden as u64);
        let per_layer = 2 * h * t * t + t * (5 * d + hidden) + 3 * t * t;
        4 * (l * per_layer + 4 * h * t * t + t * hidden)
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
        let mut prediction = self.classify_input(&image.input, keep_layer).await?;
        prediction.view_box = image.view_box;
        prediction.timings.preprocess = preprocess_ms;
        Ok(prediction)
    }

    /// The forward pass of a preprocessed input ([C, H, W]) step by step,
    /// for the teaching view (see [`crate::walkthrough`]).
    ///
    /// Panics when `input` has the wrong length or `focus` names a patch,
    /// layer or head that does not exist (callers check against the config).
    pub async fn walkthrough(&self, input: &[f32], focus: &Focus) -> Walkthrough {
        crate::walkthrough::walk(&self.model, &self.config, &self.device, input, focus).await
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

    /// Class-specific relevance maps of a preprocessed input ([C, H, W]):
    /// gradient-weighted rollout, Chefer et al.'s relevance and each head's
    /// gradient-weighted attention, for `class` (the most probable one when
    /// `None`); see [`crate::explain::relevance`]. The forward pass is run
    /// again by the model's executor, keeping each block's values, and its
    /// backward pass once (the fused kernels' on the CPU, else the one
    /// written out in [`crate::explain::gradient`]); only the maps and, per
    /// layer, one [T, T] matrix are read back.
    ///
    /// Panics if `input` has the wrong length (as [`Classifier::classify_input`]).
    pub async fn relevance_input(
        &self,
        input: &[f32],
        class: Option<usize>,
        discard_ratio: f64,
    ) -> Result<Relevance, ClassifyError> {
        self.check_relevance(class, discard_ratio)?;
        let c = &self.config;
        let [h, w] = c.img_size;
        assert_eq!(input.len(), c.in_chans * h * w, "input length");
        let t0 = now_ms();
        let x = Tensor::<4>::from_data(
            TensorData::new(input.to_vec(), [1, c.in_chans, h, w]),
            &self.device,
        );
        let forward = self.executor.forward_keeping(&self.model, x);
        self.relevance_of(&forward, class, discard_ratio, t0).await
    }

    /// [`Classifier::relevance_input`] for the image whose forward pass
    /// [`Classifier::classify_input_keeping`] kept: only the backward pass
    /// and the maps run.
    pub async fn relevance_kept(
        &self,
        forward: &KeptForward,
        class: Option<usize>,
        discard_ratio: f64,
    ) -> Result<Relevance, ClassifyError> {
        self.check_relevance(class, discard_ratio)?;
        self.relevance_of(forward, class, discard_ratio, now_ms())
            .await
    }

    /// Refuses what a relevance map cannot be: of a backbone, of a class
    /// the model lacks, with a ratio outside [0, 1), past the budget.
    fn check_relevance(
        &self,
        class: Option<usize>,
        discard_ratio: f64,
    ) -> Result<(), ClassifyError> {
        let c = &self.config;
        if !c.has_head() {
            return Err(ClassifyError::NoClassifier);
        }
        if let Some(class) = class.filter(|&k| k >= c.num_classes) {
            return Err(ClassifyError::NoSuchClass {
                class,
                classes: c.num_classes,
            });
        }
        if !(0.0..1.0).contains(&discard_ratio) {
            return Err(ClassifyError::DiscardRatio(discard_ratio));
        }
        let needed = self.relevance_bytes();
        if needed > self.relevance_budget {
            return Err(ClassifyError::RelevanceTooLarge {
                needed,
                budget: self.relevance_budget,
            });
        }
        Ok(())
    }

    /// The maps of `class` (the top one when `None`) from a kept forward
    /// pass: the backward pass, the maps on the device, one read-back.
    async fn relevance_of(
        &self,
        forward: &KeptForward,
        class: Option<usize>,
        discard_ratio: f64,
        t0: f64,
    ) -> Result<Relevance, ClassifyError> {
        let c = &self.config;
        let logits_now = forward.logits().reshape([-1]);
        let read = |t: Tensor<1>| async move {
            t.into_data_async()
                .await
                .expect("read-back of relevance maps")
                .try_into_vec::<f32>()
                .expect("f32 outputs")
        };
        let (class, logits) = match class {
            Some(k) => (k, None),
            None => {
                let logits = read(logits_now.clone()).await;
                finite("logits", &logits)?; // before picking the top class of them
                (top_k(&logits, 1)[0].0, Some(logits))
            }
        };
        let layers = self
            .executor
            .attention_gradients(&self.model, &forward, class, c.norm_eps);
        let tensors = relevance::device_maps(layers, MapQueries::of(&self.model));
        let flat = match logits {
            Some(_) => tensors.flat.clone(),
            None => Tensor::cat(vec![logits_now, tensors.flat.clone()], 0),
        };
        #[cfg(not(target_arch = "wasm32"))]
        let _ = self.device.sync();
        let t1 = now_ms();
        let data = read(flat).await;
        let (logits, data) = match logits {
            Some(logits) => (logits, &data[..]),
            None => {
                let (logits, rest) = data.split_at(c.num_classes);
                (logits.to_vec(), rest)
            }
        };
        finite("logits", &logits)?;
        finite("relevance", data)?;
        let maps = tensors.finish(data, class, c.grid(), discard_ratio);
        let t2 = now_ms();
        Ok(Relevance {
            probabilities: softmax(&logits),
            logits,
            maps,
            timings: Timings {
                preprocess: 0.0,
                forward: t1 - t0,
                readback: t2 - t1,
            },
        })
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

/// A classifier and the last image it classified, kept prepared: asking
/// for another layer's full attention, or for the walk-through of that
/// image, takes no pixels and repeats no preprocessing. The forward pass
/// itself is run again (tens of milliseconds for the default model): keeping
/// every layer's full attention instead would hold L·H·(N+1)² floats, 22 MB
/// for ViT-B/16 and gigabytes for a 60×60 patch grid.
pub struct Viewer {
    pub classifier: Classifier,
    image: Mutex<Option<Arc<Prepared>>>,
    /// The kept image's forward pass, when its classification was asked
    /// to keep it for relevance maps.
    forward: Mutex<Option<Arc<KeptForward>>>,
}

/// Why a question about the kept image could not be answered.
#[derive(Clone, Debug, PartialEq)]
pub enum ViewerError {
    /// Nothing was classified with this model yet.
    NoImage,
    /// A layer, head or patch the model does not have.
    OutOfRange(String),
    Classify(ClassifyError),
}

impl std::fmt::Display for ViewerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoImage => f.write_str("no image has been classified with this model yet"),
            Self::OutOfRange(what) => f.write_str(what),
            Self::Classify(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ViewerError {}

impl From<ClassifyError> for ViewerError {
    fn from(e: ClassifyError) -> Self {
        Self::Classify(e)
    }
}

impl Viewer {
    pub fn new(classifier: Classifier) -> Self {
        Self {
            classifier,
            image: Mutex::new(None),
            forward: Mutex::new(None),
        }
    }

    fn kept(&self) -> Result<Arc<Prepared>, ViewerError> {
        self.image
            .lock()
            .expect("not poisoned")
            .clone()
            .ok_or(ViewerError::NoImage)
    }

    fn check_layer(&self, layer: usize) -> Result<(), ViewerError> {
        let depth = self.classifier.config.depth;
        if layer >= depth {
            return Err(ViewerError::OutOfRange(format!(
                "layer {layer} does not exist: the model has layers 0..{}",
                depth - 1
            )));
        }
        Ok(())
    }

    /// Classifies RGBA pixels and keeps the prepared image; with
    /// `for_relevance`, also its forward pass, so that a relevance map of
    /// it runs only the backward pass (where memory allows:
    /// [`Classifier::classify_input_keeping`]). When preprocessing fails,
    /// the image kept before stays.
    pub async fn classify(
        &self,
        rgba: &[u8],
        width: u32,
        height: u32,
        keep_layer: Option<usize>,
        for_relevance: bool,
    ) -> Result<Prediction, ViewerError> {
        if let Some(l) = keep_layer {
            self.check_layer(l)?;
        }
        let (image, preprocess_ms) = self
            .classifier
            .prepare(rgba, width, height)
            .map_err(ClassifyError::from)?;
        let image = Arc::new(image);
        *self.image.lock().expect("not poisoned") = Some(image.clone());
        *self.forward.lock().expect("not poisoned") = None;
        if !for_relevance {
            return Ok(self
                .classifier
                .classify_prepared(&image, keep_layer, preprocess_ms)
                .await?);
        }
        let (mut prediction, forward) = self
            .classifier
            .classify_input_keeping(&image.input, keep_layer)
            .await?;
        prediction.view_box = image.view_box;
        prediction.timings.preprocess = preprocess_ms;
        *self.forward.lock().expect("not poisoned") = forward.map(Arc::new);
        Ok(prediction)
    }

    /// The kept image's full attention of `layer`, [H, N+1, N+1], and its
    /// mean over heads, [N+1, N+1].
    pub async fn layer_attention(&self, layer: usize) -> Result<(Vec<f32>, Vec<f32>), ViewerError> {
        self.check_layer(layer)?;
        let image = self.kept()?;
        let p = self
            .classifier
            .classify_prepared(&image, Some(layer), 0.0)
            .await?;
        Ok((
            p.layer_attention.expect("asked for"),
            p.layer_mean.expect("asked for"),
        ))
    }

    /// The kept image's relevance maps for `class` (the top one when
    /// `None`); see [`Classifier::relevance_input`].
    pub async fn relevance(
        &self,
        class: Option<usize>,
        discard_ratio: f64,
    ) -> Result<Relevance, ViewerError> {
        let image = self.kept()?;
        let forward = self.forward.lock().expect("not poisoned").clone();
        Ok(match forward {
            Some(forward) => {
                self.classifier
                    .relevance_kept(&forward, class, discard_ratio)
                    .await?
            }
            None => {
                self.classifier
                    .relevance_input(&image.input, class, discard_ratio)
                    .await?
            }
        })
    }

    /// The kept image's forward pass step by step, and the input it saw.
    pub async fn walkthrough(
        &self,
        focus: &Focus,
    ) -> Result<(Walkthrough, Arc<Prepared>), ViewerError> {
        let c = &self.classifier.config;
        let n = c.num_patches();
        if focus.layer >= c.depth || focus.head >= c.num_heads {
            return Err(ViewerError::OutOfRange(format!(
                "layer {}, head {} does not exist: the model has {} layers of {} heads",
                focus.layer, focus.head, c.depth, c.num_heads
            )));
        }
        if let Some(p) = focus.patches.iter().find(|&&p| p >= n) {
            return Err(ViewerError::OutOfRange(format!(
                "patch {p} does not exist: the model has {n}"
            )));
        }
        let image = self.kept()?;
        let walk = self.classifier.walkthrough(&image.input, focus).await;
        Ok((walk, image))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pollster::FutureExt;

    #[test]
    fn top_k_and_softmax() {
        let p = softmax(&[1.0, 3.0, 2.0, 3.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(
            top_k(&p, 3).iter().map(|t| t.0).collect::<Vec<_>>(),
            vec![1, 3, 2]
        );
    }

    /// The viewer answers about the image it kept, as a fresh classification
    /// of the same pixels would, and keeps it when a later image is refused.
    #[cfg(feature = "cpu")]
    #[test]
    fn the_viewer_answers_about_the_kept_image() {
        let config = VitConfig::new([32, 32], 8, 24, 2, 3, 48).with_num_classes(4);
        let device = Device::flex();
        device.seed(3);
        let model = config.init(&device);
        let pre = PreprocessConfig::timm_default(3, [32, 32]);
        let viewer = Viewer::new(Classifier::from_model(model, config, pre, &device));
        let focus = Focus {
            patches: vec![1],
            layer: 1,
            head: 0,
        };
        use pollster::block_on as block;
        assert_eq!(
            block(viewer.layer_attention(0)).unwrap_err(),
            ViewerError::NoImage
        );
        assert!(matches!(
            block(viewer.walkthrough(&focus)),
            Err(ViewerError::NoImage)
        ));

        let (w, h) = (40u32, 30u32);
        let rgba: Vec<u8> = (0..w * h * 4).map(|i| (i * 7 % 251) as u8).collect();
        let first = block(viewer.classify(&rgba, w, h, None, false)).unwrap();
        assert!(first.layer_attention.is_none());
        // A refused image (wrong buffer length) leaves the kept one in place.
        assert!(block(viewer.classify(&rgba[..10], w, h, None, false)).is_err());
        let fresh = viewer
            .classifier
            .classify(&rgba, w, h, Some(1))
            .block_on()
            .unwrap();
        let (layer, mean) = block(viewer.layer_attention(1)).unwrap();
        assert_eq!(Some(&layer), fresh.layer_attention.as_ref());
        assert_eq!(Some(&mean), fresh.layer_mean.as_ref());
        let t = 17;
        assert_eq!(mean.len(), t * t);
        let by_hand: Vec<f32> = (0..t * t)
            .map(|i| (0..3).map(|k| layer[k * t * t + i]).sum::<f32>() / 3.0)
            .collect();
        assert!(mean.iter().zip(&by_hand).all(|(a, b)| (a - b).abs() < 1e-6));
        let (walk, kept) = block(viewer.walkthrough(&focus)).unwrap();
        assert_eq!(kept.input, fresh.input);
        // The walk-through runs Burn's operations, classification the fused
        // blocks natively: the same logits within float32 rounding.
        let largest = fresh.logits.iter().fold(1f32, |m, v| m.max(v.abs()));
        assert!(
            walk.logits
                .iter()
                .zip(&fresh.logits)
                .all(|(a, b)| (a - b).abs() <= 1e-5 * largest),
            "{:?} vs {:?}",
            walk.logits,
            fresh.logits
        );
        assert!(matches!(
            block(viewer.layer_attention(2)),
            Err(ViewerError::OutOfRange(_))
        ));
    }

    /// A classification that keeps its forward pass for relevance answers
    /// as one that does not, and the relevance map then drawn from it (the
    /// backward pass alone) is the one a fresh pass gives, bit for bit, on
    /// either executor; a later image, or a later classification that does
    /// not keep, drops it.
    #[cfg(feature = "cpu")]
    #[test]
    fn a_kept_forward_pass_gives_the_same_classification_and_maps() {
        use crate::model::testing::random_model;
        let config = VitConfig::new([32, 32], 8, 24, 2, 3, 48).with_num_classes(4);
        let device = Device::flex();
        let pre = PreprocessConfig::timm_default(3, [32, 32]);
        let (w, h) = (40u32, 30u32);
        let rgba: Vec<u8> = (0..w * h * 4).map(|i| (i * 7 % 251) as u8).collect();
        for fused in [true, false] {
            let mut classifier =
                Classifier::from_model(random_model(&config), config.clone(), pre.clone(), &device);
            if !fused {
                classifier.executor = Executor::Operations;
            }
            let viewer = Viewer::new(classifier);
            let plain = viewer
                .classify(&rgba, w, h, None, false)
                .block_on()
                .unwrap();
            let fresh = viewer.relevance(Some(2), 0.5).block_on().unwrap();
            let kept = viewer.classify(&rgba, w, h, None, true).block_on().unwrap();
            assert!(
                viewer.forward.lock().unwrap().is_some(),
                "fused {fused}: kept"
            );
            assert_eq!(kept.logits, plain.logits, "fused {fused}");
            assert_eq!(kept.attention.cls, plain.attention.cls, "fused {fused}");
            assert_eq!(kept.rollout, plain.rollout, "fused {fused}");
            let from_kept = viewer.relevance(Some(2), 0.5).block_on().unwrap();
            assert_eq!(from_kept.maps.chefer, fresh.maps.chefer, "fused {fused}");
            assert_eq!(
                from_kept.maps.grad_rollout, fresh.maps.grad_rollout,
                "fused {fused}"
            );
            assert_eq!(
                from_kept.maps.heads_map, fresh.maps.heads_map,
                "fused {fused}"
            );
            assert_eq!(from_kept.logits, fresh.logits, "fused {fused}");
            viewer
                .classify(&rgba, w, h, None, false)
                .block_on()
                .unwrap();
            assert!(
                viewer.forward.lock().unwrap().is_none(),
                "fused {fused}: dropped"
            );
        }
    }
}
