//! The model's tensors under timm's names and in PyTorch's layouts, read off
//! the model itself.
//!
//! [`VisionTransformer`]'s fields carry timm's names, so Burn's module paths
//! are timm's names (`blocks.0.attn.qkv.weight`). The expected-name check,
//! loading and export all walk that one structure, the one `src/model/`
//! defines: a tensor added to the model is checked, loaded and exported with
//! no list to edit. Only the layouts differ, in the ways [`Kind`] lists.

use std::collections::{BTreeMap, HashSet};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{DType, Device, Tensor, TensorData};

use super::family::{blocks_named, display_name, torch_shape_as_stored};
use super::{CheckpointError, Entry, Layout, LoadStage, Progress, Stored};
use crate::model::{VisionTransformer, VitConfig};

/// How a tensor's PyTorch layout differs from Burn's.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// The same values in the same order.
    Same,
    /// A `Linear` weight: PyTorch [out, in], Burn [in, out].
    Transposed,
    /// The patch embedding: PyTorch's convolution kernel [D, C, P, P], Burn's
    /// linear map of flattened (row, column, channel) patches [P·P·C, D]
    /// (see [`crate::model::patch_embed::patchify`]).
    PatchKernel { patch: usize },
}

impl Kind {
    fn torch_shape(self, burn: &[usize]) -> Vec<usize> {
        match (self, burn) {
            (Kind::Same, _) => burn.to_vec(),
            (Kind::Transposed, &[inp, out]) => vec![out, inp],
            (Kind::PatchKernel { patch: p }, &[len, d]) => vec![d, len / (p * p), p, p],
            _ => unreachable!("a linear weight is a matrix"),
        }
    }

    /// `values` (in PyTorch's layout, shape `torch`) in Burn's.
    fn to_burn<T: Copy + Default>(self, torch: &[usize], values: Vec<T>) -> Vec<T> {
        match (self, torch) {
            (Kind::Same, _) => values,
            (Kind::Transposed, &[out, inp]) => transpose(&values, out, inp),
            (Kind::PatchKernel { .. }, &[d, c, p, _]) => {
                let mut t = vec![T::default(); values.len()];
                for_each_patch_index(d, c, p, |torch, burn| t[burn] = values[torch]);
                t
            }
            _ => unreachable!("shapes are checked before loading"),
        }
    }

    /// `values` (in Burn's layout, shape `burn`) in PyTorch's.
    fn to_torch(self, burn: &[usize], values: &[f32]) -> Vec<f32> {
        match (self, burn) {
            (Kind::Same, _) => values.to_vec(),
            (Kind::Transposed, &[inp, out]) => transpose(values, inp, out),
            (Kind::PatchKernel { patch: p }, &[len, d]) => {
                let c = len / (p * p);
                let mut t = vec![0.0; values.len()];
                for_each_patch_index(d, c, p, |torch, burn| t[torch] = values[burn]);
                t
            }
            _ => unreachable!("a linear weight is a matrix"),
        }
    }
}

/// A row-major [rows, cols] matrix as [cols, rows], in 32×32 blocks: each
/// row of the result is written front to back, 32 values at a time
/// gathered down 32 rows of the input, whose cache lines the block's next
/// columns read again. Writing column by column instead strides a whole
/// row of the result per value: ViT-L/16's weights took 3.5× as long
/// (docs/performance.md).
fn transpose<T: Copy + Default>(values: &[T], rows: usize, cols: usize) -> Vec<T> {
    const BLOCK: usize = 32;
    let mut t = vec![T::default(); values.len()];
    if rows == 0 {
        return t;
    }
    for (block, out) in t.chunks_mut(BLOCK * rows).enumerate() {
        let c0 = block * BLOCK;
        for r0 in (0..rows).step_by(BLOCK) {
            let height = BLOCK.min(rows - r0);
            for (c, row) in out.chunks_exact_mut(rows).enumerate() {
                for (i, v) in row[r0..r0 + height].iter_mut().enumerate() {
                    *v = values[(r0 + i) * cols + c0 + c];
                }
            }
        }
    }
    t
}

