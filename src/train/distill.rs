//! Knowledge distillation (DeiT, Touvron et al. 2021, §5): a small convnet,
//! trained first, teaches the ViT.
//!
//! On a small dataset a ViT has to learn from examples what a convnet has by
//! construction (nearby pixels belong together); the convnet's predictions
//! on every augmented batch hand that knowledge over. Here the student's
//! loss mixes the usual cross-entropy with the cross-entropy against the
//! teacher's softened probabilities (Hinton et al. 2015), on the very images
//! the student sees. The teacher is only used for training: the shipped
//! model is the ViT alone, in timm's layout.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor, activation};
use burn::train::{ClassificationOutput, InferenceStep, TrainOutput, TrainStep};

use std::sync::Arc;

use super::data::MnistBatch;
use super::parallel::Workers;

/// Two 3×3 convolutions (32 and 64 channels), each followed by ReLU and 2×2
/// max-pooling, then a 128-wide hidden layer: a classic small Fashion-MNIST
/// convnet, about a fifth of the ViT's cost per image.
#[derive(Module, Debug)]
pub struct ConvTeacher {
    conv1: Conv2d,
    conv2: Conv2d,
    pool: MaxPool2d,
    fc1: Linear,
    fc2: Linear,
}

impl ConvTeacher {
    /// Random initialisation for 28×28 grayscale images and `classes` outputs.
    pub fn init(classes: usize, device: &Device) -> Self {
        Self {
            conv1: Conv2dConfig::new([1, 32], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device),
            conv2: Conv2dConfig::new([32, 64], [3, 3])
                .with_padding(PaddingConfig2d::Same)
                .init(device),
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
            fc1: LinearConfig::new(64 * 7 * 7, 128).init(device),
            fc2: LinearConfig::new(128, classes).init(device),
        }
    }

    /// [B, 1, 28, 28] → logits [B, classes].
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let x = self.pool.forward(activation::relu(self.conv1.forward(x)));
        let x = self.pool.forward(activation::relu(self.conv2.forward(x)));
        let [b, c, h, w] = x.dims();
        let x = x.reshape([b, c * h * w]);
        self.fc2.forward(activation::relu(self.fc1.forward(x)))
    }
}

/// The teacher with its training loss, as burn-train's learner wants it.
#[derive(Module, Debug)]
pub struct TeacherTrainee {
    pub cnn: ConvTeacher,
    label_smoothing: f32,
    /// The cores a training step is spread over.
    #[module(skip)]
    workers: Arc<Workers>,
}

impl TeacherTrainee {
    pub fn new(cnn: ConvTeacher, label_smoothing: f32, workers: Arc<Workers>) -> Self {
        Self {
            cnn,
            label_smoothing,
            workers,
        }
    }

    fn output(&self, batch: MnistBatch) -> ClassificationOutput {
        let logits = self.cnn.forward(batch.images);
        let smoothing = (self.label_smoothing > 0.0).then_some(self.label_smoothing);
        let loss = CrossEntropyLossConfig::new()
            .with_smoothing(smoothing)
            .init(&logits.device())
            .forward(logits.clone(), batch.targets.clone());
        ClassificationOutput::new(loss, logits, batch.targets)
    }
}

impl TrainStep for TeacherTrainee {
    type Input = MnistBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: MnistBatch) -> TrainOutput<ClassificationOutput> {
        self.workers
            .step(self, batch, |model, share| model.output(share))
    }
}

impl InferenceStep for TeacherTrainee {
    type Input = MnistBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: MnistBatch) -> ClassificationOutput {
        self.output(batch)
    }
}

/// Cross-entropy of the student's softened distribution against the
/// teacher's, both at `temperature`, scaled by temperature² so that its
/// gradients keep their size as the temperature changes (Hinton et al.):
/// mean over the batch of −T²·Σ softmax(t/T)·log_softmax(s/T). The teacher's
/// logits are constants.
pub fn soft_cross_entropy(student: Tensor<2>, teacher: Tensor<2>, temperature: f32) -> Tensor<1> {
    let t = temperature as f64;
    let target = activation::softmax(teacher.div_scalar(t), 1);
    let log_p = activation::log_softmax(student.div_scalar(t), 1);
    let [b, _] = log_p.dims();
    (target * log_p)
        .sum()
        .mul_scalar(-(t * t) / b as f64)
        .reshape([1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData};

    #[test]
    fn teacher_shapes() {
        let device = Device::flex();
        let cnn = ConvTeacher::init(10, &device);
        let x = Tensor::<4>::random([3, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device);
        assert_eq!(cnn.forward(x).dims(), [3, 10]);
    }

    #[test]
    fn soft_cross_entropy_is_smallest_when_the_student_agrees() {
        let device = Device::flex();
        let teacher = Tensor::<2>::from_data(
            TensorData::new(vec![2.0f32, 0.5, -1.0, 0.0, 1.0, 3.0], [2, 3]),
            &device,
        );
        let loss = |s: Tensor<2>| soft_cross_entropy(s, teacher.clone(), 2.0).into_scalar::<f32>();
        let same = loss(teacher.clone());
        let other = loss(teacher.clone().flip([1]));
        let shifted = loss(teacher.clone().add_scalar(5.0));
        assert!(same < other, "{same} vs {other}");
        // Softmax ignores a constant shift of the logits.
        assert!((same - shifted).abs() < 1e-5, "{same} vs {shifted}");
        // With T = 2, the value is T² times the teacher's entropy at T.
        let p: Vec<f32> = activation::softmax(teacher.div_scalar(2.0), 1)
            .into_data()
            .try_into_vec()
            .unwrap();
        let entropy: f32 = -p.iter().map(|q| q * q.ln()).sum::<f32>() / 2.0;
        assert!(
            (same - 4.0 * entropy).abs() < 1e-4,
            "{same} vs {}",
            4.0 * entropy
        );
    }

    #[test]
    fn the_teacher_learns() {
        use burn::optim::{AdamWConfig, GradientsParams};
        let device = Device::flex().autodiff();
        device.seed(7);
        let mut model = TeacherTrainee::new(
            ConvTeacher::init(10, &device),
            0.0,
            Arc::new(Workers::new(1).unwrap()),
        );
        let mut optim = AdamWConfig::new().init();
        let images = Tensor::<4>::random([8, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device);
        let targets =
            Tensor::from_data(TensorData::new((0..8i64).collect::<Vec<_>>(), [8]), &device);
        let batch = MnistBatch { images, targets };
        let first = model.output(batch.clone()).loss.into_scalar::<f32>();
        for _ in 0..20 {
            let out = model.output(batch.clone());
            let grads = GradientsParams::from_grads(out.loss.backward(), &model);
            model = optim.step(1e-3, model, grads);
        }
        let last = model.output(batch).loss.into_scalar::<f32>();
        assert!(last < first * 0.5, "loss {first} → {last}");
    }
}
