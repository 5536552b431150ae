//! Property tests: the fast kernels (im2col + GEMM, pointwise, direct depthwise, broadcasting,
//! pooling windows) against naive references written here, over random shapes.

mod common;

use cimc_interp::Tensor;
use cimc_ir::{ConvAttrs, Op, PoolAttrs};
use common::*;
use proptest::prelude::*;

/// Row-major strides of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// Every multi-index of `shape`, row-major.
fn indices(shape: &[usize]) -> Vec<Vec<usize>> {
    let n: usize = shape.iter().product();
    let st = strides(shape);
    (0..n).map(|i| (0..shape.len()).map(|d| (i / st[d]) % shape[d]).collect()).collect()
}

/// The naive N-d convolution, accumulated in f64.
fn naive_conv(
    x: &[f32],
    xs: &[usize],
    w: &[f32],
    ws: &[usize],
    b: Option<&[f32]>,
    a: &ConvAttrs,
) -> (Vec<usize>, Vec<f32>) {
    let n = ws.len() - 2;
    let (m, cg, g) = (ws[0], ws[1], a.group);
    let outs: Vec<usize> = (0..n)
        .map(|d| {
            (xs[d + 2] + a.pads[d] + a.pads[n + d] - ((ws[d + 2] - 1) * a.dilations[d] + 1))
                / a.strides[d]
                + 1
        })
        .collect();
    let oshape = [&[xs[0], m][..], &outs[..]].concat();
    let (xst, wst) = (strides(xs), strides(ws));
    let mut y = Vec::new();
    for o in indices(&oshape) {
        let (bi, mi) = (o[0], o[1]);
        let gi = mi / (m / g);
        let mut acc = b.map_or(0.0, |b| b[mi] as f64);
        for c in 0..cg {
            for k in indices(&ws[2..]) {
                let mut xi = bi * xst[0] + (gi * cg + c) * xst[1];
                let mut inside = true;
                for d in 0..n {
                    let i =
                        (o[d + 2] * a.strides[d] + k[d] * a.dilations[d]) as i64 - a.pads[d] as i64;
                    if i < 0 || i >= xs[d + 2] as i64 {
                        inside = false;
                        break;
                    }
                    xi += i as usize * xst[d + 2];
                }
                if inside {
                    let wi =
                        mi * wst[0] + c * wst[1] + (0..n).map(|d| k[d] * wst[d + 2]).sum::<usize>();
                    acc += x[xi] as f64 * w[wi] as f64;
                }
            }
        }
        y.push(acc as f32);
    }
    (oshape, y)
}

#[derive(Debug, Clone)]
struct ConvCase {
    xs: Vec<usize>,
    ws: Vec<usize>,
    attrs: ConvAttrs,
    bias: bool,
    seed: u64,
}

