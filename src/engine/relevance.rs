//! Why this class: a classifier's relevance maps of an image, from its own
//! forward pass or from one a classification kept; the budget they run in.

use burn::tensor::{Tensor, TensorData};

use super::{Classifier, ClassifyError, Relevance, Timings, finite, softmax, top_k};
use crate::backend::now_ms;
use crate::exec::KeptForward;

impl Classifier {
    /// Caps the working memory of a relevance pass (the browser's 4 GB of
    /// wasm memory); beyond it, [`Classifier::relevance_input`] refuses.
    pub fn with_relevance_budget(mut self, bytes: u64) -> Self {
        self.relevance_budget = bytes;
        self
    }

    /// About how many bytes a relevance pass holds at once: per layer, the
    /// attention, its gradient, Q, K, V, the MLP's pre-activation and the
    /// block's inputs (all kept until the maps are formed), the head-mean
    /// matrices and their read-back; and one layer's backward pass in
    /// flight.
    pub fn relevance_bytes(&self) -> u64 {
        let c = &self.config;
        let (l, h, t) = (c.depth as u64, c.num_heads as u64, c.num_tokens() as u64);
        let (d, hidden) = (c.embed_dim as u64, c.mlp_hidden as u64);
        let per_layer = 2 * h * t * t + t * (5 * d + hidden) + 3 * t * t;
        4 * (l * per_layer + 4 * h * t * t + t * hidden)
    }

    /// Class-specific relevance maps of a preprocessed input ([C, H, W]):
    /// gradient-weighted rollout, Chefer et al.'s relevance and each head's
    /// gradient-weighted attention, for `class` (the most probable one when
    /// `None`); see [`crate::explain::relevance`]. The forward pass is run
    /// again by the model's executor, keeping each block's values, and its
    /// backward pass once (the fused kernels' on the CPU, else the one
    /// written out in [`crate::explain::gradient`]); only the maps and, per
    /// layer, one [T, T] matrix are read back.
    ///
    /// Panics if `input` has the wrong length (as [`Classifier::classify_input`]).
    pub async fn relevance_input(
        &self,
        input: &[f32],
        class: Option<usize>,
        discard_ratio: f64,
    ) -> Result<Relevance, ClassifyError> {
        self.check_relevance(class, discard_ratio)?;
        let c = &self.config;
        let [h, w] = c.img_size;
        assert_eq!(input.len(), c.in_chans * h * w, "input length");
        let t0 = now_ms();
        let x = Tensor::<4>::from_data(
            TensorData::new(input.to_vec(), [1, c.in_chans, h, w]),
            &self.device,
        );
        let forward = self.executor.forward_keeping(&self.model, x);
        self.relevance_of(&forward, class, discard_ratio, t0).await
    }

    /// [`Classifier::relevance_input`] for the image whose forward pass
    /// [`Classifier::classify_input_keeping`] kept: only the backward pass
    /// and the maps run.
    pub async fn relevance_kept(
        &self,
        forward: &KeptForward,
        class: Option<usize>,
        discard_ratio: f64,
    ) -> Result<Relevance, ClassifyError> {
        self.check_relevance(class, discard_ratio)?;
        self.relevance_of(forward, class, discard_ratio, now_ms())
            .await
    }

    /// Refuses what a relevance map cannot be: of a backbone, of a class
    /// the model lacks, with a ratio outside [0, 1), past the budget.
    fn check_relevance(
        &self,
        class: Option<usize>,
        discard_ratio: f64,
    ) -> Result<(), ClassifyError> {
        let c = &self.config;
        if !c.has_head() {
            return Err(ClassifyError::NoClassifier);
        }
        if let Some(class) = class.filter(|&k| k >= c.num_classes) {
            return Err(ClassifyError::NoSuchClass {
                class,
                classes: c.num_classes,
            });
        }
        if !(0.0..1.0).contains(&discard_ratio) {
            return Err(ClassifyError::DiscardRatio(discard_ratio));
        }
        let needed = self.relevance_bytes();
        if needed > self.relevance_budget {
            return Err(ClassifyError::RelevanceTooLarge {
                needed,
                budget: self.relevance_budget,
            });
        }
        Ok(())
    }

    /// The maps of `class` (the top one when `None`) from a kept forward
    /// pass: the backward pass, the maps on the device, one read-back.
    async fn relevance_of(
        &self,
        forward: &KeptForward,
        class: Option<usize>,
        discard_ratio: f64,
        t0: f64,
    ) -> Result<Relevance, ClassifyError> {
        let c = &self.config;
        let logits_now = forward.logits().reshape([-1]);
        let read = |t: Tensor<1>| async move {
            t.into_data_async()
                .await
                .expect("read-back of relevance maps")
                .try_into_vec::<f32>()
                .expect("f32 outputs")
        };
        let (class, logits) = match class {
            Some(k) => (k, None),
            None => {
                let logits = read(logits_now.clone()).await;
                finite("logits", &logits)?; // before picking the top class of them
                (top_k(&logits, 1)[0].0, Some(logits))
            }
        };
        // The weights' transposes speed the backward pass up where the
        // budget holds them beside the pass itself.
        let transpose = self
            .relevance_bytes()
            .saturating_add(self.executor.transposed_bytes())
            <= self.relevance_budget;
        let tensors =
            self.executor
                .relevance_maps(&self.model, forward, class, c.norm_eps, transpose);
        let mut reads = Vec::with_capacity(2);
        if logits.is_none() {
            reads.push(logits_now);
        }
        reads.extend(tensors.on_device().cloned());
        #[cfg(not(target_arch = "wasm32"))]
        let _ = self.device.sync();
        let t1 = now_ms();
        let mut data = match reads.is_empty() {
            true => Vec::new(),
            false => read(Tensor::cat(reads, 0)).await,
        };
        let logits = match logits {
            Some(logits) => logits,
            None => {
                let rest = data.split_off(c.num_classes);
                std::mem::replace(&mut data, rest)
            }
        };
        finite("logits", &logits)?;
        finite("relevance", &data)?;
        let maps = tensors.finish(data, class, c.grid(), discard_ratio);
        for map in [&maps.grad_rollout, &maps.chefer, &maps.heads_map] {
            finite("relevance", map)?;
        }
        let t2 = now_ms();
        Ok(Relevance {
            probabilities: softmax(&logits),
            logits,
            maps,
            timings: Timings {
                preprocess: 0.0,
                forward: t1 - t0,
                readback: t2 - t1,
            },
        })
    }
}
