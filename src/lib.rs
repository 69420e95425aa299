//! vitrine: a Vision Transformer (Dosovitskiy et al., "An Image is Worth
//! 16x16 Words") in Burn, with attention maps, that runs natively and in the
//! browser on WebGPU. docs/architecture.md draws the parts and who uses whom.
//!
//! - [`model`]: the paper's outline — patch embedding, class token, position
//!   embedding, pre-norm blocks whose attention returns its weights, head —
//!   in Burn's operations.
//! - [`ops`]: the CPU kernels: matrix products, GELU, softmax, the fused encoder.
//! - [`checkpoint`]: timm and transformers files → model, in stages (file
//!   format, budget, the family's converter, config, checks), typed errors.
//! - `decode` (native): image files → upright RGBA pixels.
//! - [`preprocess`]: RGBA pixels → input tensor, per the checkpoint's config.
//! - [`exec`]: what runs a model, chosen once at load: the fused CPU
//!   kernels of [`ops`], or Burn's operations.
//! - [`engine`]: a loaded model that classifies and reads back small results.
//! - [`explain`]: attention maps: class-token rows, rollout, distances, pictures.
//! - [`walkthrough`]: the forward pass step by step, for the teaching view.
//! - [`figures`]: the papers' figures: position similarity, the patch
//!   embedding's principal components, token norms, the registers' share
//!   of attention.
//! - [`backend`]: the one place that picks a device.
//! - `web` (wasm): the browser's handle; `train` (native, feature `train`):
//!   the default model's data, training and evaluation.

pub mod backend;
pub mod checkpoint;
#[cfg(not(target_arch = "wasm32"))]
pub mod decode;
pub mod engine;
pub mod exec;
pub mod explain;
pub mod figures;
pub mod model;
pub mod ops;
pub mod preprocess;
#[cfg(all(feature = "train", not(target_arch = "wasm32")))]
pub mod train;
pub mod walkthrough;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use checkpoint::{
    Checkpoint, CheckpointError, F16Matrices, HfFamily, Layout, LoadOptions, MemoryLimits,
};
pub use engine::{Classifier, ClassifyError, Prediction, Relevance, Timings, Viewer};
pub use model::{Pool, VisionTransformer, VitConfig};
pub use preprocess::PreprocessConfig;
