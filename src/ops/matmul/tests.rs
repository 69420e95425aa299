//! The tests of `ops::matmul`.

use super::*;
use burn::nn::LinearConfig;
use burn::tensor::Distribution;

/// The exact product (in f64, whose error is negligible here) and, per
/// element, Σ|a·b| + |bias|, which bounds float32's error.
fn naive(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
) -> (Vec<f64>, Vec<f64>) {
    let (mut c, mut size) = (vec![0.0f64; m * n], vec![0.0f64; m * n]);
    for i in 0..m {
        for j in 0..n {
            let mut s = bias.map_or(0.0, |b| b[j] as f64);
            let mut z = s.abs();
            for p in 0..k {
                let t = a[i * k + p] as f64 * b[p * n + j] as f64;
                s += t;
                z += t.abs();
            }
            c[i * n + j] = s;
            size[i * n + j] = z;
        }
    }
    (c, size)
}

/// γₙ = n·u/(1 − n·u), u = 2⁻²⁴: a float32 sum of n terms (products
/// included, fused or not) is within γₙ·Σ|terms| of the exact sum in
/// any order (Higham, Accuracy and Stability of Numerical Algorithms,
/// §3.1). A bound that holds on every processor and kernel path.
fn gamma(terms: usize) -> f64 {
    let nu = terms as f64 / (1u64 << 24) as f64;
    nu / (1.0 - nu)
}

fn values(seed: u64, len: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

#[test]
fn gemm_matches_a_naive_product_on_every_edge() {
    // Rows around the tile's 4, columns around its 8, and the ViT's shapes.
    for (m, k, n) in [
        (3, 2, 7),
        (4, 5, 8),
        (5, 3, 9),
        (6, 4, 16),
        (9, 11, 17),
        (1, 1, 1),
        (2, 3, 5),
        (3, 7, 12),
        (4, 5, 13),
        (5, 16, 24),
        (7, 9, 25),
        (50, 48, 144),
        (197, 64, 197),
        (197, 192, 576),
        (197, 768, 40),
        (10, 3072, 13),
        (1, 192, 10),
        (0, 4, 4),
        (4, 0, 4),
    ] {
        let (a, b, bias) = (values(1, m * k), values(2, k * n), values(3, n));
        for bias in [None, Some(&bias[..])] {
            let (want, size) = naive(m, k, n, &a, &b, bias);
            let mut c = vec![f32::NAN; m * n];
            gemm(m, k, n, &a, &b, bias, &mut c);
            assert!(
                c.iter().all(|x| x.is_finite()),
                "{m}×{k}×{n}: a value left unwritten"
            );
            // k products and the bias: k + 1 terms, one more rounding to f32.
            let g = gamma(k + 2);
            for (e, ((&got, &exact), &z)) in c.iter().zip(&want).zip(&size).enumerate() {
                assert!(
                    (got as f64 - exact).abs() <= g * z,
                    "{m}×{k}×{n} [{e}]: {got} vs exact {exact}, allowed {:e}",
                    g * z
                );
            }
        }
    }
}

/// Strided operands and output (one head's columns of wider matrices),
/// added onto what the output held; what lies between is untouched.
#[test]
fn gemm_add_reads_and_writes_in_place() {
    for (m, k, n) in [(5, 3, 9), (13, 64, 17), (197, 64, 197), (3, 300, 10)] {
        let (lda, ldb, ldc) = (k + 3, n + 5, n + 7);
        let a = values(4, m * lda);
        let b = values(5, k * ldb);
        let before = values(6, m * ldc);
        let mut c = before.clone();
        gemm_add(m, k, n, &a, lda, &b, ldb, &mut c, ldc);
        let dense = |v: &[f32], rows: usize, cols: usize, ld: usize| -> Vec<f32> {
            (0..rows)
                .flat_map(|r| v[r * ld..r * ld + cols].to_vec())
                .collect()
        };
        let (want, size) = naive(m, k, n, &dense(&a, m, k, lda), &dense(&b, k, n, ldb), None);
        let g = gamma(k + 2);
        for r in 0..m {
            for j in 0..ldc {
                let (got, was) = (c[r * ldc + j], before[r * ldc + j]);
                if j >= n {
                    assert_eq!(got, was, "{m}×{k}×{n}: column {j} written");
                    continue;
                }
                let exact = want[r * n + j] + was as f64;
                let allowed = g * (size[r * n + j] + was.abs() as f64);
                assert!(
                    (got as f64 - exact).abs() <= allowed,
                    "{m}×{k}×{n} [{r}, {j}]: {got} vs {exact}"
                );
            }
        }
    }
}

/// An f16 right operand (a weight kept as its file held it) gives the
/// product of its f32 widening bit for bit, on every edge of the tile
/// and of the k blocks, strided, with halves of every kind: normal,
/// subnormal, zero, negative zero.
#[test]
fn an_f16_rhs_multiplies_as_its_f32_widening_exactly() {
    let halves = |seed: u64, len: usize| -> Vec<f16> {
        values(seed, len)
            .into_iter()
            .enumerate()
            .map(|(i, v)| match (i % 61, i % 67) {
                // Now and then a subnormal half (below 2⁻¹⁴) or a zero
                // of either sign: most runs of eight are all normal (the
                // fast widening), the rest take the exact one.
                (3, _) => f16::from_f32(v * 1e-5),
                (_, 5) => f16::from_f32(if v < 0.0 { -0.0 } else { 0.0 }),
                _ => f16::from_f32(v * 8.0),
            })
            .collect()
    };
    for (m, k, n, ldb) in [
        (1, 1, 1, 1),
        (3, 5, 7, 7),
        (4, 9, 8, 8),
        (5, 17, 13, 20),
        (9, 300, 17, 17),
        (197, 64, 192, 200),
        (6, 520, 24, 24),
    ] {
        let (a, b) = (values(7, m * k), halves(8, k * ldb));
        let widened: Vec<f32> = b.iter().map(|h| h.to_f32()).collect();
        let start = values(9, m * n);
        let (mut from_f16, mut from_f32) = (start.clone(), start);
        gemm_add(m, k, n, &a, k, &b[..], ldb, &mut from_f16, n);
        gemm_add(m, k, n, &a, k, &widened[..], ldb, &mut from_f32, n);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&from_f16), bits(&from_f32), "{m}×{k}×{n}, ldb {ldb}");
    }
}

