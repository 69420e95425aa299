//! A map drawn over the image: min-max normalised, upsampled smoothly
//! between patch centres, blended in a colour map (the CLI's overlay PNG).

use image::{Rgb, RgbImage, RgbaImage};

use super::colormap::colour;

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

/// Blends `map` (a [rows, cols] grid, any scale) in `colormap` over the part of
/// `image` given by `view` ([x0, y0, x1, y1] in image pixels, what the model
/// saw), smoothly upsampled; `alpha` is the map's opacity. The result is the
/// viewed region at the image's resolution.
pub fn overlay(
    image: &RgbaImage,
    map: &[f32],
    grid: [usize; 2],
    view: [f64; 4],
    alpha: f32,
    colormap: &str,
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
        let color = colour(t, colormap);
        Rgb([0, 1, 2]
            .map(|c| (base[c] as f32 * (1.0 - alpha) + color[c] as f32 * alpha).round() as u8))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::viridis;

    #[test]
    fn overlay_puts_the_hot_patch_where_it_belongs() {
        let image = RgbaImage::from_pixel(40, 20, image::Rgba([0, 0, 0, 255]));
        // Grid 1×2: right patch hot.
        let out = overlay(
            &image,
            &[0.0, 1.0],
            [1, 2],
            [0.0, 0.0, 40.0, 20.0],
            1.0,
            "viridis",
        );
        assert_eq!(out.dimensions(), (40, 20));
        assert_eq!(out.get_pixel(39, 10).0, viridis(1.0));
        assert_eq!(out.get_pixel(0, 10).0, viridis(0.0));
    }
}
