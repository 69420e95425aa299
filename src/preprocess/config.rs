//! A checkpoint's preprocessing: what timm's `pretrained_cfg` (or
//! transformers' image processor) says about size, resize, crop and
//! normalisation, and vitrine's optional photo steps.

use serde::{Deserialize, Serialize};

use super::resample::Interpolation;

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
    /// An explicit resize before the centre crop to `input_size`
    /// (transformers' `size`); when given, `crop_pct` and `crop_mode` play no part.
    #[serde(default)]
    pub resize: Option<Resize>,
    /// How the centre crop's half-pixel offsets round.
    #[serde(default)]
    pub crop_rounding: CropRounding,
    /// What pixel values (0–255) are multiplied by before the mean is
    /// subtracted: 1/255 (timm's `ToTensor`, transformers' default
    /// `rescale_factor`), or 1 when `do_rescale` is off.
    #[serde(default = "one_255")]
    pub rescale: f32,
}

fn one_255() -> f32 {
    1.0 / 255.0
}

/// transformers' `size`: the image's size after resizing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// Exactly [height, width], the aspect ratio not kept.
    Exact([usize; 2]),
    /// The shorter side to this many pixels, the longer one in proportion
    /// (truncated, as transformers and torchvision do).
    ShortestEdge(usize),
}

/// Which way a centre crop's offset goes when the margin is odd.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CropRounding {
    /// torchvision's `CenterCrop` (timm): Python's `round`, half to even.
    #[default]
    HalfEven,
    /// transformers' `center_crop`: the margin halved and floored.
    Floor,
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
            resize: None,
            crop_rounding: CropRounding::HalfEven,
            rescale: one_255(),
        }
    }

    /// One line for the user.
    pub fn describe(&self) -> String {
        let [c, h, w] = self.input_size;
        let geometry = match self.resize {
            None => format!(
                "crop {} (crop_pct {})",
                format!("{:?}", self.crop_mode).to_lowercase(),
                self.crop_pct
            ),
            Some(Resize::Exact([rh, rw])) if [rh, rw] == [h, w] => format!("to {rh}×{rw}"),
            Some(Resize::Exact([rh, rw])) => format!("to {rh}×{rw}, centre crop"),
            Some(Resize::ShortestEdge(s)) => format!("shorter side to {s}, centre crop"),
        };
        let scale = if (self.rescale - one_255()).abs() < 1e-9 {
            String::new()
        } else {
            format!(", pixels times {}", self.rescale)
        };
        format!(
            "{c}×{h}×{w}, {:?} resize {geometry}{scale}, mean {:?}, std {:?}",
            self.interpolation, self.mean, self.std
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
        if !(self.rescale.is_finite() && self.rescale > 0.0) {
            return Err(format!(
                "the rescale factor {} is not positive",
                self.rescale
            ));
        }
        match self.resize {
            Some(Resize::Exact([rh, rw])) if rh == 0 || rw == 0 || rh.max(rw) > 1 << 16 => Err(
                format!("the resize to {rh}×{rw} is empty or over 65536 pixels a side"),
            ),
            Some(Resize::ShortestEdge(s)) if s == 0 || s > 1 << 16 => Err(format!(
                "the resize of the shorter side to {s} is empty or over 65536 pixels"
            )),
            _ => Ok(()),
        }
    }
}
