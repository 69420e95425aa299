//! The training loop's tests.

use super::*;
use burn::tensor::Distribution;

#[test]
fn configs_of_runs_before_distillation_still_load() {
    let dir = std::env::temp_dir().join(format!("vitrine-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut old = serde_json::to_value(TrainConfig::new().with_epochs(18)).unwrap();
    for key in ["teacher_epochs", "distill_weight", "distill_temperature"] {
        old.as_object_mut().unwrap().remove(key);
    }
    let path = dir.join("train_config.json");
    std::fs::write(&path, old.to_string()).unwrap();
    let cfg = read_config(&path).unwrap();
    assert_eq!((cfg.epochs, cfg.teacher_epochs), (18, 0));
    std::fs::write(&path, "{").unwrap();
    assert!(
        read_config(&path)
            .unwrap_err()
            .contains("train_config.json")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A step spread over workers is the one-thread step: the same loss,
/// logits and gradients (up to float rounding), also when the batch
/// does not split evenly, with and without the teacher.
#[test]
fn data_parallel_steps_match_the_one_thread_step() {
    let device = Device::flex().autodiff();
    device.seed(3);
    let cfg = TrainConfig::new()
        .with_depth(2)
        .with_embed_dim(24)
        .with_num_heads(2);
    let vit = cfg.vit().init(&device);
    let teacher = ConvTeacher::init(10, &Device::flex());
    let images = Tensor::<4>::random([7, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device);
    let targets = Tensor::from_data(TensorData::new(vec![0i64, 1, 2, 3, 4, 5, 9], [7]), &device);
    let batch = MnistBatch { images, targets };
    for taught in [false, true] {
        let trainee = |workers: usize| Trainee {
            vit: vit.clone(),
            label_smoothing: 0.1,
            teacher: taught.then(|| teacher.clone()),
            distill_weight: 0.5,
            distill_temperature: 2.0,
            workers: Arc::new(Workers::new(workers).unwrap()),
        };
        let one = trainee(1);
        let reference = TrainStep::step(&one, batch.clone());
        let values = |t: Tensor<2>| -> Vec<f32> { t.into_data().try_into_vec().unwrap() };
        let params = |m: &Trainee| {
            let b = &m.vit.blocks[1];
            [
                b.attn.qkv.weight.id,
                b.attn.proj.weight.id,
                b.mlp.fc2.weight.id,
                m.vit.patch_embed.proj.weight.id,
                m.vit.head.as_ref().expect("a classifier").weight.id,
            ]
        };
        for workers in [2, 3] {
            let model = trainee(workers);
            let out = TrainStep::step(&model, batch.clone());
            let (l0, l1) = (
                reference.item.loss.clone().into_scalar::<f32>(),
                out.item.loss.clone().into_scalar::<f32>(),
            );
            assert!((l0 - l1).abs() < 1e-5, "loss {l0} vs {l1}");
            let d = max_diff(
                &values(reference.item.output.clone()),
                &values(out.item.output.clone()),
            );
            assert!(d < 1e-5, "logits differ by {d}");
            for id in params(&model) {
                let g0 = values(reference.grads.get::<2>(id).expect("a gradient"));
                let g1 = values(out.grads.get::<2>(id).expect("a gradient"));
                let scale = g0.iter().fold(0f32, |m, v| m.max(v.abs()));
                assert!(scale > 0.0);
                let d = max_diff(&g0, &g1);
                assert!(
                    d <= 1e-4 * scale,
                    "{workers} workers, teacher {taught}: gradient differs by {d} (largest {scale})"
                );
            }
            assert_eq!(out.grads.len(), reference.grads.len());
            // And reproducible: the same step again gives the same bits.
            let again = TrainStep::step(&model, batch.clone());
            for id in params(&model) {
                assert_eq!(
                    values(out.grads.get::<2>(id).unwrap()),
                    values(again.grads.get::<2>(id).unwrap())
                );
            }
        }
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// Every parameter, attention's included, receives a non-zero gradient.
#[test]
fn every_parameter_gets_a_gradient() {
    let device = Device::flex().autodiff();
    let cfg = TrainConfig::new()
        .with_depth(1)
        .with_embed_dim(24)
        .with_num_heads(2);
    let model = Trainee {
        vit: cfg.vit().init(&device),
        label_smoothing: 0.1,
        teacher: Some(ConvTeacher::init(10, &Device::flex())),
        distill_weight: 0.5,
        distill_temperature: 2.0,
        workers: Arc::new(Workers::new(1).unwrap()),
    };
    let images = Tensor::<4>::random([4, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device);
    let targets = Tensor::from_data(TensorData::new(vec![0i64, 1, 2, 3], [4]), &device);
    let batch = MnistBatch { images, targets };
    // The teacher's share changes the training loss, not the validation one.
    let plain = model.output(batch.clone(), false).loss.into_scalar::<f32>();
    let out = model.output(batch, true);
    let taught = out.loss.clone().into_scalar::<f32>();
    assert!((plain - taught).abs() > 1e-3, "{plain} vs {taught}");
    let grads = out.loss.backward();
    let norm =
        |t: Option<Tensor<2>>| -> f32 { t.expect("a gradient").abs().sum().into_scalar::<f32>() };
    let b = &model.vit.blocks[0];
    for (name, g) in [
        ("qkv", norm(b.attn.qkv.weight.val().grad(&grads))),
        ("proj", norm(b.attn.proj.weight.val().grad(&grads))),
        ("fc1", norm(b.mlp.fc1.weight.val().grad(&grads))),
        (
            "patch",
            norm(model.vit.patch_embed.proj.weight.val().grad(&grads)),
        ),
        (
            "head",
            norm(
                model
                    .vit
                    .head
                    .as_ref()
                    .expect("a classifier")
                    .weight
                    .val()
                    .grad(&grads),
            ),
        ),
    ] {
        println!("{name}: |grad| = {g:e}");
        assert!(g > 0.0, "{name} has a zero gradient");
    }
    let pos: f32 = model
        .vit
        .pos_embed
        .val()
        .grad(&grads)
        .expect("pos grad")
        .abs()
        .sum()
        .into_scalar::<f32>();
    println!("pos_embed: |grad| = {pos:e}");
    assert!(pos > 0.0);
}
