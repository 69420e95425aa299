//! Training vitrine's default model: the project's own ViT on Fashion-MNIST,
//! with Burn's autodiff on the CPU backend and burn-train's learner
//! (metrics, progress display, a checkpoint every epoch, resume).
//!
//! - [`data`]: Fashion-MNIST's IDX files, batches.
//! - [`distill`]: the convolutional teacher and the distillation loss.
//! - [`parallel`]: data-parallel workers on the CPU's cores.
//! - [`eval`]: accuracy and the confusion matrix.
//!
//! Recipe (DeiT-style, scaled down): AdamW, linear warm-up then cosine decay,
//! label smoothing, random ±2-pixel translations and horizontal flips.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use burn::config::Config;
use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::InMemDataset;
use burn::lr_scheduler::LrSchedulerConfig;
use burn::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::lr_scheduler::linear::LinearLrSchedulerConfig;
use burn::lr_scheduler::sequential::SequentialLrSchedulerConfig;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::AdamWConfig;
use burn::tensor::{Device, Tensor, TensorData};
use burn::train::checkpoint::KeepLastNCheckpoints;
use burn::train::metric::{AccuracyMetric, LearningRateMetric, LossMetric};
use burn::train::{
    ClassificationOutput, InferenceStep, Learner, LearnerModel, SupervisedTraining, TrainOutput,
    TrainStep,
};

pub mod data;
pub mod distill;
pub mod eval;
pub mod parallel;
mod progress;

use self::data::{MnistBatch, Split};
use self::distill::{ConvTeacher, TeacherTrainee};
use self::parallel::Workers;
use self::progress::LineRenderer;
use crate::model::{VisionTransformer, VitConfig};
use crate::preprocess::{CropMode, Interpolation, PhotoAdapt, PreprocessConfig};

/// Fashion-MNIST's pixel statistics (training split), for normalisation.
pub const MEAN: f32 = 0.2860;
pub const STD: f32 = 0.3530;

/// Everything that determines a training run.
#[derive(Config, Debug)]
pub struct TrainConfig {
    /// Token width D.
    #[config(default = 96)]
    pub embed_dim: usize,
    /// Encoder blocks.
    #[config(default = 4)]
    pub depth: usize,
    /// Heads (head width D/heads = 32).
    #[config(default = 3)]
    pub num_heads: usize,
    /// Patch side: 4 gives a 7×7 grid on 28×28 images.
    #[config(default = 4)]
    pub patch_size: usize,
    /// MLP width = mlp_ratio · D.
    #[config(default = 4)]
    pub mlp_ratio: usize,
    /// Training epochs (how long a run takes: docs/training.md).
    #[config(default = 18)]
    pub epochs: usize,
    /// Small batches learn more per epoch here, and run fastest per image on
    /// the CPU backend (they fit in cache): batch 32 beat 64 and 128 on both.
    #[config(default = 32)]
    pub batch_size: usize,
    /// Peak learning rate, reached after the warm-up.
    #[config(default = 1e-3)]
    pub lr: f64,
    #[config(default = 0.05)]
    pub weight_decay: f32,
    #[config(default = 1)]
    pub warmup_epochs: usize,
    #[config(default = 0.1)]
    pub label_smoothing: f32,
    /// Largest random translation, in pixels.
    #[config(default = 2)]
    pub max_shift: usize,
    /// Epochs of the convnet teacher trained before the ViT (0: no
    /// distillation). See `distill`.
    #[config(default = 0)]
    pub teacher_epochs: usize,
    /// Share of the student's loss that is the teacher's (the rest is the
    /// labels' cross-entropy).
    #[config(default = 0.5)]
    pub distill_weight: f32,
    /// Temperature of the teacher's and the student's softmax in that share.
    #[config(default = 2.0)]
    pub distill_temperature: f32,
    /// Test images used for the per-epoch validation (the full set is for `vitrine eval`).
    #[config(default = 2000)]
    pub valid_images: usize,
    #[config(default = 42)]
    pub seed: u64,
}

impl TrainConfig {
    /// The architecture this run trains.
    pub fn vit(&self) -> VitConfig {
        VitConfig::new(
            [28, 28],
            self.patch_size,
            self.embed_dim,
            self.depth,
            self.num_heads,
            self.mlp_ratio * self.embed_dim,
        )
        .with_in_chans(1)
        .with_num_classes(10)
    }

    /// The preprocessing shipped with the model: Fashion-MNIST's own statistics.
    pub fn preprocess(&self) -> PreprocessConfig {
        PreprocessConfig {
            input_size: [1, 28, 28],
            interpolation: Interpolation::Bilinear,
            crop_pct: 1.0,
            crop_mode: CropMode::Center,
            mean: vec![MEAN],
            std: vec![STD],
            // Photos are not Fashion-MNIST: dark-on-light and loosely framed.
            photo: PhotoAdapt {
                invert_light_background: true,
                fit_object: true,
            },
            ..PreprocessConfig::timm_default(1, [28, 28])
        }
    }
}

