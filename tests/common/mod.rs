//! Shared helpers for the integration tests: fixture paths and golden files.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use vitrine::checkpoint::safetensors::SafeTensors;

mod reference;
#[allow(unused_imports)]
pub use reference::*;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fresh directory under the system's temp directory, named for the test
/// and this process, removed when dropped: also when the test fails.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vitrine-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp directory");
        Self(dir)
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A golden file's tensors: name → (shape, values).
pub fn golden(model: &str) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes =
        std::fs::read(fixtures().join(format!("golden/{model}.safetensors"))).expect("golden file");
    let st = SafeTensors::parse(&bytes).expect("golden parses");
    st.tensors
        .iter()
        .map(|(k, v)| (k.clone(), (v.shape.clone(), v.to_f32())))
        .collect()
}

/// Image stems recorded in a golden file.
pub fn stems(golden: &BTreeMap<String, (Vec<usize>, Vec<f32>)>) -> Vec<String> {
    golden
        .keys()
        .filter_map(|k| k.strip_suffix(".logits").map(str::to_string))
        .collect()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The largest magnitude in `v`.
pub fn largest(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

pub fn mean_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32
}

/// The wgpu device the wgpu comparisons run on (natively Vulkan, e.g.
/// Mesa's lavapipe), or `None` when `VITRINE_SKIP_WGPU` is set; panics
/// when there is no adapter, so a missing driver cannot pass unseen.
pub fn wgpu_device() -> Option<burn::tensor::Device> {
    if std::env::var("VITRINE_SKIP_WGPU").is_ok() {
        eprintln!("VITRINE_SKIP_WGPU set: skipping the wgpu comparison");
        return None;
    }
    Some(
        vitrine::backend::device(vitrine::backend::BackendKind::Wgpu)
            .expect("a wgpu adapter (install mesa-vulkan-drivers, or set VITRINE_SKIP_WGPU=1)"),
    )
}

/// Decodes a fixture photo as RGBA.
pub fn photo(stem: &str) -> image::RgbaImage {
    image::open(fixtures().join(format!("images/{stem}.png")))
        .expect("photo decodes")
        .to_rgba8()
}

/// A file of a fixture model's folder.
pub fn read(model: &str, file: &str) -> Vec<u8> {
    std::fs::read(fixtures().join("models").join(model).join(file)).unwrap()
}

/// A load's error and its message; panics if it loaded.
pub fn message(
    r: Result<vitrine::Checkpoint, vitrine::CheckpointError>,
) -> (vitrine::CheckpointError, String) {
    let e = match r {
        Ok(ck) => panic!("loading should fail, but gave a model of {:?}", ck.config),
        Err(e) => e,
    };
    let m = e.to_string();
    (e, m)
}
