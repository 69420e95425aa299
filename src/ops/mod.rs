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
#[cfg(feature = "cpu")]
pub mod keep;
pub mod kernels;
pub(crate) mod lanes;
pub mod matmul;
#[cfg(feature = "cpu")]
mod norm;
#[cfg(all(feature = "cpu", target_arch = "x86_64"))]
pub mod packed;

/// rayon's names for the CPU kernels' parallel loops, run one after
/// another: the page's WebAssembly has one thread.
#[cfg(target_arch = "wasm32")]
pub(crate) mod serial {
    pub trait Chunks<T> {
        fn par_chunks(&self, size: usize) -> std::slice::Chunks<'_, T>;
        fn par_chunks_mut(&mut self, size: usize) -> std::slice::ChunksMut<'_, T>;
        fn par_iter(&self) -> std::slice::Iter<'_, T>;
    }
    impl<T> Chunks<T> for [T] {
        fn par_chunks(&self, size: usize) -> std::slice::Chunks<'_, T> {
            self.chunks(size)
        }
        fn par_chunks_mut(&mut self, size: usize) -> std::slice::ChunksMut<'_, T> {
            self.chunks_mut(size)
        }
        fn par_iter(&self) -> std::slice::Iter<'_, T> {
            self.iter()
        }
    }
    pub trait IntoParIter: IntoIterator + Sized {
        fn into_par_iter(self) -> Self::IntoIter {
            self.into_iter()
        }
    }
    impl<T> IntoParIter for Vec<T> {}
    pub fn current_num_threads() -> usize {
        1
    }
}

pub use kernels::{gelu, gelu_slope, kernel_path, softmax_last};
pub use matmul::{linear, matmul};

/// Called with each block's index and attention weights [B, heads, T, T];
/// `Send`, as the fused encoder calls it from one of rayon's threads.
pub type LookAttention<'a> = &'a mut (dyn FnMut(usize, &burn::tensor::Tensor<4>) + Send);
