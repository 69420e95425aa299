//! What the model looked at, every computation of it in one place, for the
//! page, the CLI and the walk-through alike.
//!
//! - [`trace`]: on the device, as the encoder runs: class-token rows, one
//!   layer's full matrix, attention rollout.
//! - [`distance`]: mean attention distance per head (on the device).
//! - [`relevance`]: class-specific maps from the gradient of one class's
//!   score (gradient-weighted rollout, Chefer et al.); [`grad_rollout`]:
//!   the former's host step.
//! - [`maps`]: on the host, after the read-back: one head, or the mean over heads.
//! - [`colormap`] and [`overlay`]: maps as pictures.

pub mod colormap;
pub mod distance;
pub mod grad_rollout;
pub mod gradient;
pub mod maps;
pub mod overlay;
pub mod relevance;
pub mod trace;

pub use colormap::{colour, viridis};
pub use maps::{AttentionMaps, HeadChoice, head_mean, map_note, prefix_token_names};
pub use overlay::{normalize, overlay};
pub use relevance::{DISCARD_RATIO, Explanation, RelevanceMaps};
pub use trace::{AttentionTrace, MapQueries, TracedMaps};