/// Calls `f(torch, burn)` with the index of every weight of a patch kernel
/// in PyTorch's [D, C, P, P] and in Burn's [P·P·C, D], whose rows follow the
/// flattened patch: (y·P + x)·C + channel.
fn for_each_patch_index(d: usize, c: usize, p: usize, mut f: impl FnMut(usize, usize)) {
    for o in 0..d {
        for ch in 0..c {
            for y in 0..p {
                for x in 0..p {
                    f(
                        ((o * c + ch) * p + y) * p + x,
                        ((y * p + x) * c + ch) * d + o,
                    );
                }
            }
        }
    }
}

/// One parameter under its timm name, with its PyTorch shape.
struct TorchTensor {
    name: String,
    shape: Vec<usize>,
    kind: Kind,
}

/// The module path of a walk, and what it means for the tensor at its end.
struct Path {
    names: Vec<String>,
    containers: Vec<String>,
    /// Patch side P, for the patch embedding's kernel.
    patch: usize,
}

impl Path {
    fn new(model: &VisionTransformer) -> Self {
        Path {
            names: Vec::new(),
            containers: Vec::new(),
            patch: model.patch_embed.patch_size,
        }
    }
    fn enter(&mut self, name: &str, container: &str) {
        self.names.push(name.to_string());
        self.containers.push(container.to_string());
    }
    fn exit(&mut self) {
        self.names.pop();
        self.containers.pop();
    }
    /// The tensor at the current path, whose Burn shape is `burn`.
    fn tensor(&self, burn: &[usize]) -> TorchTensor {
        let container = self.containers.last().map_or("", String::as_str);
        let mut names = self.names.clone();
        if container == "Struct:LayerNorm" {
            // Burn's γ and β are PyTorch's weight and bias.
            let leaf = names.last_mut().expect("a parameter has a name");
            *leaf = match leaf.as_str() {
                "gamma" => "weight".into(),
                "beta" => "bias".into(),
                other => other.into(),
            };
        }
        let name = names.join(".");
        let kind = if container != "Struct:Linear" || !name.ends_with(".weight") {
            Kind::Same
        } else if name == "patch_embed.proj.weight" {
            Kind::PatchKernel { patch: self.patch }
        } else {
            Kind::Transposed
        };
        TorchTensor {
            shape: kind.torch_shape(burn),
            name,
            kind,
        }
    }
}

/// Every tensor of `model`, in model order, with its PyTorch shape. Reads
/// only shapes: the model's lazily initialised parameters stay unallocated.
fn torch_tensors(model: &VisionTransformer) -> Vec<TorchTensor> {
    struct Names(Path, Vec<TorchTensor>);
    impl ModuleVisitor for Names {
        fn enter_module(&mut self, name: &str, container: &str) {
            self.0.enter(name, container);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let shape = param.lazy_shape();
            self.1.push(self.0.tensor(&shape));
        }
    }
    let mut names = Names(Path::new(model), Vec::new());
    model.visit(&mut names);
    names.1
}

/// The model `config` describes, its parameters not yet allocated. A depth
/// is only trusted as far as `tensors` bear it out: one block more than the
/// file holds is enough to name what is missing, so a config that claims
/// far more (a depth of 2⁶³ is refused earlier, one of 2²⁰ here) costs no
/// more than the file does.
fn skeleton(
    config: &VitConfig,
    tensors: &BTreeMap<String, Entry>,
    device: &Device,
) -> VisionTransformer {
    let blocks_in_file = blocks_named(tensors.keys());
    let mut c = config.clone();
    c.depth = c.depth.min(blocks_in_file + 1);
    c.init(device)
}

/// Every tensor the config implies is present with its shape, and nothing
/// else is. Stops at the first problem, in model order.
pub(super) fn check(
    tensors: &BTreeMap<String, Entry>,
    config: &VitConfig,
    layout: Layout,
    implied_by: &str,
) -> Result<(), CheckpointError> {
    let mut known = HashSet::new();
    for t in torch_tensors(&skeleton(config, tensors, &Device::flex())) {
        let Some((key, entry)) = tensors.get_key_value(&t.name) else {
            return Err(CheckpointError::MissingKey {
                key: display_name(&t.name, layout),
            });
        };
        if entry.shape != t.shape {
            return Err(CheckpointError::WrongShape {
                tensor: entry.original.clone(),
                expected: torch_shape_as_stored(&t.name, &t.shape, layout),
                found: torch_shape_as_stored(&t.name, &entry.shape, layout),
                implied_by: implied_by.to_string(),
            });
        }
        known.insert(key.as_str());
    }
    if let Some((_, entry)) = tensors.iter().find(|(n, _)| !known.contains(n.as_str())) {
        return Err(CheckpointError::UnexpectedKey {
            key: entry.original.clone(),
        });
    }
    Ok(())
}

