//! A strict reader for the `safetensors` format (8-byte little-endian header
//! length, a JSON header, then raw little-endian tensor bytes).
//!
//! Everything the header claims is checked against the bytes actually present
//! before anything is allocated, so a hostile or damaged file costs at most
//! its own size in memory and always ends in a [`SafetensorsError`].
//! Written here rather than taken from the `safetensors` crate so that each
//! error names the tensor and the numbers that disagree, and views borrow
//! the dropped file's bytes in wasm; writing uses the crate ([`serialize`]).

use std::collections::BTreeMap;

use std::fmt;

/// What is wrong with a weights file; every variant names the tensor or field.
#[derive(Debug, Clone, PartialEq)]
pub enum SafetensorsError {
    /// The bytes are not a safetensors file at all.
    NotSafetensors { reason: String },
    /// The header length field claims more bytes than the file has.
    HeaderTooLarge { declared: u64, file_len: u64 },
    /// A tensor's data lies (partly) past the end of the file.
    Truncated {
        tensor: String,
        needed: u64,
        file_len: u64,
    },
    /// A header entry is malformed.
    BadHeader { tensor: String, reason: String },
    /// A tensor is stored in a type other than f32, f16, bf16 or f64.
    UnsupportedDtype { tensor: String, dtype: String },
}

impl fmt::Display for SafetensorsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SafetensorsError::*;
        match self {
            NotSafetensors { reason } => write!(f, "not a safetensors file: {reason}"),
            HeaderTooLarge { declared, file_len } => write!(
                f,
                "truncated or corrupt safetensors file: the header length field says {declared} bytes, \
                 but the whole file has {file_len}"
            ),
            Truncated {
                tensor,
                needed,
                file_len,
            } => write!(
                f,
                "truncated safetensors file: tensor `{tensor}` needs the file to be at least {needed} bytes, \
                 but it has {file_len}"
            ),
            BadHeader { tensor, reason } => {
                write!(
                    f,
                    "malformed safetensors header entry for `{tensor}`: {reason}"
                )
            }
            UnsupportedDtype { tensor, dtype } => write!(
                f,
                "tensor `{tensor}` has dtype {dtype}; only F32, F16, BF16 and F64 are supported"
            ),
        }
    }
}

impl std::error::Error for SafetensorsError {}

/// Largest JSON header accepted (the reference implementation uses the same bound).
const MAX_HEADER_BYTES: u64 = 100 * 1024 * 1024;

/// Element types a checkpoint may store its floats in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
    F64,
}

impl Dtype {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "F32" => Some(Self::F32),
            "F16" => Some(Self::F16),
            "BF16" => Some(Self::BF16),
            "F64" => Some(Self::F64),
            _ => None,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F16 | Self::BF16 => 2,
            Self::F32 => 4,
            Self::F64 => 8,
        }
    }
}

/// One tensor's entry: where its bytes are, in what type and shape.
#[derive(Clone, Debug)]
pub struct TensorView<'a> {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    bytes: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// A view of `bytes`, which hold exactly `shape`'s elements of `dtype`
    /// (the caller checks; the PyTorch reader does).
    pub(crate) fn new(dtype: Dtype, shape: Vec<usize>, bytes: &'a [u8]) -> Self {
        debug_assert_eq!(bytes.len(), shape.iter().product::<usize>() * dtype.size());
        Self {
            dtype,
            shape,
            bytes,
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Size of its values in the file, in bytes.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// An f16 tensor's values as they are.
    pub fn to_halves(&self) -> Vec<half::f16> {
        assert_eq!(self.dtype, Dtype::F16, "to_halves: an f16 tensor");
        self.bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]))
            .collect()
    }

    /// The values widened to `f32` (f16 and bf16 exactly; f64 rounded).
    pub fn to_f32(&self) -> Vec<f32> {
        let b = self.bytes;
        match self.dtype {
            Dtype::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => crate::ops::lanes::widen_halves(b),
            Dtype::BF16 => b
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::F64 => b
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("chunk of 8")) as f32)
                .collect(),
        }
    }
}

/// A parsed file: tensor views borrowing the file's bytes, in name order.
#[derive(Debug)]
pub struct SafeTensors<'a> {
    pub tensors: BTreeMap<String, TensorView<'a>>,
}

#[derive(serde::Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

impl<'a> SafeTensors<'a> {
    /// Parses and validates `bytes`; no tensor data is copied.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, SafetensorsError> {
        let file_len = bytes.len() as u64;
        if bytes.len() < 8 {
            return Err(SafetensorsError::NotSafetensors {
                reason: format!(
                    "the file has only {file_len} bytes, fewer than the 8-byte header length"
                ),
            });
        }
        let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        let looks_like_json = bytes.get(8) == Some(&b'{');
        if !looks_like_json {
            return Err(SafetensorsError::NotSafetensors {
                reason: "the header does not start with a JSON object".into(),
            });
        }
        if header_len > MAX_HEADER_BYTES || header_len > file_len - 8 {
            return Err(SafetensorsError::HeaderTooLarge {
                declared: header_len,
                file_len,
            });
        }
        let header_end = 8 + header_len as usize;
        let header: BTreeMap<String, serde_json::Value> =
            serde_json::from_slice(&bytes[8..header_end]).map_err(|e| {
                SafetensorsError::NotSafetensors {
                    reason: format!("the header is not valid JSON ({e})"),
                }
            })?;
        let data = &bytes[header_end..];
        let data_len = data.len() as u64;

