//! A tensor's values as the loader holds them, and the first stage's end:
//! a file's named tensor views read into values, each checked finite.

use std::collections::BTreeMap;

use super::safetensors::{Dtype, SafeTensors};
use super::{CheckpointError, LoadStage, Progress};

/// One tensor in PyTorch layout, with the name the file used.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub shape: Vec<usize>,
    pub values: Stored,
    /// The name the file gave it, for messages.
    pub original: String,
}

/// A tensor's values as the loader holds them: f16 as the file stored it
/// (widening it is exact, so keeping it loses nothing and holds half the
/// bytes until the device), every other type widened to f32.
#[derive(Clone, Debug)]
pub(super) enum Stored {
    // (Halves are read as their little-endian bytes, here and in the matrix kernel.)
    F32(Vec<f32>),
    F16(Vec<half::f16>),
}

const _: () = assert!(
    cfg!(target_endian = "little"),
    "f16 weights are read as little-endian bytes"
);

impl Stored {
    pub(super) fn len(&self) -> usize {
        match self {
            Stored::F32(v) => v.len(),
            Stored::F16(v) => v.len(),
        }
    }

    pub(super) fn into_f32(self) -> Vec<f32> {
        match self {
            Stored::F32(v) => v,
            Stored::F16(v) => {
                // SAFETY: f16 is two plain bytes, little-endian on every
                // target vitrine builds for (x86-64, aarch64, wasm32).
                let bytes =
                    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), 2 * v.len()) };
                crate::ops::lanes::widen_halves(bytes)
            }
        }
    }

    /// The first value that is infinite or NaN: (index, how many there
    /// are, the value).
    pub(super) fn not_finite(&self) -> Option<(usize, usize, f32)> {
        fn find<T: Copy>(
            v: &[T],
            bad: impl Fn(T) -> bool,
            f32: impl Fn(T) -> f32,
        ) -> Option<(usize, usize, f32)> {
            let first = v.iter().position(|&x| bad(x))?;
            Some((first, v.iter().filter(|&&x| bad(x)).count(), f32(v[first])))
        }
        match self {
            Stored::F32(v) => find(v, |x| !x.is_finite(), |x| x),
            // All exponent bits set: an infinity or a NaN.
            Stored::F16(v) => find(v, |h| h.to_bits() & 0x7c00 == 0x7c00, half::f16::to_f32),
        }
    }

    /// The parts one after another: f16 if they all are, else f32.
    pub(super) fn concat(parts: Vec<Stored>) -> Stored {
        if parts.iter().all(|p| matches!(p, Stored::F16(_))) {
            Stored::F16(
                parts
                    .into_iter()
                    .flat_map(|p| match p {
                        Stored::F16(v) => v,
                        Stored::F32(_) => unreachable!("all f16"),
                    })
                    .collect(),
            )
        } else {
            Stored::F32(parts.into_iter().flat_map(Stored::into_f32).collect())
        }
    }
}

/// Every tensor of `file` read under the file's own name: f16 kept as f16,
/// every other type widened to f32, each checked for infinities and NaNs,
/// `progress` told of the file's bytes read so far.
pub(super) fn read(
    file: &SafeTensors,
    progress: Option<Progress>,
) -> Result<BTreeMap<String, Entry>, CheckpointError> {
    let total: u64 = file.tensors.values().map(|v| v.byte_len() as u64).sum();
    let mut done = 0u64;
    let mut tensors = BTreeMap::new();
    for (name, view) in &file.tensors {
        done += view.byte_len() as u64;
        let values = match view.dtype {
            Dtype::F16 => Stored::F16(view.to_halves()),
            _ => Stored::F32(view.to_f32()),
        };
        if let Some(report) = progress {
            report(LoadStage::Converting, done, total);
        }
        if let Some((first, count, value)) = values.not_finite() {
            return Err(CheckpointError::NotFinite {
                tensor: name.clone(),
                count,
                first,
                value,
            });
        }
        let entry = Entry {
            shape: view.shape.clone(),
            values,
            original: name.clone(),
        };
        tensors.insert(name.clone(), entry);
    }
    Ok(tensors)
}