fn conv_case(ndim: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = ConvCase> {
    (
        ndim,
        1usize..=2,
        1usize..=3,
        1usize..=3,
        1usize..=4,
        any::<bool>(),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_flat_map(|(n, batch, g, cg, mg, depthwise, seed, bias)| {
            let (g, cg) = if depthwise { (g.max(2), 1) } else { (g, cg) };
            (
                proptest::collection::vec(
                    (1usize..=3, 1usize..=3, 1usize..=2, 0usize..=2, 0usize..=2, 1usize..=7),
                    n,
                ),
                Just((batch, g, cg, mg, seed, bias)),
            )
        })
        .prop_map(|(dims, (batch, g, cg, mg, seed, bias))| {
            let n = dims.len();
            let mut xs = vec![batch, g * cg];
            let mut ws = vec![g * mg, cg];
            let mut attrs = ConvAttrs {
                kernel: vec![],
                strides: vec![],
                dilations: vec![],
                pads: vec![0; 2 * n],
                group: g,
                clamp: None,
            };
            for (d, &(k, s, dil, pb, pe, extra)) in dims.iter().enumerate() {
                let span = (k - 1) * dil + 1;
                xs.push((span + extra).saturating_sub(pb + pe).max(1));
                ws.push(k);
                attrs.kernel.push(k);
                attrs.strides.push(s);
                attrs.dilations.push(dil);
                attrs.pads[d] = pb;
                attrs.pads[n + d] = pe;
                // Keep the padded input at least one window long.
                let padded = xs[d + 2] + pb + pe;
                if padded < span {
                    xs[d + 2] += span - padded;
                }
            }
            ConvCase { xs, ws, attrs, bias, seed }
        })
}

fn check_conv(c: &ConvCase) -> Result<(), TestCaseError> {
    let xn: usize = c.xs.iter().product();
    let wn: usize = c.ws.iter().product();
    let (xv, wv, bv) =
        (rand_vec(xn, c.seed), rand_vec(wn, c.seed ^ 1), rand_vec(c.ws[0], c.seed ^ 2));
    let x = f32t(&c.xs, &xv);
    let w = f32t(&c.ws, &wv);
    let b = f32t(&[c.ws[0]], &bv);
    let mut ins: Vec<&Tensor> = vec![&x, &w];
    if c.bias {
        ins.push(&b);
    }
    let y = ev(Op::Conv(c.attrs.clone()), &ins);
    let (shape, want) = naive_conv(&xv, &c.xs, &wv, &c.ws, c.bias.then_some(&bv[..]), &c.attrs);
    prop_assert_eq!(y.shape(), &shape[..]);
    for (i, (g, w)) in vf(&y).iter().zip(&want).enumerate() {
        prop_assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "element {}: {} vs {}", i, g, w);
    }
    // The same case in f64: f64 never takes the f32 AVX-512 plane path (`ops/conv/plane.rs`),
    // so this checks the portable paths (column tiles, channel blocks, im2col, depthwise) on
    // CPUs where f32 does take it.
    let wide =
        |shape: &[usize], v: &[f32]| f64t(shape, &v.iter().map(|&x| x as f64).collect::<Vec<_>>());
    let (x, w, b) = (wide(&c.xs, &xv), wide(&c.ws, &wv), wide(&[c.ws[0]], &bv));
    let mut ins: Vec<&Tensor> = vec![&x, &w];
    if c.bias {
        ins.push(&b);
    }
    let y = ev(Op::Conv(c.attrs.clone()), &ins);
    prop_assert_eq!(y.shape(), &shape[..]);
    let Tensor::F64(got) = &y else { panic!("f64 in, f64 out") };
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let w = *w as f64;
        prop_assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "f64 element {}: {} vs {}", i, g, w);
    }
    Ok(())
}

