//! The model, in the order of the paper's outline.

pub mod attention;
pub mod block;
pub mod config;
pub mod kernels;
mod lanes;
pub mod matmul;
pub mod mlp;
pub mod patch_embed;
pub mod vit;

pub use attention::{Attention, AttentionOutput};
pub use block::Block;
pub use config::VitConfig;
pub use kernels::kernel_path;
pub use mlp::Mlp;
pub use patch_embed::{PatchEmbed, patchify, unpatchify};
pub use vit::{Features, VisionTransformer, VitOutput};
