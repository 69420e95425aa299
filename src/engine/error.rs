//! Why an image could not be classified, in words.

use crate::preprocess::PreprocessError;

/// Why an image could not be classified.
#[derive(Clone, Debug, PartialEq)]
pub enum ClassifyError {
    /// The pixels could not be prepared (empty, wrong buffer, too large).
    Preprocess(PreprocessError),
    /// The forward pass gave NaN or ±Inf: weights that are finite but
    /// overflow float32 on the way (NaN and Inf weights are refused when the
    /// checkpoint loads).
    NotANumber {
        /// Which output: "logits", "CLS attention" or "attention rollout".
        output: &'static str,
        nan: usize,
        infinite: usize,
        len: usize,
    },
    /// Relevance to a class was asked of a model without a classifier.
    NoClassifier,
    /// Relevance to a class the model does not have.
    NoSuchClass { class: usize, classes: usize },
    /// A discard ratio outside [0, 1).
    DiscardRatio(f64),
    /// The relevance pass would need more working memory than allowed.
    RelevanceTooLarge { needed: u64, budget: u64 },
}

impl std::fmt::Display for ClassifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Preprocess(e) => e.fmt(f),
            Self::NotANumber {
                output,
                nan,
                infinite,
                len,
            } => write!(
                f,
                "the model's output is not a number: of the {len} values of its {output}, \
                 {nan} are NaN and {infinite} infinite (the checkpoint's weights overflow \
                 float32 somewhere in the forward pass; it is damaged or not meant for this \
                 architecture)"
            ),
            Self::NoClassifier => f.write_str(
                "this model has no classifier (it is a backbone), so there is no class score to \
                 explain; its attention maps still show where it looks",
            ),
            Self::NoSuchClass { class, classes } => write!(
                f,
                "there is no class {class}: this model has {classes} classes, 0 to {}",
                classes.saturating_sub(1)
            ),
            Self::RelevanceTooLarge { needed, budget } => write!(
                f,
                "a relevance map of this model at this input size needs about {:.1} GB of working \
                 memory (every layer's attention is kept for the backward pass), more than the \
                 {:.1} GB available here; a smaller input size needs less",
                *needed as f64 / 1e9,
                *budget as f64 / 1e9
            ),
            Self::DiscardRatio(r) => write!(
                f,
                "the discard ratio must be at least 0 and below 1 (the share of each layer's \
                 weighted attention set to zero), got {r}"
            ),
        }
    }
}

impl std::error::Error for ClassifyError {}

impl From<PreprocessError> for ClassifyError {
    fn from(e: PreprocessError) -> Self {
        Self::Preprocess(e)
    }
}

/// `Err` naming `output` when any of `values` is NaN or infinite.
pub(super) fn finite(output: &'static str, values: &[f32]) -> Result<(), ClassifyError> {
    // One pass on every classification; the counts only when it fails.
    if values.iter().all(|v| v.is_finite()) {
        return Ok(());
    }
    let nan = values.iter().filter(|v| v.is_nan()).count();
    let infinite = values.iter().filter(|v| v.is_infinite()).count();
    Err(ClassifyError::NotANumber {
        output,
        nan,
        infinite,
        len: values.len(),
    })
}
