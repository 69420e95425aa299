//! RGBA pixels (as a browser canvas or an image decoder gives them) → the
//! model's input, following the checkpoint's own preprocessing config.
//!
//! Mirrors timm's `transforms_imagenet_eval` (resize the shorter side to
//! size/crop_pct, centre crop, `ToTensor`, `Normalize`) and transformers'
//! `ViTImageProcessor` (resize to exactly height×width), which is the
//! `squash` crop mode with `crop_pct = 1`. Resampling uses the `image` crate,
//! whose filters widen when downscaling, as PIL's do.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::resample;
pub use crate::resample::Interpolation;

/// Largest image accepted, in pixels (the browser scales bigger ones down first).
pub const MAX_PIXELS: u64 = 64 * 1024 * 1024;

/// How the image is brought to the input size (timm's `crop_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CropMode {
    /// Keep the aspect ratio, scale the shorter side to size/crop_pct, crop the centre.
    Center,
    /// Scale each side to size/crop_pct independently, crop the centre.
    Squash,
    /// Scale the longer side to size/crop_pct, pad to a square with the mean colour.
    Border,
}

impl CropMode {
    /// Parses timm's names.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "center" => Some(Self::Center),
            "squash" => Some(Self::Squash),
            "border" => Some(Self::Border),
            _ => None,
        }
    }
}

/// A checkpoint's preprocessing (timm's `pretrained_cfg` fields).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreprocessConfig {
    /// [channels, height, width] of the model input; 1 channel means grayscale.
    pub input_size: [usize; 3],
    pub interpolation: Interpolation,
    /// Fraction of the resized image kept by the crop (timm: 0.875–1.0).
    pub crop_pct: f64,
    pub crop_mode: CropMode,
    /// Per-channel mean subtracted after scaling to [0, 1].
    pub mean: Vec<f32>,
    /// Per-channel standard deviation divided by.
    pub std: Vec<f32>,
    /// Steps that bring an ordinary photo into the training data's look
    /// (vitrine's extension; `vitrine_preprocess` in config.json).
    #[serde(default)]
    pub photo: PhotoAdapt,
}

/// Bringing a photo into a dataset's domain before the usual resize.
///
/// Fashion-MNIST items are light objects on black that fill the frame; a
/// product photo is usually a dark object on a light background with room
/// around it. Each step is declared by the model's config, none is implied.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhotoAdapt {
    /// When the image's border is light, invert it, so the background
    /// becomes dark; then stretch the levels so the background is black and
    /// the brightest pixel white.
    pub invert_light_background: bool,
    /// Crop to the object (the pixels that stand out from the border) and
    /// pad that box to a square, so the object fills the frame.
    pub fit_object: bool,
}

impl PhotoAdapt {
    /// Whether any step is on.
    pub fn active(&self) -> bool {
        self.invert_light_background || self.fit_object
    }
}

impl PreprocessConfig {
    /// timm's ViT defaults, used when a checkpoint has no config.
    pub fn timm_default(channels: usize, img_size: [usize; 2]) -> Self {
        Self {
            input_size: [channels, img_size[0], img_size[1]],
            interpolation: Interpolation::Bicubic,
            crop_pct: 0.9,
            crop_mode: CropMode::Center,
            mean: vec![0.5; channels],
            std: vec![0.5; channels],
            photo: PhotoAdapt::default(),
        }
    }

    /// One line for the user.
    pub fn describe(&self) -> String {
        let [c, h, w] = self.input_size;
        format!(
            "{c}×{h}×{w}, {:?} resize, crop {} (crop_pct {}), mean {:?}, std {:?}",
            self.interpolation,
            format!("{:?}", self.crop_mode).to_lowercase(),
            self.crop_pct,
            self.mean,
            self.std
        )
        .replace("Bicubic", "bicubic")
        .replace("Bilinear", "bilinear")
        .replace("Nearest", "nearest")
        .replace("Lanczos", "lanczos")
            + match (self.photo.invert_light_background, self.photo.fit_object) {
                (true, true) => ", light backgrounds inverted, object fitted to the frame",
                (true, false) => ", light backgrounds inverted",
                (false, true) => ", object fitted to the frame",
                (false, false) => "",
            }
    }

    /// Checks the fields against each other.
    pub fn validate(&self) -> Result<(), String> {
        let [c, h, w] = self.input_size;
        if c != 1 && c != 3 {
            return Err(format!(
                "{c} input channels; only 1 (grayscale) or 3 (RGB) are supported"
            ));
        }
        if h == 0 || w == 0 {
            return Err(format!("input size {h}×{w} is empty"));
        }
        if self.mean.len() != c || self.std.len() != c {
            return Err(format!(
                "mean has {} and std {} values, but there are {c} channels",
                self.mean.len(),
                self.std.len()
            ));
        }
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0))
            || self.mean.iter().any(|m| !m.is_finite())
        {
            return Err(format!(
                "std must be positive and mean finite, found mean {:?} std {:?}",
                self.mean, self.std
            ));
        }
        if !(self.crop_pct.is_finite() && self.crop_pct > 0.05 && self.crop_pct <= 4.0) {
            return Err(format!("crop_pct {} is outside (0.05, 4]", self.crop_pct));
        }
        Ok(())
    }
}

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

fn crop_offset(size: u32, crop: usize) -> i64 {
    let (size, crop) = (size as i64, crop as i64);
    if size >= crop {
        round_half_even((size - crop) as f64 / 2.0)
    } else {
        -((crop - size) / 2)
    }
}

