//! A classifier and the image it classified last, kept for the page's
//! follow-up questions (another layer, why this class, the walk-through).

use std::sync::{Arc, Mutex};

use super::{Classifier, ClassifyError, Prediction, Relevance};
use crate::exec::KeptForward;
use crate::figures::{FeaturePca, FilterComponents, TokenFigures};
use crate::preprocess::Prepared;
use crate::walkthrough::{Focus, Walkthrough};

/// A classifier and the last image it classified, kept prepared: asking
/// for another layer's full attention, or for the walk-through of that
/// image, takes no pixels and repeats no preprocessing. The forward pass
/// itself is run again (tens of milliseconds for the default model): keeping
/// every layer's full attention instead would hold L·H·(N+1)² floats, 22 MB
/// for ViT-B/16 and gigabytes for a 60×60 patch grid.
pub struct Viewer {
    pub classifier: Classifier,
    image: Mutex<Option<Arc<Prepared>>>,
    /// The kept image's forward pass, when its classification was asked
    /// to keep it for relevance maps.
    forward: Mutex<Option<Arc<KeptForward>>>,
    /// The patch embedding's principal components, once asked for (they
    /// depend on the weights alone).
    filters: Mutex<Option<Arc<FilterComponents>>>,
    /// The last images classified, the newest last (each once), for a
    /// PCA of patch features fitted over several.
    recent: Mutex<Vec<Arc<Prepared>>>,
}

/// How many images [`Viewer::feature_pca`] can fit over at most.
pub const RECENT_IMAGES: usize = 4;

/// Why a question about the kept image could not be answered.
#[derive(Clone, Debug, PartialEq)]
pub enum ViewerError {
    /// Nothing was classified with this model yet.
    NoImage,
    /// A layer, head or patch the model does not have.
    OutOfRange(String),
    Classify(ClassifyError),
}