/// 2-D layers big enough for the tiled paths of `ops/conv/tiled.rs`: many output positions
/// and a few output channels (column tiles: Cg*9 >= 576 rows of im2col, >= 400 positions; or
/// pointwise), or at least 128 output channels per group over fewer positions (blocks of
/// output channels); and (mode 3) whole vectors of 16 output channels per group over >= 256
/// reduction rows, the channels-in-lanes path of `ops/conv/lanes.rs` (a tail block of 16-48
/// channels, position blocks cut across images, 1x1 and 3x3 kernels, strides, padding).
fn tiled_conv_case() -> impl Strategy<Value = ConvCase> {
    (
        0usize..4,
        1usize..=2,
        1usize..=2,
        1usize..=2,
        0usize..=1,
        0usize..=2,
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(|(mode, batch, g, stride, dil, pad, seed, bias)| {
            if mode == 2 {
                // Pointwise: 1x1, stride 1, no padding, >= 3136 positions for >= 64 channels;
                // whole panels of 8 output channels too (written straight to the output at
                // batch 1 by the plane path).
                let mg =
                    if seed % 2 == 0 { 8 * (1 + seed as usize % 3) } else { 1 + seed as usize % 5 };
                let cg = 64 + (seed as usize % 17);
                let side = 56 + seed as usize % 5;
                let attrs = ConvAttrs {
                    kernel: vec![1, 1],
                    strides: vec![1; 2],
                    dilations: vec![1; 2],
                    pads: vec![0; 4],
                    group: g,
                    clamp: None,
                };
                let (xs, ws) = (vec![batch, g * cg, side, side + 1], vec![g * mg, cg, 1, 1]);
                return ConvCase { xs, ws, attrs, bias, seed };
            }
            if mode == 3 {
                let mg = 16 * (1 + seed as usize % 5);
                let k = if seed % 3 == 0 { 1 } else { 3 };
                let cg = if k == 1 { 256 + seed as usize % 9 } else { 29 + seed as usize % 7 };
                let side = 3 + (seed >> 8) as usize % 13;
                let attrs = ConvAttrs {
                    kernel: vec![k, k],
                    strides: vec![stride; 2],
                    dilations: vec![1 + dil; 2],
                    pads: vec![pad.min(k - 1); 4],
                    group: g,
                    clamp: None,
                };
                let (xs, ws) = (vec![batch, g * cg, side + 2, side + 3], vec![g * mg, cg, k, k]);
                return ConvCase { xs, ws, attrs, bias, seed };
            }
            let columns = mode == 0;
            let (cg, mg, side) = if columns {
                (64 + 4 * (seed as usize % 5), 1 + seed as usize % 5, 44 + seed as usize % 9)
            } else {
                (40 + (seed as usize % 9), 128 + 8 * (seed as usize % 5), 14 + seed as usize % 3)
            };
            let stride = if columns { stride } else { 1 };
            let dil = 1 + dil;
            let attrs = ConvAttrs {
                kernel: vec![3, 3],
                strides: vec![stride; 2],
                dilations: vec![dil; 2],
                pads: vec![pad, pad, pad.saturating_sub(1), pad],
                group: g,
                clamp: None,
            };
            ConvCase {
                xs: vec![batch, g * cg, side, side + 1],
                ws: vec![g * mg, cg, 3, 3],
                attrs,
                bias,
                seed,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn conv2d_tiled_matches_naive(c in tiled_conv_case()) {
        check_conv(&c)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn conv2d_matches_naive(c in conv_case(2..=2)) {
        check_conv(&c)?;
    }

    #[test]
    fn conv1d_and_3d_match_naive(c in conv_case(1..=3)) {
        check_conv(&c)?;
    }

    #[test]
    fn gemm_matches_naive(m in 1usize..20, k in 1usize..40, n in 1usize..20, ta: bool, tb: bool,
                          alpha in -2.0f32..2.0, beta in -2.0f32..2.0, cmode in 0usize..4, seed: u64) {
        let a = rand_vec(m * k, seed);
        let b = rand_vec(k * n, seed ^ 7);
        let cshape: Vec<usize> = match cmode { 0 => vec![], 1 => vec![n], 2 => vec![m, 1], _ => vec![m, n] };
        let c = rand_vec(cshape.iter().product(), seed ^ 9);
        let at = f32t(&if ta { [k, m] } else { [m, k] }, &a);
        let bt = f32t(&if tb { [n, k] } else { [k, n] }, &b);
        let ct = f32t(&cshape, &c);
        let y = ev(Op::Gemm { alpha, beta, trans_a: ta, trans_b: tb, clamp: None }, &[&at, &bt, &ct]);
        let yd = vf(&y);
        let cs = |i: usize, j: usize| match cmode { 0 => c[0], 1 => c[j], 2 => c[i], _ => c[i * n + j] };
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k).map(|p| {
                    let av = if ta { a[p * m + i] } else { a[i * k + p] };
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                    av as f64 * bv as f64
                }).sum();
                let want = alpha as f64 * dot + beta as f64 * cs(i, j) as f64;
                prop_assert!((yd[i * n + j] as f64 - want).abs() < 1e-4 * (1.0 + want.abs()));
            }
        }
    }

    #[test]
    fn add_broadcast_matches_naive(ash in proptest::collection::vec(1usize..4, 0..5),
                                   mask in proptest::collection::vec(any::<bool>(), 5),
                                   drop in 0usize..3, seed: u64) {
        // b's shape: a's suffix with some dims set to 1.
        let drop = drop.min(ash.len());
        let bsh: Vec<usize> = ash[drop..].iter().zip(&mask).map(|(&d, &m)| if m { 1 } else { d }).collect();
        let (av, bv) = (rand_vec(ash.iter().product(), seed), rand_vec(bsh.iter().product(), seed ^ 3));
        let y = ev(Op::Sub, &[&f32t(&ash, &av), &f32t(&bsh, &bv)]);
        let y2 = ev(Op::Sub, &[&f32t(&bsh, &bv), &f32t(&ash, &av)]);
        prop_assert_eq!(y.shape(), &ash[..]);
        let (ast, bst) = (strides(&ash), strides(&bsh));
        for (i, idx) in indices(&ash).iter().enumerate() {
            let ai: usize = idx.iter().zip(&ast).map(|(i, s)| i * s).sum();
            let bi: usize = (0..bsh.len()).map(|d| if bsh[d] == 1 { 0 } else { idx[d + drop] * bst[d] }).sum();
            prop_assert_eq!(vf(&y)[i], av[ai] - bv[bi]);
            prop_assert_eq!(vf(&y2)[i], bv[bi] - av[ai]);
        }
    }

    #[test]
    fn pools_match_naive(n in 1usize..=3, dims in proptest::collection::vec((1usize..=3, 1usize..=3, 1usize..=2, 0usize..=2, 1usize..=6), 3),
                         ceil: bool, include: bool, seed: u64) {
        let dims = &dims[..n];
        let mut xs = vec![1, 2];
        let mut a = PoolAttrs { kernel: vec![], strides: vec![], dilations: vec![], pads: vec![0; 2 * n],
                                ceil_mode: ceil, count_include_pad: include, storage_order: 0 };
        for (d, &(k, s, dil, p, extra)) in dims.iter().enumerate() {
            let p = p.min(k - 1);
            a.kernel.push(k); a.strides.push(s); a.dilations.push(dil);
            a.pads[d] = p; a.pads[n + d] = p;
            xs.push(((k - 1) * dil + 1 + extra).saturating_sub(2 * p).max(1));
        }
        let xv = rand_vec(xs.iter().product(), seed);
        let x = f32t(&xs, &xv);
        let (ymax, yavg) = match (cimc_interp::eval_node(&Op::MaxPool(a.clone()), &[&x], 1),
                                  cimc_interp::eval_node(&Op::AveragePool(a.clone()), &[&x], 1)) {
            (Ok(m), Ok(v)) => (m[0].clone(), v[0].clone()),
            _ => return Ok(()), // window larger than the padded input: an error, fine
        };
        // The indices path (general windows) agrees with the values-only path.
        let with_idx = cimc_interp::eval_node(&Op::MaxPool(a.clone()), &[&x], 2).unwrap();
        prop_assert_eq!(&with_idx[0], &ymax);
        let outs = &ymax.shape()[2..];
        let xst = strides(&xs);
        for (j, o) in indices(ymax.shape()).iter().enumerate() {
            let (mut mx, mut sum, mut cnt, mut padcnt) = (f32::NEG_INFINITY, 0.0f32, 0usize, 1usize);
            for d in 0..n {
                padcnt *= (0..a.kernel[d]).filter(|&k| {
                    ((o[d + 2] * a.strides[d] + k * a.dilations[d]) as i64 - a.pads[d] as i64) < (xs[d + 2] + a.pads[n + d]) as i64
                }).count();
            }
            for k in indices(&a.kernel) {
                let mut xi = o[0] * xst[0] + o[1] * xst[1];
                let mut inside = true;
                for d in 0..n {
                    let i = (o[d + 2] * a.strides[d] + k[d] * a.dilations[d]) as i64 - a.pads[d] as i64;
                    if i < 0 || i >= xs[d + 2] as i64 { inside = false; break; }
                    xi += i as usize * xst[d + 2];
                }
                if inside { mx = mx.max(xv[xi]); sum += xv[xi]; cnt += 1; }
            }
            prop_assert!(outs.iter().all(|&o| o >= 1));
            if cnt > 0 {
                prop_assert_eq!(vf(&ymax)[j], mx);
                let want = sum / (if include { padcnt } else { cnt }) as f32;
                prop_assert!((vf(&yavg)[j] - want).abs() < 1e-5, "{} vs {}", vf(&yavg)[j], want);
            }
        }
    }
}
