//! Gradient-weighted rollout's host step (jacobgil/vit-explain's
//! `grad_rollout`, see [`super::relevance`]): each layer's lowest
//! `discard_ratio` of fused entries set to 0, then the class token's row
//! carried down the layers in float64.

#[cfg(not(target_arch = "wasm32"))]
use rayon::prelude::*;

use super::relevance::start_row;
use super::trace::MapQueries;
#[cfg(target_arch = "wasm32")]
use crate::ops::serial::*;

/// Gradient-weighted rollout from each layer's fused attention
/// (`fused`: [L, T, T], the head mean of ∇A ⊙ A with negatives set to 0,
/// whose discarded entries are set to 0 in place), over the patches: [N].
pub fn grad_rollout(fused: &mut [f32], t: usize, q: MapQueries, discard_ratio: f64) -> Vec<f32> {
    assert!(
        (0.0..1.0).contains(&discard_ratio),
        "discard ratio in [0, 1)"
    );
    let tt = t * t;
    // vit-explain: int(T² · ratio) entries, the smallest, set to 0.
    let discard = (tt as f64 * discard_ratio) as usize;
    // Each layer's discard step and (A + I)'s row sums, the layers split
    // between the threads; then the row carried down, one layer at a time.
    let mut sums = vec![0.0f64; fused.len() / t];
    fused
        .par_chunks_mut(tt)
        .zip(sums.par_chunks_mut(t))
        .for_each(|(layer, sums)| {
            discard_smallest(layer, discard);
            for (row, sum) in layer.chunks_exact(t).zip(sums.iter_mut()) {
                *sum = 1.0 + sum_f64(row);
            }
        });
    let mut r: Vec<f64> = start_row(t, q).into_iter().map(f64::from).collect();
    for (layer, sums) in fused.chunks_exact(tt).zip(sums.chunks_exact(t)).rev() {
        // r ← r · (A + I) / 2 with rows renormalised (the halves cancel).
        let mut next = vec![0.0f64; t];
        for (i, (row, sum)) in layer.chunks_exact(t).zip(sums).enumerate() {
            let ri = r[i] / sum;
            if ri != 0.0 {
                for (acc, &v) in next.iter_mut().zip(row) {
                    *acc += ri * f64::from(v);
                }
                next[i] += ri;
            }
        }
        r = next;
    }
    r[q.prefix..].iter().map(|&v| v as f32).collect()
}

