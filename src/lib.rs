//! vitrine: a Vision Transformer (Dosovitskiy et al., "An Image is Worth
//! 16x16 Words") in Burn, with attention maps, that runs natively and in the
//! browser on WebGPU.
//!
//! - [`model`]: the paper's outline — patch embedding, class token, position
//!   embedding, pre-norm blocks whose attention returns its weights, head.
//! - [`checkpoint`]: timm and transformers safetensors → model, typed errors.
//! - `decode` (native): image files → upright RGBA pixels.
//! - [`preprocess`]: RGBA pixels → input tensor, per the checkpoint's config.
//! - [`engine`]: a loaded model that classifies and reads back small results.
//! - [`explain`]: attention maps as pictures.
//! - [`backend`]: the one place that picks a device.
//! - `fashion_mnist` and `train` (native): the data and training of the default model.

pub mod backend;
pub mod checkpoint;
#[cfg(not(target_arch = "wasm32"))]
pub mod decode;
#[cfg(all(feature = "train", not(target_arch = "wasm32")))]
pub mod distill;
pub mod engine;
pub mod explain;
#[cfg(not(target_arch = "wasm32"))]
pub mod fashion_mnist;
pub mod model;
#[cfg(all(feature = "train", not(target_arch = "wasm32")))]
pub mod parallel;
pub mod preprocess;
pub mod resample;
pub mod safetensors;
#[cfg(all(feature = "train", not(target_arch = "wasm32")))]
pub mod train;
pub mod walkthrough;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use checkpoint::{Checkpoint, CheckpointError, Layout, MemoryLimits};
pub use engine::{Classifier, ClassifyError, Prediction, Timings};
pub use model::{VisionTransformer, VitConfig};
pub use preprocess::PreprocessConfig;
