//! RGBA pixels (as a browser canvas or an image decoder gives them) → the
//! model's input, following the checkpoint's own preprocessing config.
//!
//! Mirrors timm's `transforms_imagenet_eval` (resize the shorter side to
//! size/crop_pct, centre crop, `ToTensor`, `Normalize`) and transformers'
//! `ViTImageProcessor` (resize to exactly height×width), which is the
//! `squash` crop mode with `crop_pct = 1`. The resize ([`resample`]) gives
//! what the `image` crate's filters give (widened when downscaling, as PIL's
//! are), computed only where the crop looks.
//!
//! - [`config`]: the preprocessing a checkpoint declares.
//! - `photo`: the optional steps that bring a product photo into a dataset's look.

use std::fmt;

pub mod config;
mod photo;
pub mod resample;

pub use config::{CropMode, CropRounding, PhotoAdapt, PreprocessConfig, Resize};
use photo::adapt;
pub use resample::Interpolation;

/// Largest image accepted, in pixels (the browser scales bigger ones down first).
pub const MAX_PIXELS: u64 = 64 * 1024 * 1024;

/// Why pixels could not be preprocessed.
#[derive(Debug, Clone, PartialEq)]
pub enum PreprocessError {
    /// Width or height is zero.
    Empty { width: u32, height: u32 },
    /// The buffer length is not width × height × 4.
    BadBuffer {
        width: u32,
        height: u32,
        expected: u64,
        found: u64,
    },
    /// More than [`MAX_PIXELS`].
    TooLarge { width: u32, height: u32 },
}

impl fmt::Display for PreprocessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty { width, height } => {
                write!(f, "the image is empty ({width}×{height} pixels)")
            }
            Self::BadBuffer {
                width,
                height,
                expected,
                found,
            } => write!(
                f,
                "an RGBA image of {width}×{height} pixels needs {expected} bytes, but {found} were given"
            ),
            Self::TooLarge { width, height } => write!(
                f,
                "the image is {width}×{height} pixels, more than the {} megapixels accepted; scale it down first",
                MAX_PIXELS / (1024 * 1024)
            ),
        }
    }
}

impl std::error::Error for PreprocessError {}

/// Where the resize and crop put things: the resized size and the crop's
/// top-left corner in resized pixels (negative when padding).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Plan {
    resized: [u32; 2], // [width, height]
    offset: [i64; 2],  // [left, top]
}

/// Python's `round` (half to even), which torchvision's `CenterCrop` uses.
fn round_half_even(x: f64) -> i64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        (r - x.signum()) as i64
    } else {
        r as i64
    }
}

fn crop_offset(size: u32, crop: usize, rounding: CropRounding) -> i64 {
    let (size, crop) = (size as i64, crop as i64);
    match rounding {
        // transformers: (size − crop) // 2, padding included (Python floors).
        CropRounding::Floor => (size - crop).div_euclid(2),
        // torchvision pads floor((crop − size) / 2) on the left and top.
        CropRounding::HalfEven if size < crop => -((crop - size) / 2),
        CropRounding::HalfEven => round_half_even((size - crop) as f64 / 2.0),
    }
}

/// The shorter side to `s`, the longer one truncated in proportion
/// (torchvision's `Resize(int)`, transformers' `shortest_edge`): [width, height].
fn shortest_edge(width: f64, height: f64, s: f64) -> [u32; 2] {
    if width <= height {
        [s as u32, ((s * height / width) as u32).max(1)]
    } else {
        [((s * width / height) as u32).max(1), s as u32]
    }
}