#[test]
#[should_panic(expected = "rhs holds 6 values, not 2×4")]
fn gemm_refuses_operands_of_the_wrong_size() {
    let mut c = vec![0.0; 12];
    gemm(3, 2, 4, &[0.0; 6], &[0.0f32; 6][..], None, &mut c);
}

#[test]
fn linear_and_batched_matmul_match_burn() {
    // Each side within γ·Σ|terms| of the exact value, so within twice
    // that of each other; Σ|terms| from |x|·|W| + |b| in float32, itself
    // within a factor (1 + γ) of the exact one.
    let check = |what: &str, ours: Vec<f32>, burn: Vec<f32>, size: Vec<f32>, terms: usize| {
        let g = gamma(terms);
        for ((a, b), z) in ours.iter().zip(&burn).zip(&size) {
            let allowed = 2.0 * g * (1.0 + g) * *z as f64;
            assert!(
                ((a - b).abs() as f64) <= allowed,
                "{what}: {a} vs {b}, allowed {allowed:e}"
            );
        }
    };
    let device = Device::flex();
    for bias in [true, false] {
        let layer = LinearConfig::new(40, 27).with_bias(bias).init(&device);
        let x = Tensor::<3>::random([2, 11, 40], Distribution::Normal(0.0, 1.0), &device);
        let mut size = x.clone().abs().matmul(layer.weight.val().abs().unsqueeze());
        if let Some(b) = &layer.bias {
            size = size + b.val().abs().unsqueeze();
        }
        let ours = f32_values(linear_here(&layer, x.clone()));
        let burn = f32_values(layer.forward(x));
        check(
            &format!("linear (bias {bias})"),
            ours,
            burn,
            f32_values(size),
            40 + 2,
        );
    }
    let q = Tensor::<4>::random([2, 3, 13, 8], Distribution::Normal(0.0, 1.0), &device);
    let k = Tensor::<4>::random([2, 3, 13, 8], Distribution::Normal(0.0, 1.0), &device);
    // A transposed view on the right, as attention's Q·Kᵀ has.
    let ours = matmul_here(q.clone(), k.clone().swap_dims(2, 3));
    assert_eq!(ours.dims(), [2, 3, 13, 13]);
    let size = q.clone().abs().matmul(k.clone().abs().swap_dims(2, 3));
    let burn = f32_values(q.matmul(k.swap_dims(2, 3)));
    check("matmul", f32_values(ours), burn, f32_values(size), 8 + 1);
}
