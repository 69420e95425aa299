//! The browser boundary, and the only file that speaks wasm-bindgen: one
//! handle holding a model on a device; checkpoint bytes and RGBA pixels go in,
//! class scores and attention maps (small typed arrays) come out. Bad input
//! is rejected here with a message that says what was wrong.

use burn::module::Module;
use burn::tensor::Device;
use js_sys::Float32Array;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::checkpoint::{F16Matrices, LoadOptions, LoadStage, MemoryLimits};
use crate::engine::{Classifier, Viewer};
use crate::walkthrough::Focus;

mod figures;

/// The most weight bytes loaded into wasm memory (4 GB at most, which also
/// holds the checkpoint file and the activations): 2 GB, a ViT-Large and a
/// half in f32, a ViT-Huge with its matrices kept in f16.
const WASM_WEIGHT_BUDGET: u64 = 2 << 30;

/// wasm32's whole memory, and what a relevance pass leaves to everything
/// else in it (the page's images, a classification's activations).
const WASM_MEMORY: u64 = 4 << 30;
const WASM_HEADROOM: u64 = 512 << 20;

/// The WebGPU device, created once per page (worker) and reused by every model.
#[cfg(feature = "webgpu")]
static WEBGPU: std::sync::Mutex<Option<Device>> = std::sync::Mutex::new(None);

#[cfg(feature = "webgpu")]
async fn webgpu_device() -> Result<Device, JsError> {
    if let Some(d) = WEBGPU.lock().expect("not poisoned").clone() {
        return Ok(d);
    }
    let device = Device::wgpu_options()
        .init_async()
        .await
        .map_err(|e| JsError::new(&format!("WebGPU could not be initialised: {e}")))?;
    *WEBGPU.lock().expect("not poisoned") = Some(device.clone());
    Ok(device)
}

/// A result as the plain JavaScript object www/vitrine.d.ts declares: each
/// crosses the boundary as one of the typed structs below, serialised by
/// serde (maps as objects, `None` as null, typed arrays as they are).
fn to_js(value: &impl Serialize) -> JsValue {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .expect("a result of plain fields and typed arrays serialises")
}

/// Values that cross as a `Float32Array` (copied out of wasm memory once).
#[derive(Serialize)]
#[serde(transparent)]
struct F32s(#[serde(with = "serde_wasm_bindgen::preserve")] Float32Array);

impl From<&[f32]> for F32s {
    fn from(values: &[f32]) -> Self {
        Self(Float32Array::from(values))
    }
}

fn js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

// The generated declaration (pkg/vitrine.d.ts) names its results by the
// types of the site's own declaration, www/vitrine.d.ts, which the worker
// is checked against.
#[wasm_bindgen(typescript_custom_section)]
const RESULT_TYPES: &str = r#"import type { DevicePools, Figures, LayerAttention, ModelInfo, Prediction, RelevanceMaps, Walkthrough } from '../vitrine';"#;

/// A weights file's bytes, gathered in WebAssembly memory chunk by chunk
/// as they are read or downloaded (opaque to JavaScript), so that no
/// script holds the whole file: [`Vitrine::load`] takes them.
#[wasm_bindgen]
pub struct FileBytes(Vec<u8>);

#[wasm_bindgen]
impl FileBytes {
    /// Room for `size` bytes (0 when the size is not known: the room grows
    /// as chunks come), or an error when WebAssembly memory cannot hold it.
    #[wasm_bindgen(constructor)]
    pub fn new(size: f64) -> Result<FileBytes, JsError> {
        let mut bytes = Vec::new();
        let room = usize::try_from(size as u64).unwrap_or(usize::MAX);
        bytes
            .try_reserve_exact(room)
            .map_err(|_| does_not_fit(size))?;
        Ok(Self(bytes))
    }

    /// Appends a chunk.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), JsError> {
        self.0
            .try_reserve(chunk.len())
            .map_err(|_| does_not_fit((self.0.len() + chunk.len()) as f64))?;
        self.0.extend_from_slice(chunk);
        Ok(())
    }

    /// The bytes gathered so far.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> f64 {
        self.0.len() as f64
    }
}

fn does_not_fit(bytes: f64) -> JsError {
    JsError::new(&format!(
        "the weights file ({:.0} MB) does not fit in the browser's WebAssembly memory (4 GB, shared with the weights themselves)",
        bytes / 1e6
    ))
}