fn plan(width: u32, height: u32, cfg: &PreprocessConfig) -> Plan {
    let [_, th, tw] = cfg.input_size;
    // timm: scale_size = floor(size / crop_pct).
    let sh = (th as f64 / cfg.crop_pct).floor().max(1.0);
    let sw = (tw as f64 / cfg.crop_pct).floor().max(1.0);
    let (w, h) = (width as f64, height as f64);
    let resized = match (cfg.resize, cfg.crop_mode) {
        (Some(Resize::Exact([rh, rw])), _) => [rw as u32, rh as u32],
        (Some(Resize::ShortestEdge(s)), _) => shortest_edge(w, h, s as f64),
        (None, CropMode::Squash) => [sw as u32, sh as u32],
        (None, CropMode::Center) if sh == sw => shortest_edge(w, h, sw),
        (None, CropMode::Center | CropMode::Border) => {
            let ratio = if cfg.crop_mode == CropMode::Center {
                (sh / h).max(sw / w)
            } else {
                (sh / h).min(sw / w)
            };
            [
                (w * ratio).round().max(1.0) as u32,
                (h * ratio).round().max(1.0) as u32,
            ]
        }
    };
    Plan {
        resized,
        offset: [
            crop_offset(resized[0], tw, cfg.crop_rounding),
            crop_offset(resized[1], th, cfg.crop_rounding),
        ],
    }
}

/// The rectangle [x0, y0, x1, y1] of the original image that the model sees,
/// in original pixels (it may extend past the image where the crop pads).
pub fn view_box(width: u32, height: u32, cfg: &PreprocessConfig) -> [f64; 4] {
    let p = plan(width, height, cfg);
    let [_, th, tw] = cfg.input_size;
    let sx = p.resized[0] as f64 / width as f64;
    let sy = p.resized[1] as f64 / height as f64;
    let (l, t) = (p.offset[0] as f64, p.offset[1] as f64);
    [l / sx, t / sy, (l + tw as f64) / sx, (t + th as f64) / sy]
}

/// What preprocessing produced: the model's input and where it came from.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The normalised input, [C, H, W] row-major.
    pub input: Vec<f32>,
    /// The rectangle [x0, y0, x1, y1] of the original image that the input
    /// shows, in its pixels (after resize, crop and photo steps).
    pub view_box: [f64; 4],
}

/// RGBA bytes → the model's input and its view box, in one pass over the
/// image (the photo steps, when the config has them, run once).
pub fn prepare(
    rgba: &[u8],
    width: u32,
    height: u32,
    cfg: &PreprocessConfig,
) -> Result<Prepared, PreprocessError> {
    check_buffer(rgba, width, height)?;
    if cfg.photo.active() {
        let a = adapt(rgba, width, height, &cfg.photo);
        let input = resize_and_normalize(&a.rgba, a.side, a.side, cfg);
        let inner = view_box(a.side, a.side, cfg);
        let scale = (a.rect[2] - a.rect[0]) / a.side as f64;
        let view_box = [0, 1, 2, 3].map(|i| a.rect[i % 2] + inner[i] * scale);
        return Ok(Prepared { input, view_box });
    }
    Ok(Prepared {
        input: resize_and_normalize(rgba, width, height, cfg),
        view_box: view_box(width, height, cfg),
    })
}

fn check_buffer(rgba: &[u8], width: u32, height: u32) -> Result<(), PreprocessError> {
    if width == 0 || height == 0 {
        return Err(PreprocessError::Empty { width, height });
    }
    let pixels = width as u64 * height as u64;
    if rgba.len() as u64 != pixels * 4 {
        return Err(PreprocessError::BadBuffer {
            width,
            height,
            expected: pixels * 4,
            found: rgba.len() as u64,
        });
    }
    if pixels > MAX_PIXELS {
        return Err(PreprocessError::TooLarge { width, height });
    }
    Ok(())
}

/// RGBA bytes (row-major, `width × height × 4`) → normalised input, [C, H, W] row-major.
pub fn preprocess(
    rgba: &[u8],
    width: u32,
    height: u32,
    cfg: &PreprocessConfig,
) -> Result<Vec<f32>, PreprocessError> {
    prepare(rgba, width, height, cfg).map(|p| p.input)
}

