//! Architecture hyper-parameters of a ViT, and presets for timm's standard
//! names (`timm/models/vision_transformer.py`, `deit.py`).

use burn::config::Config;

/// The largest value any one size of a config may take (image side, patch,
/// channels, width, depth, heads, MLP width, classes): far above every
/// published ViT, and small enough that products of two sizes cannot overflow.
pub const MAX_SIZE: usize = 1 << 20;

/// The most values one layer's attention [heads, tokens, tokens] may hold:
/// 2³⁰ f32 values, 4.3 GB (ViT-L/14 at 518 px, DINOv2's largest input, needs
/// 16 × 1370² = 30 million).
pub const MAX_ATTENTION_VALUES: u64 = 1 << 30;

/// The most values the model's input [channels, height, width] may hold:
/// 2²⁸ (e.g. 3 × 9459 × 9459).
pub const MAX_INPUT_VALUES: u64 = 1 << 28;

/// What the head sees of the final tokens [B, T, D] (timm `global_pool`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    /// The class token (timm `token`, transformers' ViT and DeiT).
    Token,
    /// The mean of the patch tokens (timm `avg`).
    Avg,
    /// The largest value of each channel over the patch tokens (timm `max`).
    Max,
    /// Half the mean plus half the maximum over the patch tokens (timm `avgmax`).
    AvgMax,
    /// Distilled DeiT: the class token through `head` and the distillation
    /// token through `head_dist`, averaged (timm at inference;
    /// transformers' `DeiTForImageClassificationWithTeacher`); a backbone
    /// averages the two tokens.
    TokenAndDistillation,
    /// The class token and the mean of the patch tokens side by side, 2·D
    /// (transformers' `Dinov2ForImageClassification`).
    TokenAndAvg,
}

impl Pool {
    /// timm's name for it, where timm has one.
    pub fn timm_name(self) -> &'static str {
        match self {
            Pool::Token | Pool::TokenAndDistillation => "token",
            Pool::Avg => "avg",
            Pool::Max => "max",
            Pool::AvgMax => "avgmax",
            Pool::TokenAndAvg => "token+avg",
        }
    }
}

/// Everything that fixes the shapes of a Vision Transformer.
#[derive(Config, Debug, PartialEq)]
pub struct VitConfig {
    /// Input [height, width] in pixels; each a multiple of `patch_size`.
    pub img_size: [usize; 2],
    /// Side P of the square patches.
    pub patch_size: usize,
    /// Image channels C: 3 for RGB, 1 for grayscale.
    #[config(default = 3)]
    pub in_chans: usize,
    /// Token width D.
    pub embed_dim: usize,
    /// Number of encoder blocks L.
    pub depth: usize,
    /// Attention heads per block; must divide `embed_dim`.
    pub num_heads: usize,
    /// Hidden width of each MLP (timm: `embed_dim * mlp_ratio`, HF: `intermediate_size`).
    pub mlp_hidden: usize,
    /// Whether the query/key/value projection has a bias (timm and HF default: yes).
    #[config(default = true)]
    pub qkv_bias: bool,
    /// LayerNorm epsilon: timm uses 1e-6, transformers 1e-12.
    #[config(default = 1e-6)]
    pub norm_eps: f64,
    /// Layer scale (CaiT; timm `init_values`, DeiT III, DINOv2): each
    /// residual branch multiplied by a learned per-channel factor
    /// (`ls1.gamma`, `ls2.gamma`). The value is timm's initial one.
    #[config(default = "None")]
    pub init_values: Option<f64>,
    /// A LayerNorm over each head's queries and keys (timm `qk_norm`).
    #[config(default = false)]
    pub qk_norm: bool,
    /// A LayerNorm after the position embeddings, before the blocks (timm
    /// `pre_norm`, `norm_pre`; CLIP's image towers), and then no bias on the
    /// patch projection, as timm builds it.
    #[config(default = false)]
    pub pre_norm: bool,
    /// The MLP's activation is QuickGELU, x·σ(1.702x) (OpenAI's CLIP),
    /// instead of the exact GELU.
    #[config(default = false)]
    pub quick_gelu: bool,
    /// The position embeddings cover the patches only, and the class token
    /// is prepended after they are added (timm `no_embed_class`: DeiT III,
    /// DINOv2 with registers).
    #[config(default = false)]
    pub no_embed_class: bool,
    /// A learned class token first in the sequence (timm `class_token`;
    /// without one, `*_gap_*` models pool the patch tokens).
    #[config(default = true)]
    pub class_token: bool,
    /// Learned register tokens after the class token, which take part in
    /// attention and are then dropped ("Vision Transformers Need
    /// Registers", Darcet et al. 2024; timm `reg_tokens`).
    #[config(default = 0)]
    pub reg_tokens: usize,
    /// A distillation token after the class token (DeiT, Touvron et al.
    /// 2021; timm `dist_token`, transformers `distillation_token`).
    #[config(default = false)]
    pub distilled: bool,
    /// What the head sees of the final tokens.
    #[config(default = "Pool::Token")]
    pub global_pool: Pool,
    /// A LayerNorm after pooling (timm `fc_norm`) in place of the final
    /// norm over every token.
    #[config(default = false)]
    pub fc_norm: bool,
    /// Number of output classes of the linear head; 0 for a backbone
    /// without one (timm's `num_classes=0`, transformers' `ViTModel`), whose
    /// output is the class token's features.
    #[config(default = 1000)]
    pub num_classes: usize,
}

