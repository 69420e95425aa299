//! The model, in the order of the paper's outline. Its arithmetic runs
//! through [`crate::ops`]; nothing else of vitrine is imported here.

pub mod attention;
pub mod block;
pub mod config;
pub mod mlp;
pub mod patch_embed;
#[cfg(test)]
pub(crate) mod testing;
pub mod vit;

pub use attention::{Attention, AttentionOutput};
pub use block::{Block, BlockSteps};
pub use config::{Pool, VitConfig};
pub use mlp::Mlp;
pub use patch_embed::{PatchEmbed, patchify, unpatchify};
pub use vit::VisionTransformer;
