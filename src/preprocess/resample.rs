//! The preprocessing's resize, computed only where the crop looks.
//!
//! It gives exactly what `image::imageops::resize` gives (its filters, its
//! arithmetic in its order: a vertical pass into f32, then a horizontal pass
//! clamped and rounded to u8; checked value for value in the tests), but
//! only for a window of the output (the part the crop keeps), with each
//! output row's and column's weights computed once and the interleaved
//! channels read straight from the buffer. image's generic per-pixel loops
//! resized the whole image, and in the browser's size-optimised build they
//! took longer than the model's patch embedding.

use std::ops::Range;

use serde::{Deserialize, Serialize};

/// Resampling filter, named as timm names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    Nearest,
    Bilinear,
    Bicubic,
    Lanczos,
}

impl Interpolation {
    /// Parses timm's names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "nearest" => Some(Self::Nearest),
            "bilinear" => Some(Self::Bilinear),
            "bicubic" => Some(Self::Bicubic),
            "lanczos" => Some(Self::Lanczos),
            _ => None,
        }
    }
}

/// Cubic of Mitchell & Netravali (1988) with parameters b, c; (0, 0.5) is
/// Catmull-Rom, image's "CatmullRom" and PIL's bicubic.
fn cubic(x: f32, b: f32, c: f32) -> f32 {
    let a = x.abs();
    let k = if a < 1.0 {
        (12.0 - 9.0 * b - 6.0 * c) * a.powi(3)
            + (-18.0 + 12.0 * b + 6.0 * c) * a.powi(2)
            + (6.0 - 2.0 * b)
    } else if a < 2.0 {
        (-b - 6.0 * c) * a.powi(3)
            + (6.0 * b + 30.0 * c) * a.powi(2)
            + (-12.0 * b - 48.0 * c) * a
            + (8.0 * b + 24.0 * c)
    } else {
        0.0
    };
    k / 6.0
}

fn sinc(t: f32) -> f32 {
    let a = t * std::f32::consts::PI;
    if t == 0.0 { 1.0 } else { a.sin() / a }
}

/// The filter's support (in input pixels, before widening for a
/// downscale) and its kernel.
fn filter(interp: Interpolation) -> (f32, fn(f32) -> f32) {
    match interp {
        Interpolation::Nearest => (0.0, |_| 1.0),
        Interpolation::Bilinear => (1.0, |x| if x.abs() < 1.0 { 1.0 - x.abs() } else { 0.0 }),
        // Catmull-Rom is the cubic with a = -0.5, PIL's bicubic.
        Interpolation::Bicubic => (2.0, |x| cubic(x, 0.0, 0.5)),
        Interpolation::Lanczos => (3.0, |x| {
            if x.abs() < 3.0 {
                sinc(x) * sinc(x / 3.0)
            } else {
                0.0
            }
        }),
    }
}

/// One pass's taps: output `window.start + o` reads inputs `first[o]..`,
/// one for each of its weights.
struct Taps {
    first: Vec<usize>,
    /// `weights[bounds[o]..bounds[o + 1]]` are output o's.
    bounds: Vec<usize>,
    weights: Vec<f32>,
}

impl Taps {
    fn new(input: usize, output: usize, window: Range<usize>, interp: Interpolation) -> Self {
        let (support, kernel) = filter(interp);
        let ratio = input as f32 / output as f32;
        let widen = if ratio < 1.0 { 1.0 } else { ratio };
        let reach = support * widen;
        let mut taps = Taps {
            first: Vec::with_capacity(window.len()),
            bounds: vec![0],
            weights: Vec::new(),
        };
        for o in window {
            let centre = (o as f32 + 0.5) * ratio;
            let left = ((centre - reach).floor() as i64).clamp(0, input as i64 - 1);
            let right = ((centre + reach).ceil() as i64).clamp(left + 1, input as i64);
            // The kernel puts a pixel's centre at 0.
            let centre = centre - 0.5;
            let start = taps.weights.len();
            let mut sum = 0.0;
            for i in left..right {
                let w = kernel((i as f32 - centre) / widen);
                taps.weights.push(w);
                sum += w;
            }
            for w in &mut taps.weights[start..] {
                *w /= sum;
            }
            taps.first.push(left as usize);
            taps.bounds.push(taps.weights.len());
        }
        taps
    }

    fn of(&self, o: usize) -> (usize, &[f32]) {
        (
            self.first[o],
            &self.weights[self.bounds[o]..self.bounds[o + 1]],
        )
    }

    /// The inputs any output reads.
    fn span(&self) -> Range<usize> {
        let last = self.first.len() - 1;
        self.first[0]..self.first[last] + (self.bounds[last + 1] - self.bounds[last])
    }
}