/// The model plus its training loss setting (burn-train steps are methods of the model).
#[derive(Module, Debug)]
pub struct Trainee {
    pub vit: VisionTransformer,
    label_smoothing: f32,
    /// The teacher, on the plain CPU device: neither trained nor saved here.
    /// (Skipped fields keep the checkpoints' layout that of a plain run.)
    #[module(skip)]
    teacher: Option<ConvTeacher>,
    #[module(skip)]
    distill_weight: f32,
    #[module(skip)]
    distill_temperature: f32,
    /// The cores a training step is spread over.
    #[module(skip)]
    workers: Arc<Workers>,
}

impl Trainee {
    /// The loss of one batch: the labels' cross-entropy, mixed with the
    /// teacher's soft targets when training with a teacher.
    fn output(&self, batch: MnistBatch, training: bool) -> ClassificationOutput {
        let logits = self.vit.forward(batch.images.clone());
        let smoothing = (self.label_smoothing > 0.0).then_some(self.label_smoothing);
        let mut loss = CrossEntropyLossConfig::new()
            .with_smoothing(smoothing)
            .init(&logits.device())
            .forward(logits.clone(), batch.targets.clone());
        if let (Some(teacher), true) = (&self.teacher, training) {
            // The teacher sees exactly the student's (augmented) images.
            let taught = teacher.forward(batch.images.inner()).autodiff();
            let soft =
                distill::soft_cross_entropy(logits.clone(), taught, self.distill_temperature);
            let w = self.distill_weight as f64;
            loss = loss.mul_scalar(1.0 - w) + soft.mul_scalar(w);
        }
        ClassificationOutput::new(loss, logits, batch.targets)
    }
}

impl TrainStep for Trainee {
    type Input = MnistBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: MnistBatch) -> TrainOutput<ClassificationOutput> {
        self.workers
            .step(self, batch, |model, share| model.output(share, true))
    }
}

impl InferenceStep for Trainee {
    type Input = MnistBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: MnistBatch) -> ClassificationOutput {
        self.output(batch, false)
    }
}

/// The items are indices into a split; the batcher reads the pixels.
fn indices(n: usize) -> InMemDataset<usize> {
    InMemDataset::new((0..n).collect())
}

/// SplitMix64: a tiny, well-mixed generator for per-image augmentation draws.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Turns indices into normalised tensors, augmenting when training.
struct MnistBatcher {
    split: Arc<Split>,
    max_shift: usize,
    augment: bool,
    seed: u64,
    /// Batches made so far: with one loader worker this makes the draws reproducible.
    calls: AtomicU64,
}

/// Shifts by (dx, dy) with black fill, optionally mirrored: the augmentation of one image.
pub fn augment(src: &[u8], rows: usize, cols: usize, dx: i64, dy: i64, flip: bool) -> Vec<u8> {
    let mut out = vec![0u8; rows * cols];
    for y in 0..rows {
        for x in 0..cols {
            let sx = if flip {
                cols as i64 - 1 - x as i64
            } else {
                x as i64
            } + dx;
            let sy = y as i64 + dy;
            if sx >= 0 && sy >= 0 && (sx as usize) < cols && (sy as usize) < rows {
                out[y * cols + x] = src[sy as usize * cols + sx as usize];
            }
        }
    }
    out
}

impl Batcher<usize, MnistBatch> for MnistBatcher {
    fn batch(&self, items: Vec<usize>, device: &Device) -> MnistBatch {
        let (rows, cols) = (self.split.rows, self.split.cols);
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let mut pixels = Vec::with_capacity(items.len() * rows * cols);
        let mut labels = Vec::with_capacity(items.len());
        for &i in &items {
            let src = self.split.image(i);
            let img = if self.augment {
                let r = splitmix(self.seed ^ splitmix(call.wrapping_mul(1 << 20) ^ i as u64));
                let span = 2 * self.max_shift as u64 + 1;
                let dx = (r % span) as i64 - self.max_shift as i64;
                let dy = ((r >> 16) % span) as i64 - self.max_shift as i64;
                augment(src, rows, cols, dx, dy, (r >> 32) & 1 == 1)
            } else {
                src.to_vec()
            };
            pixels.extend(img.iter().map(|&p| (p as f32 / 255.0 - MEAN) / STD));
            labels.push(self.split.labels[i] as i64);
        }
        let b = items.len();
        MnistBatch {
            images: Tensor::from_data(TensorData::new(pixels, [b, 1, rows, cols]), device),
            targets: Tensor::from_data(TensorData::new(labels, [b]), device),
        }
    }
}

