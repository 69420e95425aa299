//! Attention maps on the host, after the read-back: one head's map, the
//! mean over a layer's heads, and the choice between them.

use crate::model::VitConfig;

/// The names of the tokens before the patches, in order: `class`,
/// `distillation`, `register 1`, ….
pub fn prefix_token_names(c: &VitConfig) -> Vec<String> {
    let mut names = Vec::new();
    if c.class_token {
        names.push("class".to_string());
    }
    if c.distilled {
        names.push("distillation".to_string());
    }
    names.extend((1..=c.reg_tokens).map(|i| format!("register {i}")));
    names
}

/// What the attention maps of a model show, in one or two sentences for
/// the page and the CLI (see [`crate::explain::trace`] for the choice).
pub fn map_note(c: &VitConfig) -> String {
    if !c.class_token {
        return "This model has no class token: its head averages the patches, so each map \
                shows the attention every patch receives, averaged over all the patches."
            .into();
    }
    let mut note = String::from("The maps show the class token's attention to the patches.");
    if c.distilled {
        note.push_str(
            " The distillation token (DeiT), whose own head is averaged with the class \
             token's, is left out of the image; the walk-through shows it.",
        );
    }
    if c.reg_tokens > 0 {
        note.push_str(&format!(
            " The {} register tokens take part in attention too and are left out of the image: \
             they soak up attention that would otherwise land on a few background patches \
             (Darcet et al. 2024, “Vision Transformers Need Registers”); the walk-through \
             shows them.",
            c.reg_tokens
        ));
    }
    note
}

/// The CLS-row attention of every head of every layer, read back from the device.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionMaps {
    pub layers: usize,
    pub heads: usize,
    /// Patch grid [rows, cols]; rows·cols = N.
    pub grid: [usize; 2],
    /// [L, H, N] row-major.
    pub cls: Vec<f32>,
}

/// Which map of a layer to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadChoice {
    /// One head.
    Head(usize),
    /// The mean over the layer's heads.
    Mean,
    /// Attention rollout over all layers (the layer is ignored).
    Rollout,
}

impl AttentionMaps {
    /// Number of patches N.
    pub fn patches(&self) -> usize {
        self.grid[0] * self.grid[1]
    }

    /// The map of one head, length N.
    pub fn head(&self, layer: usize, head: usize) -> &[f32] {
        let n = self.patches();
        let start = (layer * self.heads + head) * n;
        &self.cls[start..start + n]
    }

    /// The map chosen by `choice` for `layer`, length N; `rollout` is the
    /// prediction's attention rollout.
    pub fn map(&self, layer: usize, choice: HeadChoice, rollout: &[f32]) -> Vec<f32> {
        match choice {
            HeadChoice::Rollout => rollout.to_vec(),
            HeadChoice::Head(h) => self.head(layer, h).to_vec(),
            HeadChoice::Mean => {
                let n = self.patches();
                let start = layer * self.heads * n;
                head_mean(&self.cls[start..start + self.heads * n], self.heads)
            }
        }
    }

    /// The mean over heads of every layer, [L, N] row-major.
    pub fn means(&self) -> Vec<f32> {
        let per_layer = self.heads * self.patches();
        self.cls
            .chunks(per_layer)
            .flat_map(|layer| head_mean(layer, self.heads))
            .collect()
    }

    /// As nested vectors [L][H][N], for JSON.
    pub fn nested(&self) -> Vec<Vec<Vec<f32>>> {
        (0..self.layers)
            .map(|l| (0..self.heads).map(|h| self.head(l, h).to_vec()).collect())
            .collect()
    }
}

/// The mean over heads of `values`, [heads, M] row-major → [M]: the head
/// mean of one layer's CLS rows ([H, N]) or of its full attention ([H, T·T]).
pub fn head_mean(values: &[f32], heads: usize) -> Vec<f32> {
    let m = values.len() / heads.max(1);
    let mut mean = vec![0.0; m];
    for head in values.chunks(m.max(1)).take(heads) {
        for (acc, v) in mean.iter_mut().zip(head) {
            *acc += v / heads as f32;
        }
    }
    mean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_names_the_tokens_left_out() {
        let plain = VitConfig::new([32, 32], 8, 24, 1, 3, 48);
        assert_eq!(prefix_token_names(&plain), ["class"]);
        let reg = plain.clone().with_reg_tokens(2);
        assert_eq!(
            prefix_token_names(&reg),
            ["class", "register 1", "register 2"]
        );
        let dist = plain.clone().with_distilled(true);
        let gap = plain.clone().with_class_token(false);
        assert!(prefix_token_names(&gap).is_empty());
        for (c, want) in [
            (&reg, "The 2 register tokens take part in attention too"),
            (&dist, "The distillation token (DeiT)"),
            (&gap, "averaged over all the patches"),
        ] {
            let note = map_note(c);
            assert!(note.contains(want) && !note.contains("  "), "{note}");
        }
    }

    #[test]
    fn head_mean_averages_heads() {
        let maps = AttentionMaps {
            layers: 1,
            heads: 2,
            grid: [1, 2],
            cls: vec![0.2, 0.8, 0.6, 0.4],
        };
        assert_eq!(maps.head(0, 1), &[0.6, 0.4]);
        let mean = maps.map(0, HeadChoice::Mean, &[]);
        assert_eq!(maps.map(0, HeadChoice::Rollout, &[0.5, 0.25]), [0.5, 0.25]);
        assert!((mean[0] - 0.4).abs() < 1e-6 && (mean[1] - 0.6).abs() < 1e-6);
        assert_eq!(maps.means(), mean);
    }
}