/// A loaded model and the last image it classified (opaque to JavaScript).
#[wasm_bindgen]
pub struct Vitrine {
    viewer: Viewer,
    backend: String,
    /// The checkpoint's own input size [height, width].
    native_size: [usize; 2],
    /// The model's name as its config gives it (architecture or repo).
    name: Option<String>,
    /// A PyTorch training checkpoint's key the weights came from, and all
    /// its keys that hold weights.
    weights_key: Option<String>,
    weights_keys: Vec<String>,
    /// The ImageNet set whose names the page is to fetch, where the
    /// labels are placeholders for them.
    labels_file: Option<&'static str>,
}

#[wasm_bindgen]
impl Vitrine {
    /// Loads a checkpoint: the weights file's bytes ([`FileBytes`]: safetensors, or what
    /// `torch.save` writes; `name` is the file's, for messages, and `key`
    /// picks a training checkpoint's state dict, e.g. DINO's `student`), and
    /// optionally the bytes of `config.json` and `preprocessor_config.json`, onto `backend`
    /// (`"webgpu"` or `"cpu"`). `max_buffer_bytes` is the WebGPU adapter's
    /// largest storage buffer; a model with a bigger tensor is refused.
    /// `image_size` runs the model at that square input size instead of its
    /// own, its position embeddings interpolated. `progress(stage, done,
    /// total)` hears how far the load has come: `"converting"` (the file's
    /// tensor bytes read and checked), then `"building"` (weights laid out
    /// and put on the device: uploaded, on WebGPU). On the CPU backend the
    /// weight matrices a file stores in f16 stay in f16 when their f32
    /// copy would not fit in wasm memory (half the memory, the same
    /// results: the matrix kernel widens them exactly as it reads them, at
    /// some cost in time); `keep_f16` `true` or `false` keeps or widens
    /// them whatever the size. On WebGPU every weight is f32.
    #[allow(clippy::too_many_arguments)]
    pub async fn load(
        backend: String,
        weights: FileBytes,
        config: Option<Vec<u8>>,
        preprocessor: Option<Vec<u8>>,
        max_buffer_bytes: Option<f64>,
        image_size: Option<u32>,
        name: Option<String>,
        key: Option<String>,
        #[wasm_bindgen(
            unchecked_param_type = "(stage: string, done: number, total: number) => void"
        )]
        progress: Option<js_sys::Function>,
        keep_f16: Option<bool>,
    ) -> Result<Vitrine, JsError> {
        let report = |stage: LoadStage, done: u64, total: u64| {
            if let Some(f) = &progress {
                // A throwing callback must not stop the load: its error is dropped.
                let _ = f.call3(
                    &JsValue::NULL,
                    &JsValue::from_str(stage.name()),
                    &JsValue::from_f64(done as f64),
                    &JsValue::from_f64(total as f64),
                );
            }
        };
        let f16_matrices = match (backend.as_str(), keep_f16) {
            ("cpu", None) => F16Matrices::KeepIfNeeded,
            ("cpu", Some(true)) => F16Matrices::Keep,
            _ => F16Matrices::Widen,
        };
        // Weights pass through wasm memory (at most 4 GB, shared with the
        // file's own bytes) before they reach any device.
        let limits = MemoryLimits {
            max_tensor_bytes: max_buffer_bytes.map_or(u64::MAX, |b| b as u64),
            max_total_bytes: WASM_WEIGHT_BUDGET,
            device: match (backend.as_str(), max_buffer_bytes) {
                ("webgpu", Some(_)) => "this GPU".into(),
                _ => "the browser's WebAssembly memory".into(),
            },
        };
        let mut options = LoadOptions::new()
            .file_name(name.as_deref().unwrap_or("the weights file"))
            .checkpoint_key(key.as_deref())
            .f16_matrices(f16_matrices)
            .limits(limits)
            .progress(&report);
        if let Some(s) = image_size {
            options = options.image_size([s as usize; 2]);
        }
        let checkpoint = options
            .load(&weights.0, config.as_deref(), preprocessor.as_deref())
            .map_err(js_error)?;
        drop(weights);
        let native_size = checkpoint.native_size;
        let model_name = checkpoint.name.clone();
        let device = match backend.as_str() {
            #[cfg(feature = "webgpu")]
            "webgpu" => webgpu_device().await?,
            // The CPU-only module (build.sh): the page fetches the WebGPU one to use WebGPU.
            #[cfg(not(feature = "webgpu"))]
            "webgpu" => {
                return Err(JsError::new(
                    "this module has no WebGPU backend (the page loads the WebGPU module for that)",
                ));
            }
            "cpu" => Device::flex(),
            other => {
                return Err(JsError::new(&format!(
                    "unknown backend `{other}` (webgpu or cpu)"
                )));
            }
        };
        let (weights_key, weights_keys, labels_file) = (
            checkpoint.weights_key.clone(),
            checkpoint.weights_keys.clone(),
            checkpoint.labels_file,
        );
        let classifier = Classifier::new_reporting(checkpoint, device, &report);
        // A relevance pass keeps every layer's attention: it may use what
        // the weights leave of wasm memory (read-backs land there too).
        let weights = classifier.model().weight_bytes();
        let classifier =
            classifier.with_relevance_budget(WASM_MEMORY.saturating_sub(weights + WASM_HEADROOM));
        Ok(Vitrine {
            viewer: Viewer::new(classifier),
            backend,
            native_size,
            name: model_name,
            weights_key,
            weights_keys,
            labels_file,
        })
    }

    /// The backend this model runs on.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// What the device's memory pools hold, as `{bytesInUse, bytesReserved}`
    /// (the GPU side of the bench page's memory check); `null` on backends
    /// without pools.
    #[wasm_bindgen(unchecked_return_type = "DevicePools | null")]
    pub fn memory(&self) -> JsValue {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Pools {
            bytes_in_use: f64,
            bytes_reserved: f64,
        }
        match self.viewer.classifier.device().memory_pool_usage() {
            None => JsValue::NULL,
            Some(u) => to_js(&Pools {
                bytes_in_use: u.bytes_in_use as f64,
                bytes_reserved: u.bytes_reserved as f64,
            }),
        }
    }

    /// The model's description (`ModelInfo` in www/vitrine.d.ts): config,
    /// preprocessing, labels, loader notes, its `name` as its config gives
    /// it (or null), patch grid, parameter count, what runs it
    /// (`executor`), the checkpoint's own input size, the names of the
    /// tokens before the patches, what the maps show, and a training
    /// checkpoint's `weightsKey` among its `weightsKeys`, and the file of
    /// class names the page fetches where `labels` are placeholders
    /// (`labelsFile`).
    #[wasm_bindgen(unchecked_return_type = "ModelInfo")]
    pub fn info(&self) -> JsValue {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct ModelInfo<'a> {
            config: &'a crate::model::VitConfig,
            preprocess: &'a crate::preprocess::PreprocessConfig,
            labels: &'a [String],
            notes: &'a [String],
            name: &'a Option<String>,
            grid: [usize; 2],
            pooled_width: usize,
            parameters: usize,
            weight_bytes: u64,
            executor: &'static str,
            native_size: [usize; 2],
            prefix_tokens: Vec<String>,
            map_note: String,
            weights_key: &'a Option<String>,
            weights_keys: &'a [String],
            labels_file: Option<String>,
        }
        let c = &self.viewer.classifier;
        to_js(&ModelInfo {
            config: &c.config,
            preprocess: &c.preprocess,
            labels: &c.labels,
            notes: &c.notes,
            name: &self.name,
            grid: c.config.grid(),
            pooled_width: c.config.pooled_dim(),
            parameters: c.model().num_params(),
            weight_bytes: c.model().weight_bytes(),
            executor: c.executor().name(),
            native_size: self.native_size,
            prefix_tokens: crate::explain::prefix_token_names(&c.config),
            map_note: crate::explain::map_note(&c.config),
            weights_key: &self.weights_key,
            weights_keys: &self.weights_keys,
            labels_file: self.labels_file.map(|set| format!("labels/{set}.txt")),
        })
    }

    /// One classification of a blank image, kept nowhere: the GPU's
    /// shaders compile now, while the page still shows loading progress,
    /// not on the user's first image.
    #[wasm_bindgen(js_name = warmUp)]
    pub async fn warm_up(&self) -> Result<(), JsError> {
        self.viewer
            .classifier
            .classify(&[0; 4 * 8 * 8], 8, 8, None)
            .await
            .map(drop)
            .map_err(js_error)
    }

    /// Classifies `width × height` RGBA pixels and keeps the prepared image
    /// for [`Vitrine::attention`] and [`Vitrine::walkthrough`]. Returns
    /// `{logits, hasHead, probabilities, cls, clsMean, rollout, layers, heads, grid,
    /// layerAttention?, layerMean?, viewBox, input, timings}` where `cls` is
    /// the [L, H, N] CLS attention, `clsMean` its mean over heads [L, N],
    /// `layerAttention` the [H, N+1, N+1] attention of `keep_layer` when
    /// given and `layerMean` its mean over heads, `hasHead` false for a
    /// backbone (then `logits` are the class token's features and
    /// `probabilities` empty), `viewBox` the rectangle
    /// [x0, y0, x1, y1] of the image the model saw (after its resize, crop
    /// and photo steps), in image pixels, and `input` the normalised
    /// [C, H, W] tensor the model received. With `for_relevance` the
    /// forward pass is kept, where memory allows, so that
    /// [`Vitrine::relevance`] of this image runs only its backward pass.
    #[wasm_bindgen(unchecked_return_type = "Prediction")]
    pub async fn classify(
        &self,
        rgba: Vec<u8>,
        width: u32,
        height: u32,
        keep_layer: Option<u32>,
        for_relevance: Option<bool>,
    ) -> Result<JsValue, JsError> {
        let layer = keep_layer.map(|l| l as usize);
        let keep = for_relevance.unwrap_or(false);
        let p = self
            .viewer
            .classify(&rgba, width, height, layer, keep)
            .await
            .map_err(js_error)?;
        Ok(to_js(&Prediction::of(&p)))
    }

    /// The full attention of `layer` for the kept image:
    /// `{layerAttention, layerMean}` ([H, N+1, N+1] and [N+1, N+1]). Takes
    /// no pixels and repeats no preprocessing.
    #[wasm_bindgen(unchecked_return_type = "LayerAttention")]
    pub async fn attention(&self, layer: u32) -> Result<JsValue, JsError> {
        let (all, mean) = self
            .viewer
            .layer_attention(layer as usize)
            .await
            .map_err(js_error)?;
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct LayerAttention {
            layer_attention: F32s,
            layer_mean: F32s,
        }
        Ok(to_js(&LayerAttention {
            layer_attention: all.as_slice().into(),
            layer_mean: mean.as_slice().into(),
        }))
    }

    /// Why the model chose `class` (the top class when absent) for the kept
    /// image: `{class, gradRollout, chefer, heads, layers, timings}`, the
    /// gradient-weighted rollout and Chefer et al.'s relevance over the
    /// patches [N], and each head's gradient-weighted attention [L, H, N]
    /// (see `explain::relevance`). `discardRatio` is grad-rollout's share
    /// of each layer dropped (vit-explain's 0.9 when absent).
    #[wasm_bindgen(unchecked_return_type = "RelevanceMaps")]
    pub async fn relevance(
        &self,
        class: Option<u32>,
        discard_ratio: Option<f64>,
    ) -> Result<JsValue, JsError> {
        let r = self
            .viewer
            .relevance(
                class.map(|k| k as usize),
                discard_ratio.unwrap_or(crate::explain::DISCARD_RATIO),
            )
            .await
            .map_err(js_error)?;
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct RelevanceMaps {
            class: usize,
            layers: usize,
            grad_rollout: F32s,
            chefer: F32s,
            heads: F32s,
            timings: Passes,
        }
        Ok(to_js(&RelevanceMaps {
            class: r.maps.class,
            layers: r.maps.layers,
            grad_rollout: r.maps.grad_rollout.as_slice().into(),
            chefer: r.maps.chefer.as_slice().into(),
            heads: r.maps.heads_map.as_slice().into(),
            timings: Passes {
                forward: r.timings.forward,
                readback: r.timings.readback,
            },
        }))
    }

    /// The kept image's forward pass step by step, for the teaching view:
    /// `{input, patchVectors, patchEmbeddings, prefixTokens, positionSimilarity,
    /// queries, keys, values, attention, normed, normed2, mlpOut, tokenNorms,
    /// meanDistance, pooled, logits, probabilities}` as Float32Arrays (see
    /// `walkthrough::Walkthrough`), for the focus `patches`, `layer` and `head`.
    #[wasm_bindgen(unchecked_return_type = "Walkthrough")]
    pub async fn walkthrough(
        &self,
        patches: Vec<u32>,
        layer: u32,
        head: u32,
    ) -> Result<JsValue, JsError> {
        let focus = Focus {
            patches: patches.iter().map(|&p| p as usize).collect(),
            layer: layer as usize,
            head: head as usize,
        };
        let (w, image) = self.viewer.walkthrough(&focus).await.map_err(js_error)?;
        let probabilities = if self.viewer.classifier.config.has_head() {
            crate::engine::softmax(&w.logits)
        } else {
            Vec::new()
        };
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Steps {
            input: F32s,
            patch_vectors: F32s,
            patch_embeddings: F32s,
            prefix_tokens: F32s,
            position_similarity: F32s,
            queries: F32s,
            keys: F32s,
            values: F32s,
            attention: F32s,
            normed: F32s,
            normed2: F32s,
            mlp_out: F32s,
            token_norms: F32s,
            mean_distance: F32s,
            pooled: F32s,
            logits: F32s,
            probabilities: F32s,
        }
        Ok(to_js(&Steps {
            input: image.input.as_slice().into(),
            patch_vectors: w.patch_vectors.as_slice().into(),
            patch_embeddings: w.patch_embeddings.as_slice().into(),
            prefix_tokens: w.prefix_tokens.as_slice().into(),
            position_similarity: w.position_similarity.as_slice().into(),
            queries: w.queries.as_slice().into(),
            keys: w.keys.as_slice().into(),
            values: w.values.as_slice().into(),
            attention: w.attention.as_slice().into(),
            normed: w.normed.as_slice().into(),
            normed2: w.normed2.as_slice().into(),
            mlp_out: w.mlp_out.as_slice().into(),
            token_norms: w.token_norms.as_slice().into(),
            mean_distance: w.mean_distance.as_slice().into(),
            pooled: w.pooled.as_slice().into(),
            logits: w.logits.as_slice().into(),
            probabilities: probabilities.as_slice().into(),
        }))
    }
}

