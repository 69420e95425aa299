//! The photo steps of [`PhotoAdapt`]: composite over white, gray, invert a
//! light background, stretch levels, crop to the object, pad to a square.

use super::config::PhotoAdapt;

/// A photo after [`PhotoAdapt`]: gray RGBA pixels of a square, and where
/// that square lies in the original image ([x0, y0, x1, y1], original pixels).
pub(super) struct Adapted {
    pub rgba: Vec<u8>,
    pub side: u32,
    pub rect: [f64; 4],
}

/// A pixel differs from the background when it is this much brighter (of 255)
/// after the levels are stretched.
const OBJECT_THRESHOLD: u8 = 40;

/// Applies the photo steps: composite over white, gray, invert a light
/// background, stretch levels, crop to the object, pad to a square.
pub(super) fn adapt(rgba: &[u8], width: u32, height: u32, steps: &PhotoAdapt) -> Adapted {
    let (w, h) = (width as usize, height as usize);
    // Transparent pixels are background: composite over white, then PIL's luma.
    let mut gray: Vec<u8> = rgba
        .chunks_exact(4)
        .map(|px| {
            let a = px[3] as u32;
            let over = |c: u8| (c as u32 * a + 255 * (255 - a) + 127) / 255;
            ((over(px[0]) * 19595 + over(px[1]) * 38470 + over(px[2]) * 7471 + 0x8000) >> 16) as u8
        })
        .collect();
    // The background level: the median of the outermost ring of pixels.
    let border_level = |g: &[u8]| -> u8 {
        let mut ring: Vec<u8> = (0..w)
            .flat_map(|x| [g[x], g[(h - 1) * w + x]])
            .chain((0..h).flat_map(|y| [g[y * w], g[y * w + w - 1]]))
            .collect();
        let mid = ring.len() / 2;
        *ring.select_nth_unstable(mid).1
    };
    if steps.invert_light_background {
        if border_level(&gray) > 127 {
            gray.iter_mut().for_each(|v| *v = 255 - *v);
        }
        // Levels: the background to black, the brightest pixel to white.
        let bg = border_level(&gray) as u32;
        let top = gray.iter().copied().max().unwrap_or(255) as u32;
        if top > bg {
            gray.iter_mut().for_each(|v| {
                *v = ((*v as u32).saturating_sub(bg) * 255 / (top - bg)) as u8;
            });
        }
    }
    let (mut x0, mut y0, mut x1, mut y1) = (0, 0, w, h);
    if steps.fit_object {
        let bg = border_level(&gray);
        let (mut bx0, mut by0, mut bx1, mut by1) = (w, h, 0, 0);
        for y in 0..h {
            for x in 0..w {
                if gray[y * w + x].abs_diff(bg) >= OBJECT_THRESHOLD {
                    bx0 = bx0.min(x);
                    by0 = by0.min(y);
                    bx1 = bx1.max(x + 1);
                    by1 = by1.max(y + 1);
                }
            }
        }
        if bx1 > bx0 && by1 > by0 {
            (x0, y0, x1, y1) = (bx0, by0, bx1, by1);
        }
    }
    // Pad the box to a square around its centre, with the background level.
    let fill = if steps.fit_object || steps.invert_light_background {
        border_level(&gray)
    } else {
        0
    };
    let (bw, bh) = (x1 - x0, y1 - y0);
    let side = bw.max(bh);
    let (left, top) = (
        x0 as i64 - ((side - bw) / 2) as i64,
        y0 as i64 - ((side - bh) / 2) as i64,
    );
    let mut out = vec![255u8; side * side * 4];
    for (y, row) in out.chunks_exact_mut(side * 4).enumerate() {
        for (x, px) in row.chunks_exact_mut(4).enumerate() {
            let (sx, sy) = (left + x as i64, top + y as i64);
            let inside_box = sx >= x0 as i64 && sy >= y0 as i64 && sx < x1 as i64 && sy < y1 as i64;
            let v = if inside_box {
                gray[sy as usize * w + sx as usize]
            } else {
                fill
            };
            // Written one by one: a four-byte copy_from_slice is a memcpy
            // call per pixel in the size-optimised browser build.
            px[0] = v;
            px[1] = v;
            px[2] = v;
        }
    }
    Adapted {
        rgba: out,
        side: side as u32,
        rect: [
            left as f64,
            top as f64,
            (left + side as i64) as f64,
            (top + side as i64) as f64,
        ],
    }
}