impl VitConfig {
    /// Patch grid [rows, cols].
    pub fn grid(&self) -> [usize; 2] {
        [
            self.img_size[0] / self.patch_size,
            self.img_size[1] / self.patch_size,
        ]
    }

    /// Tokens before the patches: the class token, the distillation token
    /// and the registers, in that order, those the model has.
    pub fn num_prefix_tokens(&self) -> usize {
        usize::from(self.class_token) + usize::from(self.distilled) + self.reg_tokens
    }

    /// Tokens T in the sequence: the prefix tokens and the N patches.
    pub fn num_tokens(&self) -> usize {
        self.num_prefix_tokens() + self.num_patches()
    }

    /// Rows of the position embedding: N, plus the prefix tokens unless
    /// `no_embed_class` (timm `embed_len`).
    pub fn pos_embed_len(&self) -> usize {
        if self.no_embed_class {
            self.num_patches()
        } else {
            self.num_tokens()
        }
    }

    /// Width of the head's input: D, or 2·D for [`Pool::TokenAndAvg`].
    pub fn pooled_dim(&self) -> usize {
        match self.global_pool {
            Pool::TokenAndAvg => 2 * self.embed_dim,
            _ => self.embed_dim,
        }
    }

    /// Number of patches N.
    pub fn num_patches(&self) -> usize {
        let [r, c] = self.grid();
        r * c
    }

    /// Width of one attention head, D / heads (64 in the paper's models).
    pub fn head_dim(&self) -> usize {
        self.embed_dim / self.num_heads
    }

    /// Whether the model has a classifier head (a backbone has none).
    pub fn has_head(&self) -> bool {
        self.num_classes > 0
    }

    /// Length of the model's output per image: the class scores, or a
    /// backbone's pooled features.
    pub fn outputs(&self) -> usize {
        if self.has_head() {
            self.num_classes
        } else {
            self.pooled_dim()
        }
    }

    /// Length P·P·C of one flattened patch.
    pub fn patch_len(&self) -> usize {
        self.patch_size * self.patch_size * self.in_chans
    }

    /// Multiply-adds of one image's forward pass in its matrix products:
    /// the patch projection, each block's query/key/value, attention's
    /// scores and mixing, output projection and MLP, and the head (the
    /// "17.6 G" usually quoted for ViT-B/16). What a benchmark divides by
    /// a time to get the rate it compares with the machine's ceiling.
    pub fn multiply_adds(&self) -> u64 {
        let (t, d, h) = (
            self.num_tokens() as u64,
            self.embed_dim as u64,
            self.mlp_hidden as u64,
        );
        let block = t * d * 3 * d + 2 * t * t * d + t * d * d + 2 * t * d * h;
        self.num_patches() as u64 * self.patch_len() as u64 * d
            + self.depth as u64 * block
            + self.pooled_dim() as u64 * self.num_classes as u64
    }

