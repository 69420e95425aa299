//! Why a checkpoint could not be loaded, in words that name the tensor or
//! field at fault, and how much a device may hold.

use std::fmt;

use crate::checkpoint::pytorch::TorchError;
use crate::checkpoint::safetensors::SafetensorsError;

/// Why a checkpoint could not be loaded. Every variant names what was wrong.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckpointError {
    /// A file could not be read.
    Io { path: String, message: String },
    /// The weights file is damaged or not a safetensors file.
    File(SafetensorsError),
    /// A PyTorch file (`.pth`, `.pt`, `pytorch_model.bin`) is damaged,
    /// hostile or holds no state dict.
    Torch(TorchError),
    /// The tensor names are neither timm's nor transformers' ViT names.
    UnknownLayout { sample: Vec<String> },
    /// A tensor the model needs is absent.
    MissingKey { key: String },
    /// A tensor the model has no place for.
    UnexpectedKey { key: String },
    /// A tensor's shape disagrees with the config or with the other tensors.
    WrongShape {
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
        implied_by: String,
    },
    /// A config file is malformed, unsupported, or contradicts itself.
    BadConfig { file: String, reason: String },
    /// A weight is NaN or infinite (or an f64 beyond float32's range).
    NotFinite {
        tensor: String,
        /// How many of its values are not finite, and the first one's index.
        count: usize,
        first: usize,
        value: f32,
    },
    /// The model is larger than the device (or the browser) can hold.
    TooLarge {
        /// The tensor over the per-buffer limit, or `None` for the whole model.
        tensor: Option<String>,
        bytes: u64,
        limit: u64,
        device: String,
        /// In what precision `bytes` counts the weights ("as f32").
        held_as: &'static str,
        /// How the model would fit, when keeping its matrices in f16 would do it.
        advice: Option<String>,
    },
}

/// 150 KB, 3.5 MB, 1000 MB, 2.35 GB: sizes as people read them.
pub(crate) fn human_bytes(b: u64) -> String {
    let mb = b as f64 / (1024.0 * 1024.0);
    match mb {
        m if m < 1.0 => format!("{:.0} KB", b as f64 / 1024.0),
        m if m < 10.0 => format!("{m:.1} MB"),
        m if m < 1024.0 => format!("{m:.0} MB"),
        m => format!("{:.2} GB", m / 1024.0),
    }
}

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use CheckpointError::*;
        match self {
            Io { path, message } => write!(f, "cannot read {path}: {message}"),
            TooLarge {
                tensor,
                bytes,
                limit,
                device,
                held_as,
                advice,
            } => {
                let (bytes, limit) = (human_bytes(*bytes), human_bytes(*limit));
                match tensor {
                    Some(t) => write!(
                        f,
                        "the model is too large for {device}: tensor `{t}` needs {bytes} {held_as}, \
                         more than the {limit} one buffer may hold"
                    )?,
                    None => write!(
                        f,
                        "the model is too large for {device}: its weights need {bytes} {held_as}, \
                         more than the {limit} available"
                    )?,
                }
                match advice {
                    Some(a) => write!(f, "; {a}"),
                    None => Ok(()),
                }
            }
            File(e) => e.fmt(f),
            Torch(e) => e.fmt(f),
            UnknownLayout { sample } => write!(
                f,
                "the tensor names are not a timm or transformers ViT (first names: {})",
                sample.join(", ")
            ),
            MissingKey { key } => write!(f, "missing tensor `{key}`"),
            UnexpectedKey { key } => write!(
                f,
                "unexpected tensor `{key}` (this ViT has no place for it)"
            ),
            WrongShape {
                tensor,
                expected,
                found,
                implied_by,
            } => write!(
                f,
                "tensor `{tensor}` has shape {found:?}, but {implied_by} implies {expected:?}"
            ),
            BadConfig { file, reason } => write!(f, "{file}: {reason}"),
            NotFinite {
                tensor,
                count,
                first,
                value,
            } => write!(
                f,
                "tensor `{tensor}` holds {count} values that are not finite numbers (the first, at \
                 index {first}, is {value}): the checkpoint is damaged"
            ),
        }
    }
}

impl std::error::Error for CheckpointError {}

impl From<TorchError> for CheckpointError {
    fn from(e: TorchError) -> Self {
        CheckpointError::Torch(e)
    }
}

impl From<SafetensorsError> for CheckpointError {
    fn from(e: SafetensorsError) -> Self {
        CheckpointError::File(e)
    }
}
