//! Fashion-MNIST (Xiao et al. 2017) from IDX files, as Debian's
//! `dataset-fashion-mnist` installs them (gzip-compressed or plain).
//!
//! The IDX reader checks the magic number, the dimensions and that the
//! counts agree with the file's size before trusting anything.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use burn::tensor::{Int, Tensor};

/// A batch of normalised images and their labels.
#[derive(Clone, Debug)]
pub struct MnistBatch {
    /// [B, 1, 28, 28]
    pub images: Tensor<4>,
    /// [B]
    pub targets: Tensor<1, Int>,
}

/// Where Debian's package puts the files.
pub const DEBIAN_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The ten classes, in label order.
pub const LABELS: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Images and labels of one split.
#[derive(Clone, Debug)]
pub struct Split {
    /// `len × rows × cols` bytes, row-major; 0 is black background.
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
}

impl Split {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of example `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.rows * self.cols;
        &self.images[i * n..(i + 1) * n]
    }
}

/// Why an IDX file was rejected.
#[derive(Debug, Clone, PartialEq)]
pub enum IdxError {
    Io {
        path: String,
        message: String,
    },
    BadMagic {
        path: String,
        found: u32,
        expected: u32,
    },
    SizeMismatch {
        path: String,
        expected: u64,
        found: u64,
    },
    CountMismatch {
        images: usize,
        labels: usize,
    },
    BadLabel {
        path: String,
        index: usize,
        label: u8,
    },
}

impl fmt::Display for IdxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, message } => write!(f, "cannot read {path}: {message}"),
            Self::BadMagic {
                path,
                found,
                expected,
            } => {
                write!(
                    f,
                    "{path}: bad IDX magic number {found:#010x} (expected {expected:#010x})"
                )
            }
            Self::SizeMismatch {
                path,
                expected,
                found,
            } => write!(
                f,
                "{path}: the header's counts need {expected} bytes of data, but the file has {found} (truncated or corrupt)"
            ),
            Self::CountMismatch { images, labels } => {
                write!(f, "{images} images but {labels} labels")
            }
            Self::BadLabel { path, index, label } => {
                write!(
                    f,
                    "{path}: label {label} at index {index} is not a class 0..9"
                )
            }
        }
    }
}

impl std::error::Error for IdxError {}

/// Parses an IDX file of unsigned bytes with `dims` dimensions; returns the
/// dimensions and the data.
pub fn parse_idx(bytes: &[u8], dims: usize, path: &str) -> Result<(Vec<usize>, Vec<u8>), IdxError> {
    // Magic: two zero bytes, type 0x08 (unsigned byte), number of dimensions.
    let expected = 0x0000_0800 | dims as u32;
    let header = 4 + 4 * dims;
    if bytes.len() < header {
        return Err(IdxError::SizeMismatch {
            path: path.into(),
            expected: header as u64,
            found: bytes.len() as u64,
        });
    }
    let magic = u32::from_be_bytes(bytes[..4].try_into().unwrap());
    if magic != expected {
        return Err(IdxError::BadMagic {
            path: path.into(),
            found: magic,
            expected,
        });
    }
    let shape: Vec<usize> = (0..dims)
        .map(|d| u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().unwrap()) as usize)
        .collect();
    let count = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .unwrap_or(u64::MAX);
    let found = (bytes.len() - header) as u64;
    if count != found {
        return Err(IdxError::SizeMismatch {
            path: path.into(),
            expected: count,
            found,
        });
    }
    Ok((shape, bytes[header..].to_vec()))
}

fn read_maybe_gz(dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>), IdxError> {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    let io = |p: &Path, e: std::io::Error| IdxError::Io {
        path: p.display().to_string(),
        message: e.to_string(),
    };
    if plain.is_file() {
        let bytes = std::fs::read(&plain).map_err(|e| io(&plain, e))?;
        return Ok((plain, bytes));
    }
    let file = std::fs::File::open(&gz).map_err(|e| io(&gz, e))?;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .map_err(|e| io(&gz, e))?;
    Ok((gz, bytes))
}

/// Loads one split (`train` or `t10k`) from `dir`.
pub fn load_split(dir: &Path, split: &str) -> Result<Split, IdxError> {
    let (ipath, ibytes) = read_maybe_gz(dir, &format!("{split}-images-idx3-ubyte"))?;
    let (lpath, lbytes) = read_maybe_gz(dir, &format!("{split}-labels-idx1-ubyte"))?;
    let (ishape, images) = parse_idx(&ibytes, 3, &ipath.display().to_string())?;
    let (lshape, labels) = parse_idx(&lbytes, 1, &lpath.display().to_string())?;
    if ishape[0] != lshape[0] {
        return Err(IdxError::CountMismatch {
            images: ishape[0],
            labels: lshape[0],
        });
    }
    if let Some((index, &label)) = labels.iter().enumerate().find(|(_, l)| **l >= 10) {
        return Err(IdxError::BadLabel {
            path: lpath.display().to_string(),
            index,
            label,
        });
    }
    Ok(Split {
        images,
        labels,
        rows: ishape[1],
        cols: ishape[2],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn parses_and_rejects() {
        let ok = idx(&[2, 1, 2], &[1, 2, 3, 4]);
        assert_eq!(
            parse_idx(&ok, 3, "x").unwrap(),
            (vec![2, 1, 2], vec![1, 2, 3, 4])
        );
        let e = parse_idx(&idx(&[2, 1, 2], &[1, 2, 3]), 3, "x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "x: the header's counts need 4 bytes of data, but the file has 3 (truncated or corrupt)"
        );
        let mut bad = ok.clone();
        bad[2] = 0x0d; // float type
        let e = parse_idx(&bad, 3, "x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "x: bad IDX magic number 0x00000d03 (expected 0x00000803)"
        );
        let e = parse_idx(&[0, 0], 1, "x").unwrap_err();
        assert!(matches!(e, IdxError::SizeMismatch { .. }));
        // Dimensions whose product overflows are a size mismatch, not an allocation.
        let e = parse_idx(&idx(&[u32::MAX, u32::MAX, u32::MAX], &[]), 3, "x").unwrap_err();
        assert!(matches!(e, IdxError::SizeMismatch { .. }));
    }
}
