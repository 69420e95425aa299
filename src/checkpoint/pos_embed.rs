//! Position embeddings for another patch grid, value for value as the
//! reference libraries compute them, so a checkpoint can run at another
//! resolution than it was trained at:
//!
//! - timm's `resample_abs_pos_embed`: PyTorch's bicubic with antialias
//!   (PIL's cubic, a = −0.5; the support widened when shrinking; weights
//!   normalised over the taps inside the grid);
//! - transformers' `interpolate_pos_encoding`: PyTorch's plain bicubic
//!   (DINOv2 with registers: timm's, with antialias)
//!   (Keys' cubic, a = −0.75, over four taps, the border repeated;
//!   `align_corners=False`).
//!
//! Computed on the host in f64 (the tables are small) and separably: along
//! the columns, then along the rows. The prefix tokens (class token) are
//! left as they are.

use super::{Checkpoint, CheckpointError, Layout, Stored};
use crate::preprocess::Resize;

/// Whose interpolation to follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PosResize {
    /// timm: bicubic, antialias on.
    Timm,
    /// transformers: bicubic, antialias off.
    Transformers,
}

/// Keys' cubic convolution kernel with parameter `a`.
fn keys(x: f64, a: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * a
    } else {
        0.0
    }
}

/// For each of `output` positions, the (input index, weight) pairs.
fn taps(input: usize, output: usize, how: PosResize) -> Vec<Vec<(usize, f64)>> {
    let scale = input as f64 / output as f64;
    (0..output)
        .map(|o| match how {
            PosResize::Transformers => {
                // PyTorch's upsample_bicubic2d: source = (o + ½)·scale − ½, four taps, clamped.
                let src = (o as f64 + 0.5) * scale - 0.5;
                let i0 = src.floor();
                let t = src - i0;
                let weights = [
                    keys(t + 1.0, -0.75),
                    keys(t, -0.75),
                    keys(1.0 - t, -0.75),
                    keys(2.0 - t, -0.75),
                ];
                (0..4)
                    .map(|k| {
                        let i = (i0 as i64 + k as i64 - 1).clamp(0, input as i64 - 1) as usize;
                        (i, weights[k])
                    })
                    .collect::<Vec<_>>()
            }
            PosResize::Timm => {
                // PyTorch's _upsample_bicubic2d_aa (PIL's scheme).
                let (support, inv) = if scale >= 1.0 {
                    (2.0 * scale, 1.0 / scale)
                } else {
                    (2.0, 1.0)
                };
                let centre = scale * (o as f64 + 0.5);
                // Truncation toward zero, as the C++ casts do.
                let first = ((centre - support + 0.5) as i64).max(0) as usize;
                let last = ((centre + support + 0.5) as i64).min(input as i64) as usize;
                let raw: Vec<(usize, f64)> = (first..last.max(first + 1))
                    .map(|i| (i, keys((i as f64 - centre + 0.5) * inv, -0.5)))
                    .collect();
                let total: f64 = raw.iter().map(|&(_, w)| w).sum();
                raw.into_iter()
                    .map(|(i, w)| (i, w / total))
                    .collect::<Vec<_>>()
            }
        })
        .collect()
}

/// A [rows, cols, D] grid of embeddings (row-major, as the patches are
/// ordered) resampled to `to` = [rows, cols]: [to[0], to[1], D].
pub fn resize_grid(
    values: &[f32],
    from: [usize; 2],
    to: [usize; 2],
    d: usize,
    how: PosResize,
) -> Vec<f32> {
    let [h, w] = from;
    assert_eq!(values.len(), h * w * d, "grid of {h}×{w}×{d}");
    let (ty, tx) = (taps(h, to[0], how), taps(w, to[1], how));
    // Along the columns: [h, to[1], D].
    let mut across = vec![0.0f64; h * to[1] * d];
    for r in 0..h {
        for (o, tap) in tx.iter().enumerate() {
            let out = &mut across[(r * to[1] + o) * d..][..d];
            for &(i, weight) in tap {
                let row = &values[(r * w + i) * d..][..d];
                for (acc, &v) in out.iter_mut().zip(row) {
                    *acc += weight * v as f64;
                }
            }
        }
    }
    // Along the rows: [to[0], to[1], D].
    let mut out = vec![0.0f64; to[0] * to[1] * d];
    for (o, tap) in ty.iter().enumerate() {
        let dst = &mut out[o * to[1] * d..][..to[1] * d];
        for &(i, weight) in tap {
            let src = &across[i * to[1] * d..][..to[1] * d];
            for (acc, &v) in dst.iter_mut().zip(src) {
                *acc += weight * v;
            }
        }
    }
    out.into_iter().map(|v| v as f32).collect()
}

/// Stage 5: a checked checkpoint at another input size.
impl Checkpoint {
    /// The same checkpoint at another input size [height, width]
    /// ([`LoadOptions::image_size`]).
    pub(super) fn at_image_size(self, size: [usize; 2]) -> Result<Self, CheckpointError> {
        let [_, ih, iw] = self.preprocess.input_size;
        if size == self.config.img_size {
            return Ok(self);
        }
        let mut resized = self.with_positions_for(size)?;
        let p = &mut resized.preprocess;
        let c = p.input_size[0];
        let scale = |v: usize, new: usize, old: usize| (v * new + old / 2) / old;
        p.resize = p.resize.map(|r| match r {
            Resize::Exact([rh, rw]) => {
                Resize::Exact([scale(rh, size[0], ih), scale(rw, size[1], iw)])
            }
            Resize::ShortestEdge(e) => {
                Resize::ShortestEdge(scale(e, size[0].min(size[1]), ih.min(iw)))
            }
        });
        p.input_size = [c, size[0], size[1]];
        Ok(resized)
    }

