//! Burn's CPU tensors read in place.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Tensor};
use half::f16;

/// An f32 tensor's buffer, borrowed from Burn without a copy. The handle
/// kept here holds a second reference to the storage, and flex writes a
/// tensor in place only when its storage has one owner (copy on write,
/// `FlexTensor::is_unique`), so nothing writes these bytes while held.
pub struct Values(FlexTensor);

/// `t`'s flex primitive, if `t` is of `dtype` (elements of `size` bytes),
/// on Burn's CPU backend without autodiff, and contiguous from the start
/// of a buffer aligned for its elements.
fn in_place<const D: usize>(t: Tensor<D>, dtype: DType, size: usize) -> Option<FlexTensor> {
    if t.dtype() != dtype {
        return None;
    }
    let p = t.try_into_primitive::<Flex>().ok()?;
    let layout = p.layout();
    let len = layout.num_elements();
    let bytes = p.bytes();
    let fits = layout.is_contiguous()
        && layout.start_offset() == 0
        && bytes.len() >= len * size
        && bytes.as_ptr().align_offset(size) == 0;
    fits.then_some(p)
}

impl Values {
    /// `None` unless `t` is f32, on Burn's CPU backend without autodiff,
    /// and contiguous from the start of its buffer.
    pub fn of<const D: usize>(t: Tensor<D>) -> Option<Self> {
        in_place(t, DType::F32, 4).map(Self)
    }

    pub fn get(&self) -> &[f32] {
        let len = self.0.layout().num_elements();
        let bytes = self.0.bytes();
        // SAFETY: checked in `of`: at least `len` f32s, aligned, in storage
        // this handle keeps alive and nothing writes while it is shared.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), len) }
    }
}

/// An f16 tensor's buffer, borrowed as [`Values`] borrows f32s: a weight
/// matrix kept in the file's half precision
/// ([`crate::checkpoint::F16Matrices::Keep`]).
pub struct Halves(FlexTensor);

impl Halves {
    /// `None` unless `t` is f16, on Burn's CPU backend without autodiff,
    /// and contiguous from the start of its buffer.
    pub fn of<const D: usize>(t: Tensor<D>) -> Option<Self> {
        in_place(t, DType::F16, 2).map(Self)
    }

    pub fn get(&self) -> &[f16] {
        let len = self.0.layout().num_elements();
        // SAFETY: as `Values::get`, for `len` aligned f16s.
        unsafe { std::slice::from_raw_parts(self.0.bytes().as_ptr().cast::<f16>(), len) }
    }
}

/// A weight matrix read in place, in whichever precision it is kept.
pub enum Weight {
    F32(Values),
    F16(Halves),
}

impl Weight {
    /// `None` unless `t` is an f32 or f16 tensor that [`Values::of`] or
    /// [`Halves::of`] can read.
    pub fn of<const D: usize>(t: Tensor<D>) -> Option<Self> {
        match t.dtype() {
            DType::F16 => Halves::of(t).map(Self::F16),
            _ => Values::of(t).map(Self::F32),
        }
    }

    /// The values, for the matrix kernel.
    pub fn rhs(&self) -> crate::ops::matmul::Rhs<'_> {
        match self {
            Self::F32(v) => crate::ops::matmul::Rhs::F32(v.get()),
            Self::F16(h) => crate::ops::matmul::Rhs::F16(h.get()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.get().len(),
            Self::F16(h) => h.get().len(),
        }
    }
}