    /// Checks the relations between fields that shapes depend on, and
    /// refuses, from the numbers alone, a model too large to run: any size
    /// over [`MAX_SIZE`], or attention over [`MAX_ATTENTION_VALUES`].
    pub fn validate(&self) -> Result<(), String> {
        let all = [
            ("img_size[0]", self.img_size[0]),
            ("img_size[1]", self.img_size[1]),
            ("patch_size", self.patch_size),
            ("in_chans", self.in_chans),
            ("embed_dim", self.embed_dim),
            ("depth", self.depth),
            ("num_heads", self.num_heads),
            ("mlp_hidden", self.mlp_hidden),
            ("num_classes", self.num_classes),
            ("reg_tokens", self.reg_tokens),
        ];
        // A backbone has no head and most models no registers: the zeros allowed.
        if let Some((name, _)) = all
            .iter()
            .find(|(n, v)| *v == 0 && !["num_classes", "reg_tokens"].contains(n))
        {
            return Err(format!("{name} must be positive"));
        }
        if let Some((name, v)) = all.iter().find(|(_, v)| *v > MAX_SIZE) {
            return Err(format!(
                "{name} = {v} is larger than vitrine's limit of {MAX_SIZE}"
            ));
        }
        if self.img_size.iter().any(|&s| s < self.patch_size) {
            return Err(format!(
                "patch size {} is larger than the image ({}×{})",
                self.patch_size, self.img_size[0], self.img_size[1]
            ));
        }
        if self.img_size.iter().any(|s| s % self.patch_size != 0) {
            return Err(format!(
                "image size {:?} is not a multiple of patch size {}",
                self.img_size, self.patch_size
            ));
        }
        if !self.embed_dim.is_multiple_of(self.num_heads) {
            return Err(format!(
                "embed_dim {} is not divisible by num_heads {}",
                self.embed_dim, self.num_heads
            ));
        }
        let pool = self.global_pool;
        if !self.class_token && matches!(pool, Pool::Token | Pool::TokenAndAvg) {
            return Err(format!(
                "global_pool `{}` needs a class token, and class_token is false",
                pool.timm_name()
            ));
        }
        if self.distilled && !self.class_token {
            return Err("a distillation token needs a class token before it".into());
        }
        if pool == Pool::TokenAndDistillation && !self.distilled {
            return Err("averaging with the distillation token needs one (distilled)".into());
        }
        if pool == Pool::TokenAndDistillation && self.fc_norm {
            return Err("distilled DeiT has no norm after pooling (fc_norm)".into());
        }
        // Every field is at most 2^20 here, so these products fit in u64.
        let pixels = self.img_size[0] as u64 * self.img_size[1] as u64;
        if pixels * self.in_chans as u64 > MAX_INPUT_VALUES {
            return Err(format!(
                "an input of {}×{}×{} values is more than vitrine's limit of {MAX_INPUT_VALUES}",
                self.in_chans, self.img_size[0], self.img_size[1]
            ));
        }
        let tokens = pixels / (self.patch_size as u64 * self.patch_size as u64)
            + self.num_prefix_tokens() as u64;
        let attention = self.num_heads as u64 * tokens * tokens;
        if attention > MAX_ATTENTION_VALUES {
            return Err(format!(
                "{tokens} tokens and {} heads make each layer's attention {attention} values \
                 ({:.1} GB as f32), more than the {} GB vitrine allows",
                self.num_heads,
                attention as f64 * 4.0 / 1e9,
                MAX_ATTENTION_VALUES * 4 / 1_000_000_000
            ));
        }
        Ok(())
    }