/// Σ `row` in float64, in eight running sums (one would wait on each add).
fn sum_f64(row: &[f32]) -> f64 {
    let mut sums = [0.0f64; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for (s, &v) in sums.iter_mut().zip(c) {
            *s += f64::from(v);
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&v| f64::from(v)).sum();
    sums.iter().sum::<f64>() + tail
}

/// Sets the `discard` smallest of `values` to 0 (in `f32::total_cmp`'s
/// order), ties taken in index order: all below the discard-th smallest
/// value, then as many equal to it as are still to go, first come first.
fn discard_smallest(values: &mut [f32], discard: usize) {
    if discard == 0 {
        return;
    }
    let (cut, mut equal) = nth_smallest(values, discard - 1);
    for v in values.iter_mut() {
        *v = if order_key(*v) < cut { 0.0 } else { *v };
    }
    // Ties, in index order; none to set where the cut is 0 itself.
    if cut == order_key(0.0) {
        return;
    }
    for v in values.iter_mut() {
        if equal == 0 {
            break;
        }
        if order_key(*v) == cut {
            *v = 0.0;
            equal -= 1;
        }
    }
}

/// `v`'s bits as an unsigned key in `f32::total_cmp`'s order.
fn order_key(v: f32) -> u32 {
    let b = v.to_bits();
    if b >> 31 == 1 { !b } else { b | 1 << 31 }
}

/// The key ([`order_key`]) of the value of rank `rank` (from 0) in
/// ascending order, and how many of the values equal to it are at or
/// below that rank: a radix selection, eleven bits of the key at a time,
/// that stops where the candidates left are all one key.
fn nth_smallest(values: &[f32], rank: usize) -> (u32, usize) {
    assert!(rank < values.len(), "rank within the values");
    let mut candidates: Vec<u32> = values.iter().map(|&v| order_key(v)).collect();
    let (mut prefix, mut rank) = (0u32, rank);
    for (shift, bits) in [(21u32, 11u32), (10, 11), (0, 10)] {
        let mask = (1usize << bits) - 1;
        // Four histograms, summed after: runs of one key (the zeros of a
        // clamped map) would otherwise wait on one counter each step.
        let mut counts = vec![[0u32; 4]; 1 << bits];
        let mut quads = candidates.chunks_exact(4);
        for q in &mut quads {
            for (lane, &c) in q.iter().enumerate() {
                counts[(c >> shift) as usize & mask][lane] += 1;
            }
        }
        for &c in quads.remainder() {
            counts[(c >> shift) as usize & mask][0] += 1;
        }
        let mut bucket = 0;
        loop {
            let count = counts[bucket].iter().sum::<u32>() as usize;
            if rank < count {
                break;
            }
            rank -= count;
            bucket += 1;
        }
        prefix |= (bucket as u32) << shift;
        candidates.retain(|&c| (c >> shift) as usize & mask == bucket);
        let first = candidates[0];
        if candidates.iter().all(|&c| c == first) {
            return (first, rank + 1);
        }
    }
    (prefix, rank + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLS: MapQueries = MapQueries {
        prefix: 1,
        class_token: true,
    };

    /// The direct definition: the full product of the per-layer matrices,
    /// from the first layer up, then the class token's row.
    fn grad_rollout_by_matrices(fused: &[f32], t: usize, ratio: f64) -> Vec<f32> {
        let mut result: Vec<f64> = (0..t * t)
            .map(|i| if i / t == i % t { 1.0 } else { 0.0 })
            .collect();
        for layer in fused.chunks_exact(t * t) {
            let mut a: Vec<f64> = layer.iter().map(|&v| f64::from(v)).collect();
            let mut sorted: Vec<(f64, usize)> = a.iter().copied().zip(0..).collect();
            sorted.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
            let discard = ((t * t) as f64 * ratio) as usize;
            for &(_, i) in &sorted[..discard] {
                a[i] = 0.0;
            }
            for i in 0..t {
                a[i * t + i] += 1.0;
                let s: f64 = a[i * t..(i + 1) * t].iter().sum();
                a[i * t..(i + 1) * t].iter_mut().for_each(|v| *v /= s);
            }
            let mut next = vec![0.0; t * t];
            for i in 0..t {
                for k in 0..t {
                    for j in 0..t {
                        next[i * t + j] += a[i * t + k] * result[k * t + j];
                    }
                }
            }
            result = next;
        }
        result[1..t].iter().map(|&v| v as f32).collect()
    }

    /// The radix selection's discard step is a full sort's, ties, signed
    /// zeros and NaN included.
    #[test]
    fn the_discard_step_zeroes_what_a_sort_ranks_lowest() {
        let specials = [0.0, -0.0, f32::NAN, 1.5, 1.5, f32::INFINITY, -2.0];
        let values: Vec<f32> = (0..500)
            .map(|i| match i % 7 {
                0 => specials[i / 7 % specials.len()],
                _ => ((i * 7919 % 257) as f32 - 64.0) / 16.0,
            })
            .collect();
        for discard in [0, 1, 2, 37, 250, 499, 500] {
            let mut got = values.clone();
            discard_smallest(&mut got, discard);
            let mut order: Vec<usize> = (0..values.len()).collect();
            order.sort_by(|&a, &b| values[a].total_cmp(&values[b]).then(a.cmp(&b)));
            let mut want = values.clone();
            for &i in &order[..discard] {
                want[i] = 0.0;
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "discarding {discard}");
        }
    }

    #[test]
    fn grad_rollout_carried_as_a_row_is_the_matrix_product() {
        let t = 7;
        let fused: Vec<f32> = (0..3 * t * t)
            .map(|i| ((i * 37 % 101) as f32 / 50.0 - 0.6).max(0.0))
            .collect();
        for ratio in [0.0, 0.5, 0.9] {
            let got = grad_rollout(&mut fused.clone(), t, CLS, ratio);
            let want = grad_rollout_by_matrices(&fused, t, ratio);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-6, "ratio {ratio}: {got:?} vs {want:?}");
            }
        }
    }
}
