//! The CPU kernels under the model's matrix products, GELU and softmax.
//!
//! Hand-written because they measure faster than Burn's generic CPU
//! operations on these shapes (docs/performance.md): explicit AVX-512 / AVX2
//! and wasm SIMD paths. On a GPU device each function hands the work to
//! Burn's own operation.

#[cfg(feature = "cpu")]
mod attention;
#[cfg(feature = "cpu")]
mod backward;
#[cfg(feature = "cpu")]
pub mod encoder;
#[cfg(feature = "cpu")]
pub mod host;
pub mod kernels;
pub(crate) mod lanes;
pub mod matmul;

pub use kernels::{gelu, gelu_slope, kernel_path, softmax_last};
pub use matmul::{linear, matmul};