fn plan(width: u32, height: u32, cfg: &PreprocessConfig) -> Plan {
    let [_, th, tw] = cfg.input_size;
    // timm: scale_size = floor(size / crop_pct).
    let sh = (th as f64 / cfg.crop_pct).floor().max(1.0);
    let sw = (tw as f64 / cfg.crop_pct).floor().max(1.0);
    let (w, h) = (width as f64, height as f64);
    let resized = match cfg.crop_mode {
        CropMode::Squash => [sw as u32, sh as u32],
        CropMode::Center if sh == sw => {
            // torchvision Resize(int): shorter side to size, longer side truncated.
            if w <= h {
                [sw as u32, (sw * h / w) as u32]
            } else {
                [(sh * w / h) as u32, sh as u32]
            }
        }
        CropMode::Center | CropMode::Border => {
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
        offset: [crop_offset(resized[0], tw), crop_offset(resized[1], th)],
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

/// A photo after [`PhotoAdapt`]: gray RGBA pixels of a square, and where
/// that square lies in the original image ([x0, y0, x1, y1], original pixels).
struct Adapted {
    rgba: Vec<u8>,
    side: u32,
    rect: [f64; 4],
}

/// A pixel differs from the background when it is this much brighter (of 255)
/// after the levels are stretched.
const OBJECT_THRESHOLD: u8 = 40;

/// Applies the photo steps: composite over white, gray, invert a light
/// background, stretch levels, crop to the object, pad to a square.
fn adapt(rgba: &[u8], width: u32, height: u32, steps: &PhotoAdapt) -> Adapted {
    let (w, h) = (width as usize, height as usize);
    // Transparent pixels are background: composite over white, then PIL's luma.
    let mut gray: Vec<u8> = rgba
        .chunks_exact(4)
        .map(|px| {
            let a = px[3] as u32;
            let over = |c: u8| (c as u32 * a + 255 * (255 - a) + 127) / 255;
            ((over(px[0]) * 19595 + over(px[1]) * 38470 + over(px[2]) * 7471 + 0x8000) >> 16) as u8
        })
        .collect();
    // The background level: the median of the outermost ring of pixels.
    let border_level = |g: &[u8]| -> u8 {
        let mut ring: Vec<u8> = (0..w)
            .flat_map(|x| [g[x], g[(h - 1) * w + x]])
            .chain((0..h).flat_map(|y| [g[y * w], g[y * w + w - 1]]))
            .collect();
        let mid = ring.len() / 2;
        *ring.select_nth_unstable(mid).1
    };
    if steps.invert_light_background {
        if border_level(&gray) > 127 {
            gray.iter_mut().for_each(|v| *v = 255 - *v);
        }
        // Levels: the background to black, the brightest pixel to white.
        let bg = border_level(&gray) as u32;
        let top = gray.iter().copied().max().unwrap_or(255) as u32;
        if top > bg {
            gray.iter_mut().for_each(|v| {
                *v = ((*v as u32).saturating_sub(bg) * 255 / (top - bg)) as u8;
            });
        }
    }
    let (mut x0, mut y0, mut x1, mut y1) = (0, 0, w, h);
    if steps.fit_object {
        let bg = border_level(&gray);
        let (mut bx0, mut by0, mut bx1, mut by1) = (w, h, 0, 0);
        for y in 0..h {
            for x in 0..w {
                if gray[y * w + x].abs_diff(bg) >= OBJECT_THRESHOLD {
                    bx0 = bx0.min(x);
                    by0 = by0.min(y);
                    bx1 = bx1.max(x + 1);
                    by1 = by1.max(y + 1);
                }
            }
        }
        if bx1 > bx0 && by1 > by0 {
            (x0, y0, x1, y1) = (bx0, by0, bx1, by1);
        }
    }
    // Pad the box to a square around its centre, with the background level.
    let fill = if steps.fit_object || steps.invert_light_background {
        border_level(&gray)
    } else {
        0
    };
    let (bw, bh) = (x1 - x0, y1 - y0);
    let side = bw.max(bh);
    let (left, top) = (
        x0 as i64 - ((side - bw) / 2) as i64,
        y0 as i64 - ((side - bh) / 2) as i64,
    );
    let mut out = vec![255u8; side * side * 4];
    for (y, row) in out.chunks_exact_mut(side * 4).enumerate() {
        for (x, px) in row.chunks_exact_mut(4).enumerate() {
            let (sx, sy) = (left + x as i64, top + y as i64);
            let inside_box = sx >= x0 as i64 && sy >= y0 as i64 && sx < x1 as i64 && sy < y1 as i64;
            let v = if inside_box {
                gray[sy as usize * w + sx as usize]
            } else {
                fill
            };
            // Written one by one: a four-byte copy_from_slice is a memcpy
            // call per pixel in the size-optimised browser build.
            px[0] = v;
            px[1] = v;
            px[2] = v;
        }
    }
    Adapted {
        rgba: out,
        side: side as u32,
        rect: [
            left as f64,
            top as f64,
            (left + side as i64) as f64,
            (top + side as i64) as f64,
        ],
    }
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
    let fill: Vec<u8> = match cfg.crop_mode {
        CropMode::Border => cfg
            .mean
            .iter()
            .map(|m| (m * 255.0).round().clamp(0.0, 255.0) as u8)
            .collect(),
        _ => vec![0; c],
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
                out[(ch * th + y) * tw + x] = (v as f32 / 255.0 - mean) / std;
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
        assert_eq!(crop_offset(229, 224), 2);
        assert_eq!(crop_offset(231, 224), 4);
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
