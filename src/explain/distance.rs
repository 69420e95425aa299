//! Mean attention distance (the paper's Figure 7, right): how far, in
//! pixels, each head looks on average, on the device.

use burn::tensor::{Device, Tensor, TensorData};

/// Distances in pixels between the centres of patches i and j, [N, N].
pub fn patch_distances(grid: [usize; 2], patch_size: usize) -> Vec<f32> {
    let [rows, cols] = grid;
    let n = rows * cols;
    let p = patch_size as f32;
    let mut d = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            let dy = (i / cols) as f32 - (j / cols) as f32;
            let dx = (i % cols) as f32 - (j % cols) as f32;
            d[i * n + j] = (dx * dx + dy * dy).sqrt() * p;
        }
    }
    d
}

/// [`patch_distances`] as a tensor on `device`, [N, N].
pub fn distance_matrix(grid: [usize; 2], patch_size: usize, device: &Device) -> Tensor<2> {
    let n = grid[0] * grid[1];
    Tensor::from_data(
        TensorData::new(patch_distances(grid, patch_size), [n, n]),
        device,
    )
}

/// Each head's mean attention distance of one image's layer: the
/// patch-to-patch attention renormalised over the patches, times the
/// distance, summed per query and averaged over queries. Weights [1, heads,
/// T, T] (the patches last, after the prefix tokens) and distances [N, N]
/// → [heads].
pub fn mean_distance(weights: &Tensor<4>, distances: &Tensor<2>) -> Tensor<1> {
    let [_, heads, t, _] = weights.dims();
    let n = distances.dims()[0];
    let p = t - n;
    let a = weights
        .clone()
        .slice([0..1, 0..heads, p..t, p..t])
        .reshape([heads, n, n]);
    let a = a.clone() / a.sum_dim(2).clamp_min(1e-12);
    (a * distances.clone().reshape([1, n, n]))
        .sum_dim(2)
        .mean_dim(1)
        .reshape([heads])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_are_euclidean_in_pixels() {
        let d = patch_distances([2, 3], 16);
        assert_eq!(d[0], 0.0);
        assert_eq!(d[1], 16.0); // (0,0) → (0,1)
        assert!((d[5] - (16.0f32 * 16.0 * 5.0).sqrt()).abs() < 1e-4); // (0,0) → (1,2)
    }
}