    /// The model at input size `size`, its position embeddings interpolated
    /// as the checkpoint's library does it; the preprocessing unchanged.
    pub(super) fn with_positions_for(mut self, size: [usize; 2]) -> Result<Self, CheckpointError> {
        let old = self.config.clone();
        let mut config = old.clone();
        config.img_size = size;
        config
            .validate()
            .map_err(|reason| CheckpointError::BadConfig {
                file: format!("the input size {}×{} asked for", size[0], size[1]),
                reason,
            })?;
        let (from, to) = (old.grid(), config.grid());
        let (how, library) = match self.layout {
            Layout::Timm => (PosResize::Timm, "timm"),
            Layout::HuggingFace(family) => (family.spec().pos_resize, "transformers"),
        };
        let d = config.embed_dim;
        let entry = self
            .weights
            .get_mut("pos_embed")
            .expect("a checked checkpoint has position embeddings");
        let prefix = old.pos_embed_len() - old.num_patches();
        let mut values = std::mem::replace(&mut entry.values, Stored::F32(Vec::new())).into_f32();
        let grid = resize_grid(&values[prefix * d..], from, to, d, how);
        values.truncate(prefix * d);
        values.extend(grid);
        entry.values = Stored::F32(values);
        entry.shape = vec![1, config.pos_embed_len(), d];
        self.notes.push(format!(
            "running at {}×{} px: position embeddings interpolated from {}×{} to {}×{} patches \
             ({}, as {} does)",
            size[0],
            size[1],
            from[0],
            from[1],
            to[0],
            to[1],
            match how {
                PosResize::Timm => "bicubic with antialias",
                PosResize::Transformers => "bicubic",
            },
            library
        ));
        self.config = config;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PyTorch 2.15's `F.interpolate(x, size, mode="bicubic",
    /// align_corners=False, antialias=…)` in float64, printed to 12 places.
    #[test]
    fn matches_pytorch_bicubic_both_ways() {
        let x: Vec<f32> = (0..9).map(|i| (i as f32).powf(1.5)).collect();
        let plain = [
            -0.558178339118,
            -0.156568258904,
            1.030947165516,
            2.148567617896,
            1.21530535676,
            2.121259189583,
            3.961082529206,
            5.408879843232,
            4.994899691329,
            6.64022656898,
            9.454080342708,
            11.408616236846,
            11.129398345209,
            13.237984451653,
            16.71876504306,
            19.063264802258,
            15.327561303193,
            17.656196196108,
            21.473081719878,
            24.027523634113,
        ];
        let aa = [
            -0.437289491187,
            0.02814333165,
            1.176676162954,
            2.288278950301,
            1.314217420693,
            2.23317234479,
            3.939461904634,
            5.36339115748,
            5.049682773147,
            6.730345486527,
            9.38376443724,
            11.346477045801,
            11.411971110723,
            13.550434244297,
            16.826810442115,
            19.187097187947,
            15.210233877539,
            17.565421965944,
            21.146967931929,
            23.709554393738,
        ];
        let y: Vec<f32> = (0..36).map(|i| (i as f32).sin()).collect();
        let down_plain = [
            0.136894856295,
            1.007990988493,
            -0.080897657641,
            -0.944547790054,
            -0.265482174066,
            0.964386753314,
            0.34790794235,
            -0.877745401453,
            -0.636520728913,
            0.724614474624,
            0.730257957257,
            -0.630915837343,
            -0.867048919073,
            0.359223135255,
            0.953652289967,
            -0.276684568759,
        ];
        let down_aa = [
            0.217739647541,
            0.927331383269,
            -0.035993195926,
            -0.93059586096,
            -0.156444961042,
            0.884437584071,
            0.331281126265,
            -0.815837668313,
            -0.539873811598,
            0.672029252425,
            0.674451174964,
            -0.536986747663,
            -0.796181926542,
            0.36564858434,
            0.871469858694,
            -0.193215343065,
        ];
        for (input, from, to, how, want) in [
            (&x, [3, 3], [5, 4], PosResize::Transformers, &plain[..]),
            (&x, [3, 3], [5, 4], PosResize::Timm, &aa[..]),
            (&y, [6, 6], [4, 4], PosResize::Transformers, &down_plain[..]),
            (&y, [6, 6], [4, 4], PosResize::Timm, &down_aa[..]),
        ] {
            let got = resize_grid(input, from, to, 1, how);
            // The inputs are f32 and the result is rounded to f32: a few ulps of 24.
            let worst = got
                .iter()
                .zip(want)
                .map(|(g, w)| (*g as f64 - w).abs())
                .fold(0.0, f64::max);
            assert!(worst < 1e-5, "{how:?} {from:?}→{to:?}: {worst:e}\n{got:?}");
        }
    }

    #[test]
    fn the_same_grid_is_unchanged_and_channels_stay_apart() {
        let v: Vec<f32> = (0..4 * 5 * 3).map(|i| i as f32 * 0.25 - 3.0).collect();
        for how in [PosResize::Timm, PosResize::Transformers] {
            let same = resize_grid(&v, [4, 5], [4, 5], 3, how);
            assert!(
                same.iter().zip(&v).all(|(a, b)| (a - b).abs() < 1e-6),
                "{how:?}"
            );
        }
        // Channel 1 of a grid whose channel 0 is all zeros: resizing mixes positions, never channels.
        let mut two = vec![0.0f32; 3 * 3 * 2];
        for p in 0..9 {
            two[p * 2 + 1] = p as f32;
        }
        let out = resize_grid(&two, [3, 3], [6, 6], 2, PosResize::Timm);
        assert!(out.chunks(2).all(|c| c[0] == 0.0));
    }
}
