//! A loaded model ready to classify: preprocessing, the forward pass, and one
//! read-back of the small results (logits and CLS attention), shared by the
//! CLI, the tests and the browser.

use burn::tensor::{Device, Tensor, TensorData};

use crate::backend::now_ms;
use crate::checkpoint::Checkpoint;
use crate::explain::AttentionMaps;
use crate::model::{VisionTransformer, VitConfig};
use crate::preprocess::{PreprocessConfig, PreprocessError, prepare};

/// A model on a device, with what it needs to interpret images and outputs.
pub struct Classifier {
    pub config: VitConfig,
    pub preprocess: PreprocessConfig,
    pub labels: Vec<String>,
    /// What the loader assumed (shown to the user).
    pub notes: Vec<String>,
    model: VisionTransformer,
    device: Device,
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
    /// [classes]
    pub logits: Vec<f32>,
    /// softmax of the logits.
    pub probabilities: Vec<f32>,
    /// CLS attention of every head of every layer.
    pub attention: AttentionMaps,
    /// The full [H, N+1, N+1] attention of the requested layer.
    pub layer_attention: Option<Vec<f32>>,
    /// Attention rollout of the class token to each patch, [N].
    pub rollout: Vec<f32>,
    /// The model's input after preprocessing, [C, H, W] row-major, normalised.
    pub input: Vec<f32>,
    /// The rectangle [x0, y0, x1, y1] of the image that the input shows, in
    /// image pixels (the whole model input when classifying a ready input).
    pub view_box: [f64; 4],
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
            labels: (0..config.num_classes)
                .map(|i| format!("class {i}"))
                .collect(),
            config,
            preprocess,
            notes: Vec::new(),
            model,
            device: device.clone(),
        }
    }

    /// Uploads a checked checkpoint to `device`.
    pub fn new(checkpoint: &Checkpoint, device: Device) -> Self {
        Self {
            config: checkpoint.config.clone(),
            preprocess: checkpoint.preprocess.clone(),
            labels: checkpoint.labels.clone(),
            notes: checkpoint.notes.clone(),
            model: checkpoint.build(&device),
            device,
        }
    }

    /// The model itself (for walk-throughs and benchmarks).
    pub fn model(&self) -> &VisionTransformer {
        &self.model
    }

    /// The device the model lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Classifies RGBA pixels (`width × height × 4` bytes).
    pub async fn classify(
        &self,
        rgba: &[u8],
        width: u32,
        height: u32,
        keep_layer: Option<usize>,
    ) -> Result<Prediction, ClassifyError> {
        let t0 = now_ms();
        let prepared = prepare(rgba, width, height, &self.preprocess)?;
        let preprocess_ms = now_ms() - t0;
        let mut prediction = self.classify_input(&prepared.input, keep_layer).await?;
        prediction.timings.preprocess = preprocess_ms;
        prediction.view_box = prepared.view_box;
        Ok(prediction)
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
        let c = &self.config;
        let [h, w] = c.img_size;
        assert_eq!(input.len(), c.in_chans * h * w, "input length");
        assert!(keep_layer.is_none_or(|l| l < c.depth), "layer out of range");

        let t0 = now_ms();
        let x = Tensor::<4>::from_data(
            TensorData::new(input.to_vec(), [1, c.in_chans, h, w]),
            &self.device,
        );
        let out = self.model.forward_with_attention(x, keep_layer);
        // One read-back: logits, CLS attention and the optional layer, flattened together.
        let mut parts = vec![
            out.logits.reshape([-1]),
            out.rollout.reshape([-1]),
            out.cls_attention.reshape([-1]),
        ];
        parts.extend(out.layer_attention.map(|a| a.reshape([-1])));
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

        let classes = c.num_classes;
        let n = c.num_patches();
        let cls_len = c.depth * c.num_heads * n;
        let logits = data[..classes].to_vec();
        let rollout = data[classes..classes + n].to_vec();
        let cls = data[classes + n..classes + n + cls_len].to_vec();
        let layer_attention = keep_layer.map(|_| data[classes + n + cls_len..].to_vec());
        finite("logits", &logits)?;
        finite("CLS attention", &cls)?;
        finite("attention rollout", &rollout)?;
        if let Some(a) = &layer_attention {
            finite("attention", a)?;
        }
        Ok(Prediction {
            probabilities: softmax(&logits),
            logits,
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
        })
    }

    /// Logits of many preprocessed inputs ([C, H, W] each, concatenated), in
    /// batches of `batch`: [images × classes] row-major (evaluation).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn logits_batched(&self, inputs: &[f32], batch: usize) -> Vec<f32> {
        let c = &self.config;
        let [h, w] = c.img_size;
        let per = c.in_chans * h * w;
        assert_eq!(inputs.len() % per, 0, "input length");
        let mut out = Vec::with_capacity(inputs.len() / per * c.num_classes);
        for chunk in inputs.chunks(per * batch.max(1)) {
            let b = chunk.len() / per;
            let x = Tensor::<4>::from_data(
                TensorData::new(chunk.to_vec(), [b, c.in_chans, h, w]),
                &self.device,
            );
            let logits = self.model.forward(x).into_data();
            out.extend(logits.try_into_vec::<f32>().expect("f32 logits"));
        }
        out
    }

    /// Native convenience: [`Classifier::classify`] run to completion.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn classify_blocking(
        &self,
        rgba: &[u8],
        width: u32,
        height: u32,
        keep_layer: Option<usize>,
    ) -> Result<Prediction, ClassifyError> {
        pollster::block_on(self.classify(rgba, width, height, keep_layer))
    }

    /// Native convenience: [`Classifier::classify_input`] run to completion.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn classify_input_blocking(
        &self,
        input: &[f32],
        keep_layer: Option<usize>,
    ) -> Result<Prediction, ClassifyError> {
        pollster::block_on(self.classify_input(input, keep_layer))
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
