//! vitrine: a Vision Transformer (Dosovitskiy et al., "An Image is Worth
//! 16x16 Words") in Burn, with attention maps, that runs natively and in the
//! browser on WebGPU. docs/architecture.md draws the parts and who uses whom.
//!
//! - [`model`]: the paper's outline — patch embedding, class token, position
//!   embedding, pre-norm blocks whose attention returns its weights, head —
//!   on the CPU kernels of [`ops`].
//! - [`checkpoint`]: timm and transformers safetensors → model, typed errors;
//!   [`safetensors`] is the file format itself, and [`pytorch`] reads what
//!   `torch.save` writes without running its pickle.
//! - `decode` (native): image files → upright RGBA pixels.
//! - [`preprocess`]: RGBA pixels → input tensor, per the checkpoint's config.
//! - [`engine`]: a loaded model that classifies and reads back small results.
//! - [`explain`]: attention maps: class-token rows, rollout, distances, pictures.
//! - [`walkthrough`]: the forward pass step by step, for the teaching view.
//! - [`backend`]: the one place that picks a device.
//! - `web` (wasm): the browser's handle; `train` (native, feature `train`):
//!   the default model's data, training and evaluation.

pub mod backend;
pub mod checkpoint;
#[cfg(not(target_arch = "wasm32"))]
pub mod decode;
pub mod engine;
pub mod explain;
pub mod model;
pub mod ops;
pub mod preprocess;
pub mod pytorch;
pub mod safetensors;
#[cfg(all(feature = "train", not(target_arch = "wasm32")))]
pub mod train;
pub mod walkthrough;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use checkpoint::{Checkpoint, CheckpointError, F16Matrices, HfFamily, Layout, MemoryLimits};
pub use engine::{Classifier, ClassifyError, Prediction, Relevance, Timings, Viewer};
pub use model::{Pool, VisionTransformer, VitConfig};
pub use preprocess::PreprocessConfig;
