//! Attention maps as pictures: per-head CLS→patch grids, their mean over
//! heads, and overlays of a map on the image with a perceptually uniform
//! colormap (viridis, as matplotlib defines it).

use image::{Rgb, RgbImage, RgbaImage};

/// The CLS-row attention of every head of every layer, read back from the device.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionMaps {
    pub layers: usize,
    pub heads: usize,
    /// Patch grid [rows, cols]; rows·cols = N.
    pub grid: [usize; 2],
    /// [L, H, N] row-major.
    pub cls: Vec<f32>,
}

/// Which map of a layer to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadChoice {
    /// One head.
    Head(usize),
    /// The mean over the layer's heads.
    Mean,
    /// Attention rollout over all layers (the layer is ignored).
    Rollout,
}

impl AttentionMaps {
    /// Number of patches N.
    pub fn patches(&self) -> usize {
        self.grid[0] * self.grid[1]
    }

    /// The map of one head, length N.
    pub fn head(&self, layer: usize, head: usize) -> &[f32] {
        let n = self.patches();
        let start = (layer * self.heads + head) * n;
        &self.cls[start..start + n]
    }

    /// The map chosen by `choice` for `layer`, length N; `rollout` is the
    /// prediction's attention rollout.
    pub fn map(&self, layer: usize, choice: HeadChoice, rollout: &[f32]) -> Vec<f32> {
        match choice {
            HeadChoice::Rollout => rollout.to_vec(),
            HeadChoice::Head(h) => self.head(layer, h).to_vec(),
            HeadChoice::Mean => {
                let mut mean = vec![0.0; self.patches()];
                for h in 0..self.heads {
                    for (m, v) in mean.iter_mut().zip(self.head(layer, h)) {
                        *m += v / self.heads as f32;
                    }
                }
                mean
            }
        }
    }

    /// As nested vectors [L][H][N], for JSON.
    pub fn nested(&self) -> Vec<Vec<Vec<f32>>> {
        (0..self.layers)
            .map(|l| (0..self.heads).map(|h| self.head(l, h).to_vec()).collect())
            .collect()
    }
}

/// matplotlib's viridis sampled at 17 evenly spaced points.
const VIRIDIS: [[u8; 3]; 17] = [
    [68, 1, 84],
    [72, 24, 106],
    [71, 45, 123],
    [66, 64, 134],
    [59, 82, 139],
    [51, 99, 141],
    [44, 114, 142],
    [38, 130, 142],
    [33, 145, 140],
    [31, 160, 136],
    [40, 174, 128],
    [63, 188, 115],
    [94, 201, 98],
    [132, 212, 75],
    [173, 220, 48],
    [216, 226, 25],
    [253, 231, 37],
];

/// Viridis colour of `t` in [0, 1] (clamped), linearly interpolated between samples.
pub fn viridis(t: f32) -> [u8; 3] {
    let x = t.clamp(0.0, 1.0) * (VIRIDIS.len() - 1) as f32;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f32;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    [0, 1, 2].map(|c| (a[c] as f32 + (b[c] as f32 - a[c] as f32) * f).round() as u8)
}

/// Rescales a map to [0, 1] by its own minimum and maximum (a flat map becomes 0).
pub fn normalize(map: &[f32]) -> Vec<f32> {
    let (lo, hi) = map
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let span = hi - lo;
    map.iter()
        .map(|v| if span > 0.0 { (v - lo) / span } else { 0.0 })
        .collect()
}

/// Samples a [rows, cols] grid at (x, y) in [0, 1]², bilinearly between patch centres.
fn sample(map: &[f32], grid: [usize; 2], x: f64, y: f64) -> f32 {
    let [rows, cols] = grid;
    let gx = (x * cols as f64 - 0.5).clamp(0.0, (cols - 1) as f64);
    let gy = (y * rows as f64 - 0.5).clamp(0.0, (rows - 1) as f64);
    let (x0, y0) = (gx.floor() as usize, gy.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(cols - 1), (y0 + 1).min(rows - 1));
    let (fx, fy) = ((gx - x0 as f64) as f32, (gy - y0 as f64) as f32);
    let at = |r: usize, c: usize| map[r * cols + c];
    let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
    let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
    top * (1.0 - fy) + bottom * fy
}

/// Blends `map` (a [rows, cols] grid, any scale) in viridis over the part of
/// `image` given by `view` ([x0, y0, x1, y1] in image pixels, what the model
/// saw), smoothly upsampled; `alpha` is the map's opacity. The result is the
/// viewed region at the image's resolution.
pub fn overlay(
    image: &RgbaImage,
    map: &[f32],
    grid: [usize; 2],
    view: [f64; 4],
    alpha: f32,
) -> RgbImage {
    let norm = normalize(map);
    let [x0, y0, x1, y1] = view;
    let out_w = (x1 - x0).round().max(1.0) as u32;
    let out_h = (y1 - y0).round().max(1.0) as u32;
    RgbImage::from_fn(out_w, out_h, |ox, oy| {
        let (ix, iy) = (
            (x0 + ox as f64 + 0.5).floor(),
            (y0 + oy as f64 + 0.5).floor(),
        );
        let inside =
            ix >= 0.0 && iy >= 0.0 && ix < image.width() as f64 && iy < image.height() as f64;
        let base = if inside {
            image.get_pixel(ix as u32, iy as u32).0
        } else {
            [0, 0, 0, 255]
        };
        let t = sample(
            &norm,
            grid,
            (ox as f64 + 0.5) / out_w as f64,
            (oy as f64 + 0.5) / out_h as f64,
        );
        let color = viridis(t);
        Rgb([0, 1, 2]
            .map(|c| (base[c] as f32 * (1.0 - alpha) + color[c] as f32 * alpha).round() as u8))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_ends_and_middle() {
        assert_eq!(viridis(0.0), [68, 1, 84]);
        assert_eq!(viridis(1.0), [253, 231, 37]);
        assert_eq!(viridis(0.5), [33, 145, 140]);
        assert_eq!(viridis(7.0), viridis(1.0));
    }

    #[test]
    fn head_mean_averages_heads() {
        let maps = AttentionMaps {
            layers: 1,
            heads: 2,
            grid: [1, 2],
            cls: vec![0.2, 0.8, 0.6, 0.4],
        };
        assert_eq!(maps.head(0, 1), &[0.6, 0.4]);
        let mean = maps.map(0, HeadChoice::Mean, &[]);
        assert_eq!(maps.map(0, HeadChoice::Rollout, &[0.5, 0.25]), [0.5, 0.25]);
        assert!((mean[0] - 0.4).abs() < 1e-6 && (mean[1] - 0.6).abs() < 1e-6);
    }

    #[test]
    fn overlay_puts_the_hot_patch_where_it_belongs() {
        let image = RgbaImage::from_pixel(40, 20, image::Rgba([0, 0, 0, 255]));
        // Grid 1×2: right patch hot.
        let out = overlay(&image, &[0.0, 1.0], [1, 2], [0.0, 0.0, 40.0, 20.0], 1.0);
        assert_eq!(out.dimensions(), (40, 20));
        assert_eq!(out.get_pixel(39, 10).0, viridis(1.0));
        assert_eq!(out.get_pixel(0, 10).0, viridis(0.0));
    }
}