    /// The timm preset of this name, e.g. `vit_tiny_patch16_224`,
    /// `deit3_small_patch16_224`, `vit_small_patch14_dinov2` or
    /// `vit_base_patch16_clip_quickgelu_224`.
    ///
    /// Presets are the architectures timm registers; a checkpoint's `model_args`
    /// may override any field afterwards.
    pub fn preset(name: &str) -> Option<Self> {
        // timm names end in an optional pretrained tag (".augreg_in21k"); it does not change shapes.
        let base = name.split('.').next().unwrap_or(name);
        let (family, rest) = base.split_once('_')?;
        let mut parts = rest.split('_');
        let (embed_dim, depth, num_heads) = match parts.next()? {
            "tiny" => (192, 12, 3),
            "small" => (384, 12, 6),
            "medium" => (512, 12, 8),
            "base" => (768, 12, 12),
            "large" => (1024, 24, 16),
            "huge" => (1280, 32, 16),
            _ => return None,
        };
        let mut patch = parts.next()?;
        let distilled = patch == "distilled" && family == "deit";
        if distilled {
            patch = parts.next()?;
        }
        let patch_size: usize = patch.strip_prefix("patch")?.parse().ok()?;
        let tail: Vec<&str> = parts.collect();
        let mut c = Self::new(
            [224, 224],
            patch_size,
            embed_dim,
            depth,
            num_heads,
            4 * embed_dim,
        );
        let size = |s: &str| {
            s.parse::<usize>()
                .ok()
                .filter(|s| [224, 240, 256, 384, 448, 518].contains(s))
        };
        if distilled {
            c.distilled = true;
            c.global_pool = Pool::TokenAndDistillation;
        }
        let img = match (family, tail.as_slice()) {
            ("vit", ["dinov2"]) => {
                c.init_values = Some(1e-5);
                518
            }
            ("vit", [reg, "dinov2"]) => {
                c.reg_tokens = reg.strip_prefix("reg")?.parse().ok()?;
                c.init_values = Some(1e-5);
                c.no_embed_class = true;
                518
            }
            ("vit", ["gap", s]) => {
                // timm's `*_gap_*`: no class token, the mean of the patches,
                // no norm after pooling; the medium ones also with layer
                // scale and no QKV bias.
                c.class_token = false;
                c.global_pool = Pool::Avg;
                match embed_dim {
                    512 => {
                        c.qkv_bias = false;
                        c.init_values = Some(1e-6);
                    }
                    768 => c.num_heads = 16,
                    _ => {}
                }
                size(s)?
            }
            ("vit" | "deit", [s]) => size(s)?,
            ("deit3", [s]) => {
                c.no_embed_class = true;
                c.init_values = Some(1e-6);
                size(s)?
            }
            ("vit", ["clip", s]) | ("vit", ["clip", "quickgelu", s]) => {
                c.pre_norm = true;
                c.norm_eps = 1e-5;
                c.quick_gelu = tail.contains(&"quickgelu");
                size(s)?
            }
            _ => return None,
        };
        if family == "deit" && embed_dim > 768 || ![8, 14, 16, 32].contains(&patch_size) {
            return None;
        }
        c.img_size = [img, img];
        Some(c)
    }