/// Rows `ys` and columns `xs` of `src` ([height, width, channels] u8,
/// interleaved) resized to `size` ([width, height]) with `interp`:
/// [ys.len(), xs.len(), channels].
pub fn resize_window(
    src: &[u8],
    channels: usize,
    [width, height]: [usize; 2],
    [new_width, new_height]: [usize; 2],
    xs: Range<usize>,
    ys: Range<usize>,
    interp: Interpolation,
) -> Vec<u8> {
    assert_eq!(
        src.len(),
        width * height * channels,
        "resize_window: buffer size"
    );
    assert!(
        xs.end <= new_width && ys.end <= new_height,
        "resize_window: window outside the output"
    );
    if xs.is_empty() || ys.is_empty() {
        return Vec::new();
    }
    let (across, down) = (
        Taps::new(width, new_width, xs.clone(), interp),
        Taps::new(height, new_height, ys.clone(), interp),
    );
    // Vertical pass, into f32: the window's rows, over the columns the
    // horizontal pass reads. Taps outermost: each value still sums its
    // terms in image's order.
    let cols = across.span();
    let row_len = cols.len() * channels;
    let mut tmp = vec![0.0f32; ys.len() * row_len];
    for (r, out) in tmp.chunks_exact_mut(row_len).enumerate() {
        let (first, weights) = down.of(r);
        for (i, &w) in weights.iter().enumerate() {
            let start = ((first + i) * width + cols.start) * channels;
            for (t, &v) in out.iter_mut().zip(&src[start..start + row_len]) {
                *t += v as f32 * w;
            }
        }
    }
    // Horizontal pass, rounded half away from zero to u8.
    let mut out = Vec::with_capacity(ys.len() * xs.len() * channels);
    for row in tmp.chunks_exact(row_len) {
        for o in 0..xs.len() {
            let (first, weights) = across.of(o);
            let base = (first - cols.start) * channels;
            for k in 0..channels {
                let mut t = 0.0f32;
                for (i, &w) in weights.iter().enumerate() {
                    t += row[base + i * channels + k] * w;
                }
                // Rounded, then `as` saturates to 0..=255: the same as
                // image's clamp to [0, 255] before rounding.
                out.push(t.round() as u8);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::imageops::{self, FilterType};
    use image::{GrayImage, RgbImage};

    fn pixels(seed: u64, len: usize) -> Vec<u8> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                // Smooth areas and sharp edges both.
                if (i / 97) % 3 == 0 {
                    (i % 256) as u8
                } else {
                    (s >> 56) as u8
                }
            })
            .collect()
    }

    fn image_resize(
        src: &[u8],
        channels: usize,
        size: [usize; 2],
        new: [usize; 2],
        f: FilterType,
    ) -> Vec<u8> {
        let (w, h, nw, nh) = (size[0] as u32, size[1] as u32, new[0] as u32, new[1] as u32);
        if channels == 1 {
            imageops::resize(&GrayImage::from_raw(w, h, src.to_vec()).unwrap(), nw, nh, f)
                .into_raw()
        } else {
            imageops::resize(&RgbImage::from_raw(w, h, src.to_vec()).unwrap(), nw, nh, f).into_raw()
        }
    }

    #[test]
    fn equals_image_resize_value_for_value() {
        let filters = [
            (Interpolation::Nearest, FilterType::Nearest),
            (Interpolation::Bilinear, FilterType::Triangle),
            (Interpolation::Bicubic, FilterType::CatmullRom),
            (Interpolation::Lanczos, FilterType::Lanczos3),
        ];
        // Down and up, by round and odd factors, and chelsea's 451×300 → 372×248.
        let sizes = [
            ([451, 300], [372, 248]),
            ([97, 61], [28, 28]),
            ([13, 7], [40, 29]),
            ([28, 28], [224, 224]),
            ([300, 200], [150, 100]),
            ([1, 1], [3, 2]),
            ([5, 1], [2, 1]),
        ];
        for (interp, f) in filters {
            for (size, new) in sizes {
                for channels in [1, 3] {
                    let src = pixels((size[0] * 31 + new[1]) as u64, size[0] * size[1] * channels);
                    let want = image_resize(&src, channels, size, new, f);
                    let got =
                        resize_window(&src, channels, size, new, 0..new[0], 0..new[1], interp);
                    assert!(
                        got == want,
                        "{interp:?} {size:?} → {new:?}, {channels} channels"
                    );
                }
            }
        }
    }

    #[test]
    fn a_window_is_that_part_of_the_whole() {
        let (size, new, channels) = ([451, 300], [372, 248], 3);
        let src = pixels(7, size[0] * size[1] * channels);
        let whole = resize_window(
            &src,
            channels,
            size,
            new,
            0..new[0],
            0..new[1],
            Interpolation::Bicubic,
        );
        let (xs, ys) = (74..298, 12..236);
        let part = resize_window(
            &src,
            channels,
            size,
            new,
            xs.clone(),
            ys.clone(),
            Interpolation::Bicubic,
        );
        assert_eq!(part.len(), xs.len() * ys.len() * channels);
        for (r, y) in ys.clone().enumerate() {
            let want = &whole[(y * new[0] + xs.start) * channels..(y * new[0] + xs.end) * channels];
            assert_eq!(
                &part[r * xs.len() * channels..(r + 1) * xs.len() * channels],
                want,
                "row {y}"
            );
        }
        assert!(
            resize_window(&src, channels, size, new, 5..5, ys, Interpolation::Bicubic).is_empty()
        );
    }
}