impl std::fmt::Display for ViewerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoImage => f.write_str("no image has been classified with this model yet"),
            Self::OutOfRange(what) => f.write_str(what),
            Self::Classify(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ViewerError {}

impl From<ClassifyError> for ViewerError {
    fn from(e: ClassifyError) -> Self {
        Self::Classify(e)
    }
}

impl Viewer {
    pub fn new(classifier: Classifier) -> Self {
        Self {
            classifier,
            image: Mutex::new(None),
            forward: Mutex::new(None),
            filters: Mutex::new(None),
            recent: Mutex::new(Vec::new()),
        }
    }

    fn kept(&self) -> Result<Arc<Prepared>, ViewerError> {
        self.image
            .lock()
            .expect("not poisoned")
            .clone()
            .ok_or(ViewerError::NoImage)
    }

    fn check_layer(&self, layer: usize) -> Result<(), ViewerError> {
        let depth = self.classifier.config.depth;
        if layer >= depth {
            return Err(ViewerError::OutOfRange(format!(
                "layer {layer} does not exist: the model has layers 0..{}",
                depth - 1
            )));
        }
        Ok(())
    }

    /// Classifies RGBA pixels and keeps the prepared image; with
    /// `for_relevance`, also its forward pass, so that a relevance map of
    /// it runs only the backward pass (where memory allows:
    /// [`Classifier::classify_input_keeping`]). When preprocessing fails,
    /// the image kept before stays.
    pub async fn classify(
        &self,
        rgba: &[u8],
        width: u32,
        height: u32,
        keep_layer: Option<usize>,
        for_relevance: bool,
    ) -> Result<Prediction, ViewerError> {
        if let Some(l) = keep_layer {
            self.check_layer(l)?;
        }
        let (image, preprocess_ms) = self
            .classifier
            .prepare(rgba, width, height)
            .map_err(ClassifyError::from)?;
        let image = Arc::new(image);
        *self.image.lock().expect("not poisoned") = Some(image.clone());
        {
            let mut recent = self.recent.lock().expect("not poisoned");
            recent.retain(|r| r.input != image.input);
            if recent.len() == RECENT_IMAGES {
                recent.remove(0);
            }
            recent.push(image.clone());
        }
        *self.forward.lock().expect("not poisoned") = None;
        if !for_relevance {
            return Ok(self
                .classifier
                .classify_prepared(&image, keep_layer, preprocess_ms)
                .await?);
        }
        let (prediction, forward) = self
            .classifier
            .classify_input_keeping(&image.input, keep_layer)
            .await?;
        *self.forward.lock().expect("not poisoned") = forward.map(Arc::new);
        Ok(prediction.of_image(&image, preprocess_ms))
    }

    /// The kept image's full attention of `layer`, [H, N+1, N+1], and its
    /// mean over heads, [N+1, N+1].
    pub async fn layer_attention(&self, layer: usize) -> Result<(Vec<f32>, Vec<f32>), ViewerError> {
        self.check_layer(layer)?;
        let image = self.kept()?;
        let p = self
            .classifier
            .classify_prepared(&image, Some(layer), 0.0)
            .await?;
        Ok((
            p.layer_attention.expect("asked for"),
            p.layer_mean.expect("asked for"),
        ))
    }

    /// The kept image's relevance maps for `class` (the top one when
    /// `None`); see [`Classifier::relevance_input`].
    pub async fn relevance(
        &self,
        class: Option<usize>,
        discard_ratio: f64,
    ) -> Result<Relevance, ViewerError> {
        let image = self.kept()?;
        let forward = self.forward.lock().expect("not poisoned").clone();
        Ok(match forward {
            Some(forward) => {
                self.classifier
                    .relevance_kept(&forward, class, discard_ratio)
                    .await?
            }
            None => {
                self.classifier
                    .relevance_input(&image.input, class, discard_ratio)
                    .await?
            }
        })
    }

    /// The papers' figures of the kept image (token norms, the registers'
    /// share of attention, position similarity) and of the model (its
    /// patch embedding's first 28 principal components, made once).
    pub async fn figures(&self) -> Result<(TokenFigures, Arc<FilterComponents>), ViewerError> {
        let image = self.kept()?;
        let tokens = self.classifier.token_figures(&image.input).await;
        let made = self
            .filters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let filters = match made {
            Some(f) => f,
            None => {
                let f =
                    Arc::new(crate::figures::filter_components(self.classifier.model(), 28).await);
                *self.filters.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&f));
                f
            }
        };
        Ok((tokens, filters))
    }

    /// The PCA of the patch features of the last `images` images
    /// classified (at most [`RECENT_IMAGES`], the kept one last), fitted
    /// over all of them, and those images; see [`crate::figures::feature_pca`].
    pub async fn feature_pca(
        &self,
        images: usize,
        split: bool,
    ) -> Result<(FeaturePca, Vec<Arc<Prepared>>), ViewerError> {
        if !(1..=RECENT_IMAGES).contains(&images) {
            return Err(ViewerError::OutOfRange(format!(
                "a PCA is fitted over 1 to {RECENT_IMAGES} images, not {images}"
            )));
        }
        let recent = self.recent.lock().expect("not poisoned").clone();
        if recent.is_empty() {
            return Err(ViewerError::NoImage);
        }
        let used = recent[recent.len().saturating_sub(images)..].to_vec();
        let inputs: Vec<&[f32]> = used.iter().map(|p| p.input.as_slice()).collect();
        let pca = self.classifier.feature_pca(&inputs, split).await;
        Ok((pca, used))
    }

    /// The kept image's forward pass step by step, and the input it saw.
    pub async fn walkthrough(
        &self,
        focus: &Focus,
    ) -> Result<(Walkthrough, Arc<Prepared>), ViewerError> {
        let c = &self.classifier.config;
        let n = c.num_patches();
        if focus.layer >= c.depth || focus.head >= c.num_heads {
            return Err(ViewerError::OutOfRange(format!(
                "layer {}, head {} does not exist: the model has {} layers of {} heads",
                focus.layer, focus.head, c.depth, c.num_heads
            )));
        }
        if let Some(p) = focus.patches.iter().find(|&&p| p >= n) {
            return Err(ViewerError::OutOfRange(format!(
                "patch {p} does not exist: the model has {n}"
            )));
        }
        let image = self.kept()?;
        let walk = self.classifier.walkthrough(&image.input, focus).await;
        Ok((walk, image))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Executor;
    use crate::model::VitConfig;
    use crate::preprocess::PreprocessConfig;
    use burn::tensor::Device;
    use pollster::FutureExt;

    /// The viewer answers about the image it kept, as a fresh classification
    /// of the same pixels would, and keeps it when a later image is refused.
    #[cfg(feature = "cpu")]
    #[test]
    fn the_viewer_answers_about_the_kept_image() {
        let config = VitConfig::new([32, 32], 8, 24, 2, 3, 48).with_num_classes(4);
        let device = Device::flex();
        device.seed(3);
        let model = config.init(&device);
        let pre = PreprocessConfig::timm_default(3, [32, 32]);
        let viewer = Viewer::new(Classifier::from_model(model, config, pre, &device));
        let focus = Focus {
            patches: vec![1],
            layer: 1,
            head: 0,
        };
        use pollster::block_on as block;
        assert_eq!(
            block(viewer.layer_attention(0)).unwrap_err(),
            ViewerError::NoImage
        );
        assert!(matches!(
            block(viewer.walkthrough(&focus)),
            Err(ViewerError::NoImage)
        ));

        let (w, h) = (40u32, 30u32);
        let rgba: Vec<u8> = (0..w * h * 4).map(|i| (i * 7 % 251) as u8).collect();
        let first = block(viewer.classify(&rgba, w, h, None, false)).unwrap();
        assert!(first.layer_attention.is_none());
        // A refused image (wrong buffer length) leaves the kept one in place.
        assert!(block(viewer.classify(&rgba[..10], w, h, None, false)).is_err());
        let fresh = viewer
            .classifier
            .classify(&rgba, w, h, Some(1))
            .block_on()
            .unwrap();
        let (layer, mean) = block(viewer.layer_attention(1)).unwrap();
        assert_eq!(Some(&layer), fresh.layer_attention.as_ref());
        assert_eq!(Some(&mean), fresh.layer_mean.as_ref());
        let t = 17;
        assert_eq!(mean.len(), t * t);
        let by_hand: Vec<f32> = (0..t * t)
            .map(|i| (0..3).map(|k| layer[k * t * t + i]).sum::<f32>() / 3.0)
            .collect();
        assert!(mean.iter().zip(&by_hand).all(|(a, b)| (a - b).abs() < 1e-6));
        let (walk, kept) = block(viewer.walkthrough(&focus)).unwrap();
        assert_eq!(kept.input, fresh.input);
        // The walk-through runs the layer it shows through Burn's
        // operations, classification all of them on the executor: the same
        // logits within float32 rounding.
        let largest = fresh.logits.iter().fold(1f32, |m, v| m.max(v.abs()));
        assert!(
            walk.logits
                .iter()
                .zip(&fresh.logits)
                .all(|(a, b)| (a - b).abs() <= 1e-5 * largest),
            "{:?} vs {:?}",
            walk.logits,
            fresh.logits
        );
        assert!(matches!(
            block(viewer.layer_attention(2)),
            Err(ViewerError::OutOfRange(_))
        ));
    }

    /// A classification that keeps its forward pass for relevance answers
    /// as one that does not, and the relevance map then drawn from it (the
    /// backward pass alone) is the one a fresh pass gives, bit for bit, on
    /// either executor; a later image, or a later classification that does
    /// not keep, drops it.
    #[cfg(feature = "cpu")]
    #[test]
    fn a_kept_forward_pass_gives_the_same_classification_and_maps() {
        use crate::model::testing::random_model;
        let config = VitConfig::new([32, 32], 8, 24, 2, 3, 48).with_num_classes(4);
        let device = Device::flex();
        let pre = PreprocessConfig::timm_default(3, [32, 32]);
        let (w, h) = (40u32, 30u32);
        let rgba: Vec<u8> = (0..w * h * 4).map(|i| (i * 7 % 251) as u8).collect();
        for fused in [true, false] {
            let mut classifier =
                Classifier::from_model(random_model(&config), config.clone(), pre.clone(), &device);
            if !fused {
                classifier.executor = Executor::Operations;
            }
            let viewer = Viewer::new(classifier);
            let plain = viewer
                .classify(&rgba, w, h, None, false)
                .block_on()
                .unwrap();
            let fresh = viewer.relevance(Some(2), 0.5).block_on().unwrap();
            let kept = viewer.classify(&rgba, w, h, None, true).block_on().unwrap();
            assert!(
                viewer.forward.lock().unwrap().is_some(),
                "fused {fused}: kept"
            );
            assert_eq!(kept.logits, plain.logits, "fused {fused}");
            assert_eq!(kept.attention.cls, plain.attention.cls, "fused {fused}");
            assert_eq!(kept.rollout, plain.rollout, "fused {fused}");
            let from_kept = viewer.relevance(Some(2), 0.5).block_on().unwrap();
            assert_eq!(from_kept.maps.chefer, fresh.maps.chefer, "fused {fused}");
            assert_eq!(
                from_kept.maps.grad_rollout, fresh.maps.grad_rollout,
                "fused {fused}"
            );
            assert_eq!(
                from_kept.maps.heads_map, fresh.maps.heads_map,
                "fused {fused}"
            );
            assert_eq!(from_kept.logits, fresh.logits, "fused {fused}");
            viewer
                .classify(&rgba, w, h, None, false)
                .block_on()
                .unwrap();
            assert!(
                viewer.forward.lock().unwrap().is_none(),
                "fused {fused}: dropped"
            );
        }
    }
}
