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
    /// Number of output classes of the linear head.
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

    /// Number of patches N.
    pub fn num_patches(&self) -> usize {
        let [r, c] = self.grid();
        r * c
    }

    /// Width of one attention head, D / heads (64 in the paper's models).
    pub fn head_dim(&self) -> usize {
        self.embed_dim / self.num_heads
    }

    /// Length P·P·C of one flattened patch.
    pub fn patch_len(&self) -> usize {
        self.patch_size * self.patch_size * self.in_chans
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
        ];
        if let Some((name, _)) = all.iter().find(|(_, v)| *v == 0) {
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
        // Every field is at most 2^20 here, so these products fit in u64.
        let pixels = self.img_size[0] as u64 * self.img_size[1] as u64;
        if pixels * self.in_chans as u64 > MAX_INPUT_VALUES {
            return Err(format!(
                "an input of {}×{}×{} values is more than vitrine's limit of {MAX_INPUT_VALUES}",
                self.in_chans, self.img_size[0], self.img_size[1]
            ));
        }
        let tokens = pixels / (self.patch_size as u64 * self.patch_size as u64) + 1;
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

    /// The timm preset of this name, e.g. `vit_tiny_patch16_224` or `deit_small_patch16_224`.
    ///
    /// Presets are the architectures timm registers; a checkpoint's `model_args`
    /// may override any field afterwards.
    pub fn preset(name: &str) -> Option<Self> {
        // timm names end in an optional pretrained tag (".augreg_in21k"); it does not change shapes.
        let base = name.split('.').next().unwrap_or(name);
        let (family, rest) = base.split_once('_')?;
        if family != "vit" && family != "deit" {
            return None;
        }
        let mut parts = rest.split('_');
        let (embed_dim, depth, num_heads) = match parts.next()? {
            "tiny" => (192, 12, 3),
            "small" => (384, 12, 6),
            "base" => (768, 12, 12),
            "large" => (1024, 24, 16),
            _ => return None,
        };
        let patch_size = parts.next()?.strip_prefix("patch")?.parse().ok()?;
        let size: usize = parts.next()?.parse().ok()?;
        if parts.next().is_some() || family == "deit" && embed_dim == 1024 {
            return None;
        }
        if ![14, 16, 32, 8].contains(&patch_size) || ![224, 384].contains(&size) {
            return None;
        }
        Some(Self::new(
            [size, size],
            patch_size,
            embed_dim,
            depth,
            num_heads,
            4 * embed_dim,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(VitConfig::preset("vit_huge_patch14_224").is_none());
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