/// Resize (with the config's interpolation), crop, scale and normalise
/// pixels already checked by [`check_buffer`]; the photo steps, if any, have
/// run.
fn resize_and_normalize(rgba: &[u8], width: u32, height: u32, cfg: &PreprocessConfig) -> Vec<f32> {
    let [c, th, tw] = cfg.input_size;
    let p = plan(width, height, cfg);
    let channel_values: Vec<u8> = if c == 1 {
        // PIL's convert("L"): ITU-R 601-2 luma in fixed point, before resizing as timm does.
        rgba.chunks_exact(4)
            .map(|px| {
                ((px[0] as u32 * 19595 + px[1] as u32 * 38470 + px[2] as u32 * 7471 + 0x8000) >> 16)
                    as u8
            })
            .collect()
    } else {
        // PIL's convert("RGB") drops alpha.
        rgba.chunks_exact(4)
            .flat_map(|px| [px[0], px[1], px[2]])
            .collect()
    };
    let [rw, rh] = p.resized;
    // Only the part of the resized image that the crop keeps: columns xs,
    // rows ys (the crop may also reach past it, where it pads).
    let span = |offset: i64, len: usize, size: u32| {
        offset.clamp(0, size as i64) as usize..(offset + len as i64).clamp(0, size as i64) as usize
    };
    let (xs, ys) = (span(p.offset[0], tw, rw), span(p.offset[1], th, rh));
    let resized: Vec<u8> = if (rw, rh) == (width, height) {
        // PIL returns a copy when the size does not change.
        ys.clone()
            .flat_map(|y| {
                let row = y * width as usize * c;
                channel_values[row + xs.start * c..row + xs.end * c]
                    .iter()
                    .copied()
            })
            .collect()
    } else {
        resample::resize_window(
            &channel_values,
            c,
            [width as usize, height as usize],
            [rw as usize, rh as usize],
            xs.clone(),
            ys.clone(),
            cfg.interpolation,
        )
    };
    let fill: Vec<u8> = match (cfg.resize, cfg.crop_mode) {
        (None, CropMode::Border) => cfg
            .mean
            .iter()
            .map(|m| (m * 255.0).round().clamp(0.0, 255.0) as u8)
            .collect(),
        _ => vec![0; c],
    };
    // 1/255 divides, as timm's ToTensor does (and transformers' float64
    // product rounds to the same float32); any other factor multiplies.
    let rescale = |v: u8| {
        if cfg.rescale == 1.0 / 255.0 {
            v as f32 / 255.0
        } else {
            (v as f64 * cfg.rescale as f64) as f32
        }
    };
    let mut out = vec![0.0f32; c * th * tw];
    for ch in 0..c {
        let (mean, std) = (cfg.mean[ch], cfg.std[ch]);
        for y in 0..th {
            let sy = y as i64 + p.offset[1];
            for x in 0..tw {
                let sx = x as i64 + p.offset[0];
                let inside = sx >= 0 && sy >= 0 && sx < rw as i64 && sy < rh as i64;
                let v = if inside {
                    let (wx, wy) = (sx as usize - xs.start, sy as usize - ys.start);
                    resized[(wy * xs.len() + wx) * c + ch]
                } else {
                    fill[ch]
                };
                out[(ch * th + y) * tw + x] = (rescale(v) - mean) / std;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(mode: CropMode, crop_pct: f64) -> PreprocessConfig {
        PreprocessConfig {
            crop_mode: mode,
            crop_pct,
            ..PreprocessConfig::timm_default(3, [224, 224])
        }
    }

    #[test]
    fn center_plan_matches_torchvision() {
        // 451×300 (chelsea): shorter side 300 → floor(224/0.9) = 248, longer int(248·451/300) = 372.
        let p = plan(451, 300, &cfg(CropMode::Center, 0.9));
        assert_eq!(p.resized, [372, 248]);
        assert_eq!(p.offset, [74, 12]);
        // Half-pixel offsets round to even, as Python's round does.
        assert_eq!(crop_offset(229, 224, CropRounding::HalfEven), 2);
        assert_eq!(crop_offset(231, 224, CropRounding::HalfEven), 4);
        // transformers floors: (231 − 224) // 2 = 3.
        assert_eq!(crop_offset(231, 224, CropRounding::Floor), 3);
        // Padding: torchvision puts the odd pixel after, transformers before.
        assert_eq!(crop_offset(221, 224, CropRounding::HalfEven), -1);
        assert_eq!(crop_offset(221, 224, CropRounding::Floor), -2);
        assert_eq!(round_half_even(-2.5), -2);
    }

    #[test]
    fn rejects_bad_buffers_with_the_numbers() {
        let c = cfg(CropMode::Center, 0.9);
        let e = preprocess(&[0; 10], 2, 2, &c).unwrap_err();
        assert_eq!(
            e.to_string(),
            "an RGBA image of 2×2 pixels needs 16 bytes, but 10 were given"
        );
        assert!(matches!(
            preprocess(&[], 0, 5, &c),
            Err(PreprocessError::Empty { .. })
        ));
    }

    #[test]
    fn one_pixel_image_fills_the_input() {
        let c = cfg(CropMode::Center, 1.0);
        let out = preprocess(&[255, 0, 0, 255], 1, 1, &c).unwrap();
        assert_eq!(out.len(), 3 * 224 * 224);
        assert_eq!(out[0], 1.0); // (1 - 0.5) / 0.5
        assert_eq!(out[224 * 224], -1.0);
    }

    #[test]
    fn border_mode_pads_with_the_mean() {
        let c = cfg(CropMode::Border, 1.0);
        // A wide white image: the top and bottom rows are padding, normalised to ~0.
        let out = preprocess(&vec![255; 200 * 100 * 4], 200, 100, &c).unwrap();
        assert!(out[0].abs() < 0.01);
        assert_eq!(out[112 * 224 + 112], 1.0);
        let b = view_box(200, 100, &c);
        assert!(
            (b[1] + 50.0).abs() < 1e-9 && (b[3] - 150.0).abs() < 1e-9,
            "{b:?}"
        );
    }

    /// Grayscale `side`×`side` input, nearest resize, no normalisation, both photo steps.
    fn photo_cfg(side: usize) -> PreprocessConfig {
        PreprocessConfig {
            input_size: [1, side, side],
            interpolation: Interpolation::Nearest,
            crop_pct: 1.0,
            crop_mode: CropMode::Center,
            mean: vec![0.0],
            std: vec![1.0],
            photo: PhotoAdapt {
                invert_light_background: true,
                fit_object: true,
            },
            ..PreprocessConfig::timm_default(1, [side, side])
        }
    }

    /// A dark 10×4 box on a white 40×20 photo becomes a light box on black,
    /// centred, filling the frame's width.
    #[test]
    fn photo_steps_invert_and_fit_the_object() {
        let (w, h) = (40u32, 20u32);
        let mut rgba = vec![255u8; (w * h * 4) as usize];
        for y in 4..8 {
            for x in 5..15 {
                rgba[((y * w + x) * 4) as usize..][..3].copy_from_slice(&[50, 50, 50]);
            }
        }
        let cfg = photo_cfg(10);
        let out = preprocess(&rgba, w, h, &cfg).unwrap();
        for y in 0..10 {
            for x in 0..10 {
                let expected = if (3..7).contains(&y) { 1.0 } else { 0.0 };
                assert!(
                    (out[y * 10 + x] - expected).abs() < 1e-6,
                    "({x}, {y}): {}",
                    out[y * 10 + x]
                );
            }
        }
        // The model sees the 10×10 square around the box: x 5..15, y 1..11.
        assert_eq!(
            prepare(&rgba, w, h, &cfg).unwrap().view_box,
            [5.0, 1.0, 15.0, 11.0]
        );
        // Without the steps the same image stays dark-on-light.
        let plain = PreprocessConfig {
            photo: PhotoAdapt::default(),
            ..cfg
        };
        let out = preprocess(&rgba, w, h, &plain).unwrap();
        assert!(out[0] > 0.99, "{}", out[0]);
    }

    /// A transparent background counts as white, so it is inverted to black.
    #[test]
    fn transparent_background_is_background() {
        let mut rgba = vec![0u8; 8 * 8 * 4]; // fully transparent black
        for i in [27, 28, 35, 36] {
            rgba[i * 4..][..4].copy_from_slice(&[0, 0, 0, 255]); // an opaque black 2×2 centre
        }
        let cfg = photo_cfg(4);
        let out = preprocess(&rgba, 8, 8, &cfg).unwrap();
        assert!(out.iter().all(|&v| (v - 1.0).abs() < 1e-6), "{out:?}");
    }
}