    /// Why timm's architecture `name` is not one vitrine builds, naming the
    /// family and the feature, when vitrine knows it (e.g. registers).
    pub fn unsupported_preset(name: &str) -> Option<String> {
        let base = name.split('.').next().unwrap_or(name);
        let features = [
            ("siglip", "the attention-pool head (`attn_pool`)"),
            ("giant", "the SwiGLU MLP of ViT-g"),
            ("_rope", "rotary position embeddings"),
        ];
        features
            .iter()
            .find(|(pattern, _)| base.contains(pattern))
            .map(|(_, feature)| format!("timm `{base}`: {feature} is not supported"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiply_adds_are_timms_gmacs() {
        // timm's model tables: 1.3, 4.6, 17.6 and 61.6 GMACs at 224².
        for (name, gmacs) in [
            ("vit_tiny_patch16_224", 13),
            ("vit_small_patch16_224", 46),
            ("vit_base_patch16_224", 176),
            ("vit_large_patch16_224", 616),
        ] {
            let macs = VitConfig::preset(name).unwrap().multiply_adds();
            assert_eq!((macs as f64 / 1e8).round() as u64, gmacs, "{name}: {macs}");
        }
    }

    #[test]
    fn presets_follow_timm() {
        let t = VitConfig::preset("vit_tiny_patch16_224").unwrap();
        assert_eq!(
            (t.embed_dim, t.depth, t.num_heads, t.mlp_hidden),
            (192, 12, 3, 768)
        );
        assert_eq!(t.num_patches(), 196);
        assert_eq!(t.head_dim(), 64);
        let b = VitConfig::preset("vit_base_patch32_384.augreg_in21k_ft_in1k").unwrap();
        assert_eq!(
            (b.embed_dim, b.patch_size, b.img_size),
            (768, 32, [384, 384])
        );
        assert_eq!(b.grid(), [12, 12]);
        assert_eq!(
            VitConfig::preset("deit_small_patch16_224")
                .unwrap()
                .num_heads,
            6
        );
        assert!(VitConfig::preset("resnet50").is_none());
        let h = VitConfig::preset("vit_huge_patch14_224").unwrap();
        assert_eq!((h.embed_dim, h.depth, h.mlp_hidden), (1280, 32, 5120));
        // The families' options, as timm's registrations set them.
        let d3 = VitConfig::preset("deit3_small_patch16_224.fb_in1k").unwrap();
        assert_eq!((d3.no_embed_class, d3.init_values), (true, Some(1e-6)));
        assert_eq!(d3.pos_embed_len(), 196);
        let v2 = VitConfig::preset("vit_small_patch14_dinov2.lvd142m").unwrap();
        assert_eq!(
            (v2.img_size, v2.patch_size, v2.init_values),
            ([518, 518], 14, Some(1e-5))
        );
        let clip = VitConfig::preset("vit_base_patch16_clip_quickgelu_224.openai").unwrap();
        assert!(clip.pre_norm && clip.quick_gelu && clip.norm_eps == 1e-5);
        assert!(
            !VitConfig::preset("vit_base_patch16_clip_224")
                .unwrap()
                .quick_gelu
        );
        let reg = VitConfig::preset("vit_small_patch14_reg4_dinov2.lvd142m").unwrap();
        assert_eq!((reg.reg_tokens, reg.no_embed_class), (4, true));
        assert_eq!((reg.num_prefix_tokens(), reg.pos_embed_len()), (5, 37 * 37));
        let dist = VitConfig::preset("deit_tiny_distilled_patch16_224").unwrap();
        assert!(dist.distilled && dist.global_pool == Pool::TokenAndDistillation);
        assert_eq!(
            (dist.embed_dim, dist.num_tokens(), dist.pos_embed_len()),
            (192, 198, 198)
        );
        let gap = VitConfig::preset("vit_medium_patch16_gap_256").unwrap();
        assert!(!gap.class_token && gap.global_pool == Pool::Avg && !gap.qkv_bias);
        assert_eq!((gap.num_tokens(), gap.img_size), (256, [256, 256]));
        for (name, feature) in [
            (
                "vit_so400m_patch14_siglip_224",
                "attention-pool head (`attn_pool`)",
            ),
            ("vit_giant_patch14_dinov2.lvd142m", "SwiGLU MLP"),
        ] {
            assert!(VitConfig::preset(name).is_none(), "{name}");
            let why = VitConfig::unsupported_preset(name).unwrap();
            assert!(
                why.contains(feature) && why.contains(name.split('.').next().unwrap()),
                "{why}"
            );
        }
    }

    #[test]
    fn validate_names_the_problem() {
        let mut c = VitConfig::preset("vit_tiny_patch16_224").unwrap();
        c.num_heads = 5;
        assert!(
            c.validate()
                .unwrap_err()
                .contains("not divisible by num_heads 5")
        );
    }

    #[test]
    fn absurd_sizes_are_refused_from_the_numbers() {
        let tiny = VitConfig::preset("vit_tiny_patch16_224").unwrap();
        let refused = |edit: &dyn Fn(&mut VitConfig), message: &str| {
            let mut c = tiny.clone();
            edit(&mut c);
            let e = c.validate().unwrap_err();
            assert!(e.contains(message), "{e}");
        };
        refused(
            &|c| c.depth = 1_000_000_000,
            "depth = 1000000000 is larger than vitrine's limit",
        );
        refused(
            &|c| c.embed_dim = 1 << 31,
            "embed_dim = 2147483648 is larger",
        );
        refused(
            &|c| c.num_classes = 1_000_000_000,
            "num_classes = 1000000000 is larger",
        );
        refused(&|c| c.depth = usize::MAX, "is larger than vitrine's limit");
        refused(
            &|c| c.patch_size = 448,
            "patch size 448 is larger than the image (224×224)",
        );
        refused(
            &|c| {
                c.img_size = [4096, 4096];
                c.patch_size = 8;
            },
            "tokens and 3 heads make each layer's attention",
        );
        refused(
            &|c| c.img_size = [65536, 65536],
            "more than vitrine's limit of 268435456",
        );
        // The largest published shapes still pass: ViT-L/14 at 518 px.
        let mut large = VitConfig::preset("vit_large_patch14_224").unwrap();
        large.img_size = [518, 518];
        large.validate().unwrap();
    }
}
