//! Data parallelism across the machine's cores, for training.
//!
//! Burn's CPU backend parallelises inside each operation, and on this
//! model's small matrices (a batch of 32 is 1,600 tokens of width 96) that
//! barely pays (docs/training.md has the speeds). Splitting the batch
//! instead gives each core whole forward and backward passes: a
//! [`Workers`] set runs each share of a batch on a replica of the model, on
//! its own one-thread pool (so the backend's inner parallel loops stay on
//! that core), and adds up the gradients. Each share's loss is weighted by
//! its share of the batch, so the sum is the gradient of the whole batch's
//! mean loss: the same step as one thread takes, up to float rounding, and
//! as reproducible (every share is computed in order on one thread, and the
//! shares are added in a fixed order).
//!
//! Even one worker runs on a pool of its own: called from a thread outside
//! any pool, every backend operation that splits its work with rayon hands
//! it over to a pool thread and waits for it; called from the pool's own
//! thread, it runs inline, which trains faster even on one core.

use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::Tensor;
use burn::train::{ClassificationOutput, TrainOutput};

use super::data::MnistBatch;

/// One single-thread pool per worker.
pub struct Workers {
    pools: Vec<rayon::ThreadPool>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Workers({})", self.len())
    }
}

impl Workers {
    /// `n` workers (at least one).
    pub fn new(n: usize) -> Result<Self, String> {
        if n == 0 {
            return Err("the number of training threads must be at least 1".into());
        }
        let pools = (0..n)
            .map(|i| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .thread_name(move |_| format!("vitrine-train-{i}"))
                    .build()
                    .map_err(|e| format!("cannot start training thread {i}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { pools })
    }

    fn len(&self) -> usize {
        self.pools.len()
    }

    /// One training step of `model` on `batch`: `output` gives a share's
    /// loss and logits; the result carries the whole batch's gradients and
    /// its (detached) loss, logits and targets for the metrics.
    pub fn step<M, F>(
        &self,
        model: &M,
        batch: MnistBatch,
        output: F,
    ) -> TrainOutput<ClassificationOutput>
    where
        M: Module + Sync,
        F: Fn(&M, MnistBatch) -> ClassificationOutput + Sync,
    {
        let b = batch.targets.dims()[0];
        let n = self.len().min(b);
        if n <= 1 {
            return self.pools[0].install(|| {
                let out = output(model, batch);
                TrainOutput::new(model, out.loss.backward(), out)
            });
        }
        let device = batch.images.device();
        let targets = batch.targets.clone();
        let shares = split(batch, n);
        let run = |share: MnistBatch| {
            // A replica of its own: the same parameter ids, but leaves of
            // this thread's autodiff graph only.
            let replica = model.clone().fork(&device);
            let size = share.targets.dims()[0];
            let out = output(&replica, share);
            let weighted = out.loss.clone().mul_scalar(size as f64 / b as f64);
            let grads = GradientsParams::from_grads(weighted.backward(), &replica);
            (grads, out, size)
        };
        let results: Vec<_> = std::thread::scope(|scope| {
            let mut shares = shares.into_iter();
            let first = shares.next().expect("n ≥ 2 shares");
            let others: Vec<_> = shares
                .zip(&self.pools[1..])
                .map(|(share, pool)| scope.spawn(|| pool.install(|| run(share))))
                .collect();
            let mut results = vec![self.pools[0].install(|| run(first))];
            for handle in others {
                match handle.join() {
                    Ok(r) => results.push(r),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            results
        });
        let mut grads = GradientsAccumulator::<M>::new();
        let mut loss: Option<Tensor<1>> = None;
        let mut logits = Vec::with_capacity(n);
        for (g, out, size) in results {
            grads.accumulate(model, g);
            let share = out.loss.detach().mul_scalar(size as f64 / b as f64);
            loss = Some(match loss {
                Some(l) => l + share,
                None => share,
            });
            logits.push(out.output.detach());
        }
        TrainOutput {
            grads: grads.grads(),
            item: ClassificationOutput::new(
                loss.expect("n ≥ 2 shares"),
                Tensor::cat(logits, 0),
                targets,
            ),
        }
    }
}

/// `batch` cut into `n` consecutive shares whose sizes differ by at most one.
fn split(batch: MnistBatch, n: usize) -> Vec<MnistBatch> {
    let b = batch.targets.dims()[0];
    let mut start = 0;
    (0..n)
        .map(|i| {
            let len = b / n + usize::from(i < b % n);
            let share = MnistBatch {
                images: batch.images.clone().narrow(0, start, len),
                targets: batch.targets.clone().narrow(0, start, len),
            };
            start += len;
            share
        })
        .collect()
}