/// The model `config` describes with `tensors` (checked by [`check`]) as its
/// weights, on `device`. No parameter is initialised at random first, and
/// each host tensor is dropped once its device copy exists: loading holds
/// the weights once, plus the tensor in hand. With `keep_f16`, `Linear`
/// weights stored in f16 stay f16 on the device. `progress` hears of each.
pub(super) fn load(
    tensors: BTreeMap<String, Entry>,
    config: &VitConfig,
    device: &Device,
    keep_f16: bool,
    progress: Progress,
) -> VisionTransformer {
    struct Loader<'a> {
        path: Path,
        tensors: BTreeMap<String, Entry>,
        device: &'a Device,
        keep_f16: bool,
        progress: Progress<'a>,
        done: u64,
        total: u64,
    }
    impl ModuleMapper for Loader<'_> {
        fn enter_module(&mut self, name: &str, container: &str) {
            self.path.enter(name, container);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.exit();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let burn_shape = param.lazy_shape();
            let t = self.path.tensor(&burn_shape);
            let entry = self
                .tensors
                .remove(&t.name)
                .expect("a checked checkpoint has every tensor of its model");
            self.done += entry.values.len() as u64;
            let tensor = match entry.values {
                Stored::F16(halves) if self.keep_f16 && t.kind == Kind::Transposed => {
                    let halves = t.kind.to_burn(&entry.shape, halves);
                    let data = TensorData::new(halves, burn_shape);
                    Tensor::from_data(data, (self.device, DType::F16))
                }
                values => {
                    // Halves are laid out in Burn's order before they are
                    // widened: half the bytes moved, and no f32 copy in
                    // PyTorch's order.
                    let values = match values {
                        Stored::F16(halves) => {
                            Stored::F16(t.kind.to_burn(&entry.shape, halves)).into_f32()
                        }
                        Stored::F32(values) => t.kind.to_burn(&entry.shape, values),
                    };
                    Tensor::from_data(TensorData::new(values, burn_shape), self.device)
                }
            };
            (self.progress)(LoadStage::Building, self.done, self.total);
            Param::from_tensor(tensor)
        }
    }
    let model = config.init(device);
    let total = tensors.values().map(|e| e.values.len() as u64).sum();
    let mut loader = Loader {
        path: Path::new(&model),
        tensors,
        device,
        keep_f16,
        progress,
        done: 0,
        total,
    };
    model.map(&mut loader)
}

/// The model's tensors under timm's names in PyTorch's layouts: the inverse
/// of [`load`], for writing a timm-layout `model.safetensors`.
pub fn timm_tensors(model: &VisionTransformer) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    struct Export(Path, Vec<(String, Vec<usize>, Vec<f32>)>);
    impl ModuleVisitor for Export {
        fn enter_module(&mut self, name: &str, container: &str) {
            self.0.enter(name, container);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let data = param.val().into_data();
            let shape = data.shape().to_vec();
            let values = data
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("f32 parameters");
            let t = self.0.tensor(&shape);
            self.1
                .push((t.name, t.shape, t.kind.to_torch(&shape, &values)));
        }
    }
    let mut export = Export(Path::new(model), Vec::new());
    model.visit(&mut export);
    export.1
}

#[cfg(test)]
mod tests {
    /// The blocked transpose against the definition, on shapes across and
    /// inside its 32-wide blocks, empty ones included.
    #[test]
    fn transpose_is_the_definitions() {
        for &(rows, cols) in &[(0, 3), (3, 0), (1, 5), (5, 1), (32, 32), (45, 70), (70, 33)] {
            let values: Vec<u32> = (0..(rows * cols) as u32).collect();
            let t = super::transpose(&values, rows, cols);
            assert_eq!(t.len(), values.len());
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        t[c * rows + r],
                        values[r * cols + c],
                        "{rows}×{cols} at ({r}, {c})"
                    );
                }
            }
        }
    }
}
