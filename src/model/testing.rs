//! Small models of every kind, for the tests of the code that runs them.

use burn::tensor::Tensor;

/// A small model of each kind vitrine runs: plain, layer scale with QK
/// norm, QuickGELU with a norm before the blocks, registers with
/// avgmax pooling and fc_norm, no class token with average pooling,
/// max pooling, the class token beside the mean, distilled DeiT, and
/// no bias on the query/key/value projection.
pub fn variants() -> Vec<(&'static str, crate::model::VitConfig)> {
    use crate::model::{Pool, VitConfig};
    let base = || VitConfig::new([16, 16], 4, 16, 2, 2, 32).with_num_classes(3);
    let mut scaled = base();
    scaled.init_values = Some(0.5);
    scaled.qk_norm = true;
    let mut clip = base();
    clip.quick_gelu = true;
    clip.pre_norm = true;
    let mut avgmax = base();
    avgmax.reg_tokens = 2;
    avgmax.global_pool = Pool::AvgMax;
    avgmax.fc_norm = true;
    let mut gap = base();
    gap.class_token = false;
    gap.global_pool = Pool::Avg;
    gap.fc_norm = true;
    let mut max = base();
    max.global_pool = Pool::Max;
    let mut both = base();
    both.global_pool = Pool::TokenAndAvg;
    let mut bare = base();
    bare.qkv_bias = false;
    let mut deit = base();
    deit.distilled = true;
    deit.global_pool = Pool::TokenAndDistillation;
    vec![
        ("plain", base()),
        ("layer scale, QK norm", scaled),
        ("QuickGELU, pre-norm", clip),
        ("registers, avgmax, fc_norm", avgmax),
        ("no class token, avg", gap),
        ("max", max),
        ("token and avg", both),
        ("distilled", deit),
        ("no QKV bias", bare),
    ]
}

/// A model of `config` with every weight random (LayerNorms and layer
/// scales too, so that a wrong formula cannot hide behind ones and zeros).
pub fn random_model(config: &crate::model::VitConfig) -> crate::model::VisionTransformer {
    use burn::module::{Module, ModuleMapper, Param};
    use burn::tensor::{Device, Distribution};
    struct Jitter;
    impl ModuleMapper for Jitter {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|t| {
                let noise = Tensor::random(t.shape(), Distribution::Normal(0.0, 0.3), &t.device());
                t + noise
            })
        }
    }
    config.init(&Device::flex()).map(&mut Jitter)
}
