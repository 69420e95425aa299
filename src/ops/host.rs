//! Burn's CPU tensors read in place.

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Tensor};

/// An f32 tensor's buffer, borrowed from Burn without a copy. The handle
/// kept here holds a second reference to the storage, and flex writes a
/// tensor in place only when its storage has one owner (copy on write,
/// `FlexTensor::is_unique`), so nothing writes these bytes while held.
pub struct Values(FlexTensor);

impl Values {
    /// `None` unless `t` is f32, on Burn's CPU backend without autodiff,
    /// and contiguous from the start of its buffer.
    pub fn of<const D: usize>(t: Tensor<D>) -> Option<Self> {
        if t.dtype() != DType::F32 {
            return None;
        }
        let p = t.try_into_primitive::<Flex>().ok()?;
        let layout = p.layout();
        let len = layout.num_elements();
        let bytes = p.bytes();
        let fits = layout.is_contiguous()
            && layout.start_offset() == 0
            && bytes.len() >= len * 4
            && bytes.as_ptr().align_offset(4) == 0;
        fits.then_some(Self(p))
    }

    pub fn get(&self) -> &[f32] {
        let len = self.0.layout().num_elements();
        let bytes = self.0.bytes();
        // SAFETY: checked in `of`: at least `len` f32s, aligned, in storage
        // this handle keeps alive and nothing writes while it is shared.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<f32>(), len) }
    }
}
