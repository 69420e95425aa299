//! Patch embedding (paper §3.1, eq. 1): cut the image into N = HW/P² patches,
//! flatten each to P·P·C values, and project linearly to D.
//!
//! timm and HF do this with a stride-P convolution; the same kernel
//! [D, C, P, P] is exactly the linear weight used here once reordered to
//! [P·P·C, D], which [`crate::checkpoint`] does at load time. Keeping the
//! reshape explicit lets the patches themselves be shown.

use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

/// The learned projection of flattened patches.
#[derive(Module, Debug)]
pub struct PatchEmbed {
    /// Linear map P·P·C → D (timm: `patch_embed.proj`, a conv there).
    pub proj: Linear,
    /// Patch side P.
    pub patch_size: usize,
}

impl PatchEmbed {
    /// A randomly initialised embedding for `patch_len` = P·P·C inputs.
    /// Random initialisation; `bias`: whether the projection has one (timm
    /// leaves it out when a norm follows the embedding, `pre_norm`).
    pub fn init(
        patch_size: usize,
        patch_len: usize,
        embed_dim: usize,
        bias: bool,
        device: &Device,
    ) -> Self {
        let proj = LinearConfig::new(patch_len, embed_dim)
            .with_bias(bias)
            .with_initializer(Initializer::XavierUniform { gain: 1.0 })
            .init(device);
        Self { proj, patch_size }
    }

    /// [B, N, P·P·C] → [B, N, D].
    pub fn forward(&self, patches: Tensor<3>) -> Tensor<3> {
        crate::ops::linear(&self.proj, patches)
    }
}

/// Splits images into flattened patches, row-major over the patch grid, each
/// patch flattened in (row, column, channel) order as in the paper.
///
/// [B, C, H, W] → [B, N, P·P·C] with N = (H/P)·(W/P).
pub fn patchify(images: Tensor<4>, patch_size: usize) -> Tensor<3> {
    let [b, c, h, w] = images.dims();
    let p = patch_size;
    let (gh, gw) = (h / p, w / p);
    images
        .reshape([b, c, gh, p, gw, p]) // [B, C, gh, P, gw, P]
        .permute([0, 2, 4, 3, 5, 1]) // [B, gh, gw, P, P, C]
        .reshape([b, gh * gw, p * p * c]) // [B, N, P·P·C]
}

/// Inverse of [`patchify`]: [B, N, P·P·C] → [B, C, H, W] for a `grid` of [rows, cols].
pub fn unpatchify(patches: Tensor<3>, patch_size: usize, grid: [usize; 2]) -> Tensor<4> {
    let [b, _, len] = patches.dims();
    let p = patch_size;
    let c = len / (p * p);
    let [gh, gw] = grid;
    patches
        .reshape([b, gh, gw, p, p, c]) // [B, gh, gw, P, P, C]
        .permute([0, 5, 1, 3, 2, 4]) // [B, C, gh, P, gw, P]
        .reshape([b, c, gh * p, gw * p]) // [B, C, H, W]
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn patchify_orders_rows_columns_channels_and_round_trips() {
        let device = Device::flex();
        // 1 image, 2 channels, 4×4 pixels, value = c*100 + y*10 + x.
        let vals: Vec<f32> = (0..2)
            .flat_map(|c| {
                (0..4).flat_map(move |y| (0..4).map(move |x| (c * 100 + y * 10 + x) as f32))
            })
            .collect();
        let img = Tensor::<4>::from_data(TensorData::new(vals.clone(), [1, 2, 4, 4]), &device);
        let patches = patchify(img, 2);
        assert_eq!(patches.dims(), [1, 4, 8]);
        let p: Vec<f32> = patches.clone().into_data().try_to_vec().unwrap();
        // Patch 1 is grid row 0, column 1: pixels (y 0..2, x 2..4), channels innermost.
        assert_eq!(&p[8..16], &[2., 102., 3., 103., 12., 112., 13., 113.]);
        let back: Vec<f32> = unpatchify(patches, 2, [2, 2])
            .into_data()
            .try_to_vec()
            .unwrap();
        assert_eq!(back, vals);
    }
}