/// Milliseconds a request spent computing and reading back.
#[derive(Serialize)]
struct Passes {
    forward: f64,
    readback: f64,
}

/// A classification as [`Vitrine::classify`] describes it (`Prediction`
/// in www/vitrine.d.ts).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Prediction {
    logits: F32s,
    /// A backbone has no classifier: its output is the class token's features.
    has_head: bool,
    probabilities: F32s,
    cls: F32s,
    cls_mean: F32s,
    rollout: F32s,
    layers: usize,
    heads: usize,
    grid: [usize; 2],
    #[serde(skip_serializing_if = "Option::is_none")]
    layer_attention: Option<F32s>,
    #[serde(skip_serializing_if = "Option::is_none")]
    layer_mean: Option<F32s>,
    #[serde(with = "serde_wasm_bindgen::preserve")]
    view_box: js_sys::Float64Array,
    input: F32s,
    timings: crate::engine::Timings,
}

impl Prediction {
    fn of(p: &crate::engine::Prediction) -> Self {
        Self {
            logits: p.logits.as_slice().into(),
            has_head: !p.probabilities.is_empty(),
            probabilities: p.probabilities.as_slice().into(),
            cls: p.attention.cls.as_slice().into(),
            cls_mean: p.attention.means().as_slice().into(),
            rollout: p.rollout.as_slice().into(),
            layers: p.attention.layers,
            heads: p.attention.heads,
            grid: p.attention.grid,
            layer_attention: p.layer_attention.as_deref().map(F32s::from),
            layer_mean: p.layer_mean.as_deref().map(F32s::from),
            view_box: js_sys::Float64Array::from(p.view_box.as_slice()),
            input: p.input.as_slice().into(),
            timings: p.timings,
        }
    }
}

unsafe extern "C" {
    /// The module's static constructors (the `inventory` registrations of
    /// Burn's GPU compiler, about 4,900 of them), made by the linker.
    fn __wasm_call_ctors();
}

/// Runs once when the module is instantiated: the static constructors, and
/// better panic messages in the browser console.
#[wasm_bindgen(start)]
pub fn start() {
    // Calling the constructors here also tells wasm-ld that the module runs
    // them itself: left unreferenced, it wraps every export (every call from
    // JavaScript, down to each allocation) in another run of all of them,
    // which cost about 5% of a CPU classification.
    // SAFETY: runs once, first (wasm-bindgen calls the start function on
    // instantiation, before any other export).
    unsafe { __wasm_call_ctors() };
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&JsValue::from_str(&format!("vitrine panicked: {info}")));
    }));
}