/// The newest epoch checkpoint in `dir/checkpoint`, if any.
fn last_checkpoint(dir: &Path) -> Option<usize> {
    std::fs::read_dir(dir.join("checkpoint"))
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_prefix("model-")?
                .strip_suffix(".bpk")?
                .parse()
                .ok()
        })
        .max()
}

/// Trains (resuming from the last epoch checkpoint in `out_dir`, if any),
/// each step spread over `threads` cores (see `parallel`), and returns the
/// trained model on the plain CPU device.
pub fn train(
    cfg: &TrainConfig,
    data_dir: &Path,
    out_dir: &Path,
    threads: usize,
) -> Result<VisionTransformer, String> {
    let workers = Arc::new(Workers::new(threads)?);
    let train_split = Arc::new(data::load_split(data_dir, "train").map_err(|e| e.to_string())?);
    let test_split = Arc::new(data::load_split(data_dir, "t10k").map_err(|e| e.to_string())?);
    std::fs::create_dir_all(out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    cfg.save(out_dir.join("train_config.json"))
        .map_err(|e| e.to_string())?;
    let splits = (&train_split, &test_split);

    let device = Device::flex().autodiff();
    let teacher = if cfg.teacher_epochs > 0 {
        eprintln!(
            "training the convnet teacher for {} epochs (distillation weight {}, temperature {})",
            cfg.teacher_epochs, cfg.distill_weight, cfg.distill_temperature
        );
        device.seed(cfg.seed);
        // The teacher keeps the default regularisation whatever the student's,
        // so runs that differ only in the student's share one teacher.
        let defaults = TrainConfig::new();
        let teacher_cfg = cfg
            .clone()
            .with_weight_decay(defaults.weight_decay)
            .with_label_smoothing(defaults.label_smoothing);
        let trainee = TeacherTrainee::new(
            ConvTeacher::init(10, &device),
            teacher_cfg.label_smoothing,
            workers.clone(),
        );
        let trained = fit(
            trainee,
            &teacher_cfg,
            cfg.teacher_epochs,
            splits,
            &out_dir.join("teacher"),
        )?;
        eprintln!("training the ViT with the teacher");
        Some(trained.cnn.fork(&Device::flex()))
    } else {
        None
    };

    device.seed(cfg.seed);
    let vit = cfg.vit();
    vit.validate()?;
    let model = Trainee {
        vit: vit.init(&device),
        label_smoothing: cfg.label_smoothing,
        teacher,
        distill_weight: cfg.distill_weight,
        distill_temperature: cfg.distill_temperature,
        workers,
    };
    let trained = fit(model, cfg, cfg.epochs, splits, out_dir)?;
    Ok(trained.vit.fork(&Device::flex()))
}

/// Runs burn-train's learner on `model` for `epochs` (resuming from the last
/// epoch checkpoint in `out_dir`, if any) with the run's schedule, data and
/// metrics; returns the trained model.
fn fit<M>(
    model: M,
    cfg: &TrainConfig,
    epochs: usize,
    (train_split, test_split): (&Arc<Split>, &Arc<Split>),
    out_dir: &Path,
) -> Result<M, String>
where
    M: LearnerModel
        + TrainStep<Input = MnistBatch, Output = ClassificationOutput>
        + InferenceStep<Input = MnistBatch, Output = ClassificationOutput>,
{
    std::fs::create_dir_all(out_dir)
        .map_err(|e| format!("cannot create {}: {e}", out_dir.display()))?;
    let steps_per_epoch = train_split.len().div_ceil(cfg.batch_size);
    let warmup = (cfg.warmup_epochs * steps_per_epoch).max(1);
    let total = epochs * steps_per_epoch;
    let scheduler = SequentialLrSchedulerConfig::new(
        vec![
            LrSchedulerConfig::Linear(LinearLrSchedulerConfig::new(cfg.lr / 100.0, cfg.lr, warmup)),
            LrSchedulerConfig::Cosine(
                CosineAnnealingLrSchedulerConfig::new(cfg.lr, total.saturating_sub(warmup).max(1))
                    .with_min_lr(cfg.lr / 100.0),
            ),
        ],
        vec![warmup],
    )
    .init()?;
    let optim = AdamWConfig::new()
        .with_weight_decay(cfg.weight_decay)
        .init();
    let learner = Learner::new(model, optim, scheduler);

    let batcher = |split: &Arc<Split>, augment| MnistBatcher {
        split: split.clone(),
        max_shift: cfg.max_shift,
        augment,
        seed: cfg.seed,
        calls: AtomicU64::new(0),
    };
    let train_loader = DataLoaderBuilder::new(batcher(train_split, true))
        .batch_size(cfg.batch_size)
        .shuffle(cfg.seed)
        .num_workers(1)
        .build(indices(train_split.len()));
    let valid_loader = DataLoaderBuilder::new(batcher(test_split, false))
        .batch_size(500)
        .num_workers(1)
        .build(indices(cfg.valid_images.min(test_split.len())));

    let mut run = SupervisedTraining::new(out_dir, train_loader, valid_loader)
        .num_epochs(epochs)
        .with_default_checkpointers()
        .with_checkpointing_strategy(KeepLastNCheckpoints::new(2))
        .metric_train_numeric(AccuracyMetric::new())
        .metric_valid_numeric(AccuracyMetric::new())
        .metric_train_numeric(LossMetric::new())
        .metric_valid_numeric(LossMetric::new())
        .metric_train_numeric(LearningRateMetric::new())
        .renderer(Box::new(LineRenderer::new()))
        .summary();
    if let Some(epoch) = last_checkpoint(out_dir) {
        eprintln!(
            "resuming from the checkpoint of epoch {epoch} in {}",
            out_dir.display()
        );
        run = run.checkpoint(epoch);
    }
    Ok(run.launch(learner).model)
}

/// The model saved by a run's epoch checkpoint (the newest when `epoch` is
/// `None`), on the plain CPU device, with the run's config.
pub fn load_epoch(
    run_dir: &Path,
    epoch: Option<usize>,
) -> Result<(VisionTransformer, TrainConfig, usize), String> {
    let cfg_path = run_dir.join("train_config.json");
    let cfg = read_config(&cfg_path)?;
    let epoch = match epoch.or_else(|| last_checkpoint(run_dir)) {
        Some(e) => e,
        None => {
            return Err(format!(
                "no epoch checkpoint in {}",
                run_dir.join("checkpoint").display()
            ));
        }
    };
    let path = run_dir
        .join("checkpoint")
        .join(format!("model-{epoch}.bpk"));
    let record = burn::store::ModuleRecord::load(path.clone())
        .map_err(|e| format!("cannot read {}: {e:?}", path.display()))?;
    let device = Device::flex();
    let model = Trainee {
        vit: cfg.vit().init(&device),
        label_smoothing: cfg.label_smoothing,
        teacher: None,
        distill_weight: cfg.distill_weight,
        distill_temperature: cfg.distill_temperature,
        workers: Arc::new(Workers::new(1)?),
    }
    .load_record(record);
    Ok((model.vit, cfg, epoch))
}

/// A run's `train_config.json`; settings it lacks (runs from before
/// distillation existed) get their defaults (no teacher).
fn read_config(path: &Path) -> Result<TrainConfig, String> {
    let cannot = |e: &dyn std::fmt::Display| format!("cannot read {}: {e}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| cannot(&e))?;
    let mut value: serde_json::Value = serde_json::from_str(&text).map_err(|e| cannot(&e))?;
    let defaults = serde_json::to_value(TrainConfig::new()).map_err(|e| cannot(&e))?;
    if let (Some(fields), serde_json::Value::Object(defaults)) = (value.as_object_mut(), defaults) {
        for (key, default) in defaults {
            fields.entry(key).or_insert(default);
        }
    }
    serde_json::from_value(value).map_err(|e| cannot(&e))
}

/// Writes `model` in the timm hub layout (f16 `model.safetensors` and
/// `config.json` with the preprocessing and labels) into `dest`.
pub fn write_timm_model(
    model: &VisionTransformer,
    cfg: &TrainConfig,
    dest: &Path,
) -> Result<(), String> {
    let labels: Vec<String> = data::LABELS.iter().map(|s| s.to_string()).collect();
    write_timm_dir(model, &cfg.vit(), &cfg.preprocess(), &labels, dest)
}

/// `model` as a timm-layout folder (f16 `model.safetensors` and `config.json`).
pub fn write_timm_dir(
    model: &VisionTransformer,
    config: &crate::VitConfig,
    preprocess: &crate::preprocess::PreprocessConfig,
    labels: &[String],
    dest: &Path,
) -> Result<(), String> {
    std::fs::create_dir_all(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    let tensors = crate::checkpoint::timm_tensors(model);
    let json = crate::checkpoint::timm_config_json(config, preprocess, labels);
    std::fs::write(
        dest.join("model.safetensors"),
        crate::checkpoint::safetensors::serialize(&tensors, true),
    )
    .and_then(|_| {
        std::fs::write(
            dest.join("config.json"),
            serde_json::to_string_pretty(&json).expect("serialisable") + "\n",
        )
    })
    .map_err(|e| format!("cannot write {}: {e}", dest.display()))
}

/// Where `vitrine train` keeps its checkpoints by default.
pub fn default_out_dir() -> PathBuf {
    PathBuf::from("train-output/fashion-vit")
}

#[cfg(test)]
mod tests;