        let mut tensors = BTreeMap::new();
        for (name, value) in header {
            if name == "__metadata__" {
                continue;
            }
            let entry: RawEntry =
                serde_json::from_value(value).map_err(|e| SafetensorsError::BadHeader {
                    tensor: name.clone(),
                    reason: e.to_string(),
                })?;
            let Some(dtype) = Dtype::parse(&entry.dtype) else {
                return Err(SafetensorsError::UnsupportedDtype {
                    tensor: name,
                    dtype: entry.dtype,
                });
            };
            let [begin, end] = entry.data_offsets;
            if begin > end {
                return Err(SafetensorsError::BadHeader {
                    tensor: name,
                    reason: format!("data offsets [{begin}, {end}] are reversed"),
                });
            }
            if end > data_len {
                return Err(SafetensorsError::Truncated {
                    tensor: name,
                    needed: header_end as u64 + end,
                    file_len,
                });
            }
            // Checked arithmetic: the shape comes from the file and may overflow.
            let numel = entry
                .shape
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d));
            let nbytes = numel.and_then(|n| n.checked_mul(dtype.size() as u64));
            if nbytes != Some(end - begin) {
                return Err(SafetensorsError::BadHeader {
                    tensor: name,
                    reason: format!(
                        "shape {:?} of {} needs {} bytes but its data offsets span {}",
                        entry.shape,
                        entry.dtype,
                        nbytes.map_or("too many".to_string(), |n| n.to_string()),
                        end - begin
                    ),
                });
            }
            let shape = entry.shape.iter().map(|&d| d as usize).collect();
            let view = TensorView {
                dtype,
                shape,
                bytes: &data[begin as usize..end as usize],
            };
            tensors.insert(name, view);
        }
        Ok(Self { tensors })
    }
}

/// Serialises f32 tensors as a safetensors file with the `safetensors`
/// crate's writer (used by tests, export and training's checkpoints; `f16`
/// stores them as half precision).
#[cfg(not(target_arch = "wasm32"))]
pub fn serialize(tensors: &[(String, Vec<usize>, Vec<f32>)], f16: bool) -> Vec<u8> {
    use ::safetensors::{Dtype, tensor::TensorView};
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, values)| {
            if f16 {
                values
                    .iter()
                    .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                    .collect()
            } else {
                values.iter().flat_map(|&v| v.to_le_bytes()).collect()
            }
        })
        .collect();
    let dtype = if f16 { Dtype::F16 } else { Dtype::F32 };
    let views = tensors.iter().zip(&bytes).map(|((name, shape, _), data)| {
        let view = TensorView::new(dtype, shape.clone(), data).expect("shape matches the values");
        (name.as_str(), view)
    });
    ::safetensors::serialize(views, None).expect("tensors serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Eight at a time (the browser's SIMD128 lanes, an array here) as
    /// one at a time, for every half, and a tail shorter than eight.
    #[test]
    fn every_half_widens_alike_eight_at_a_time() {
        // Eight normal halves with one zero, subnormal, infinity or NaN in
        // each lane in turn (the exact path), and the largest and smallest
        // normal exponents in each (the fast one); groups of eight, as
        // `widen_halves` takes them. Then every half, and a tail.
        let mut halves = Vec::new();
        for special in [
            0x0000, 0x8000, 0x0001, 0x83ff, 0x7c00, 0xfc00, 0x7e00, 0x0400, 0xfbff,
        ] {
            for lane in 0..8 {
                halves.extend((0..8).map(|i| {
                    if i == lane {
                        special
                    } else {
                        0x3c00 + 0x111 * i as u16
                    }
                }));
            }
        }
        halves.extend((0..=u16::MAX).chain([0x3c00, 0x8001, 0x7e00]));
        let bytes: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
        let widened = crate::ops::lanes::widen_halves(&bytes);
        assert_eq!(widened.len(), halves.len());
        for (h, w) in halves.iter().zip(&widened) {
            assert_eq!(
                w.to_bits(),
                crate::ops::lanes::f16_to_f32(*h).to_bits(),
                "{h:#06x}"
            );
        }
    }

    #[test]
    fn every_half_widens_as_the_half_crate_does() {
        for h in 0..=u16::MAX {
            let (ours, theirs) = (
                crate::ops::lanes::f16_to_f32(h),
                half::f16::from_bits(h).to_f32(),
            );
            assert!(
                ours.to_bits() == theirs.to_bits() || (ours.is_nan() && theirs.is_nan()),
                "{h:#06x}: {ours:e} vs {theirs:e}"
            );
        }
    }

    #[test]
    fn round_trip_f32_and_f16() {
        let t = vec![("a".to_string(), vec![2, 2], vec![1.0, -2.0, 0.5, 3.25])];
        for f16 in [false, true] {
            let bytes = serialize(&t, f16);
            let st = SafeTensors::parse(&bytes).unwrap();
            let a = &st.tensors["a"];
            assert_eq!(a.shape, vec![2, 2]);
            assert_eq!(a.to_f32(), t[0].2);
        }
    }

    #[test]
    fn overflowing_shape_is_rejected_without_allocating() {
        let header =
            br#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,0]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        let err = SafeTensors::parse(&bytes).unwrap_err();
        assert!(matches!(err, SafetensorsError::BadHeader { .. }), "{err}");
    }
}
