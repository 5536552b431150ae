//! The backward of Conv (2-D: groups, strides, pads, dilations, a fused clamp) and of the
//! pools (N-d, on the forward kernels' own windows, so padding, dilation and `ceil_mode`
//! match the forward run exactly).
//!
//! Conv runs per sample as im2col matrix products: `dW_g += dY_g · colsᵀ`,
//! `dcols = W_gᵀ · dY_g` scattered back into `dx`. Samples are processed in fixed chunks on
//! rayon's pool and the chunks' weight gradients summed in chunk order, so the result does
//! not depend on the number of threads.

use super::node_err;
use super::ops::{arr, clamp_mask};
use crate::error::Result;
use crate::ops::pool;
use crate::tensor::Tensor;
use cimc_ir::{ConvAttrs, Node, PoolAttrs};
use ndarray::{Array2, ArrayD, ArrayView2, Axis, IxDyn};
use rayon::prelude::*;

type Grads = Vec<Option<ArrayD<f64>>>;

/// Samples per chunk of the parallel conv backward (fixed: determinism).
const CHUNK: usize = 4;

/// Geometry of a 2-D convolution.
struct Geo {
    c: usize,
    h: usize,
    w: usize,
    m: usize,
    cg: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    group: usize,
}

impl Geo {
    /// The input offset (within one sample) read by row `r` of group `g`'s im2col matrix at
    /// output position `q`, or `None` in the padding.
    #[inline]
    fn tap(&self, a: &ConvAttrs, g: usize, r: usize, q: usize) -> Option<usize> {
        let c = r / (self.kh * self.kw);
        let (ki, kj) = ((r / self.kw) % self.kh, r % self.kw);
        let (oy, ox) = (q / self.ow, q % self.ow);
        let iy = (oy * a.strides[0] + ki * a.dilations[0]) as i64 - a.pads[0] as i64;
        let ix = (ox * a.strides[1] + kj * a.dilations[1]) as i64 - a.pads[1] as i64;
        if iy < 0 || ix < 0 || iy >= self.h as i64 || ix >= self.w as i64 {
            return None;
        }
        Some(((g * self.cg + c) * self.h + iy as usize) * self.w + ix as usize)
    }
}

pub(super) fn conv_backward(
    node: &Node,
    a: &ConvAttrs,
    ins: &[&Tensor],
    y: &ArrayD<f64>,
    dy: &ArrayD<f64>,
    need: &[bool],
) -> Result<Grads> {
    let dy = match a.clamp {
        Some((lo, hi)) => clamp_mask(dy, y, lo as f64, hi as f64),
        None => dy.clone(),
    };
    let (x, wt) = (arr(node, ins[0])?, arr(node, ins[1])?);
    let (xs, ws, ys) = (x.shape(), wt.shape(), dy.shape());
    if xs.len() != 4 || ws.len() != 4 || a.strides.len() != 2 || a.pads.len() != 4 {
        return Err(node_err(node, format!("backward of 2-D convolutions only, x is {xs:?}")));
    }
    let geo = Geo {
        c: xs[1],
        h: xs[2],
        w: xs[3],
        m: ws[0],
        cg: ws[1],
        kh: ws[2],
        kw: ws[3],
        oh: ys[2],
        ow: ys[3],
        group: a.group.max(1),
    };
    if geo.cg * geo.group != geo.c || !geo.m.is_multiple_of(geo.group) {
        return Err(node_err(node, "channels do not fit the groups"));
    }
    let n = xs[0];
    let (mg, kk, p) = (geo.m / geo.group, geo.cg * geo.kh * geo.kw, geo.oh * geo.ow);
    let xd = x.as_standard_layout();
    let wd = wt.as_standard_layout();
    let dyd = dy.as_standard_layout();
    let (xd, wd, dyd) = (
        xd.as_slice().expect("invariant: standard layout"),
        wd.as_slice().expect("invariant: standard layout"),
        dyd.as_slice().expect("invariant: standard layout"),
    );
    let sample_in = geo.c * geo.h * geo.w;
    let (need_x, need_w) = (need[0], need.get(1) == Some(&true));
    let chunks: Vec<usize> = (0..n).step_by(CHUNK).collect();
    let parts: Vec<(Vec<f64>, Vec<f64>)> = chunks
        .par_iter()
        .map(|&s0| {
            let s1 = (s0 + CHUNK).min(n);
            let mut dx = if need_x { vec![0.0; (s1 - s0) * sample_in] } else { Vec::new() };
            let mut dw = if need_w { vec![0.0; geo.m * kk] } else { Vec::new() };
            let mut cols = Array2::<f64>::zeros((kk, p));
            for s in s0..s1 {
                let xs = &xd[s * sample_in..(s + 1) * sample_in];
                for g in 0..geo.group {
                    let dyg = ArrayView2::from_shape(
                        (mg, p),
                        &dyd[(s * geo.m + g * mg) * p..(s * geo.m + (g + 1) * mg) * p],
                    )
                    .expect("invariant: mg·p elements");
                    let wg = ArrayView2::from_shape((mg, kk), &wd[g * mg * kk..(g + 1) * mg * kk])
                        .expect("invariant: mg·kk elements");
                    if need_w {
                        for r in 0..kk {
                            for q in 0..p {
                                cols[[r, q]] = geo.tap(a, g, r, q).map_or(0.0, |o| xs[o]);
                            }
                        }
                        let d = dyg.dot(&cols.t());
                        let dwg = &mut dw[g * mg * kk..(g + 1) * mg * kk];
                        for (acc, v) in dwg.iter_mut().zip(d.iter()) {
                            *acc += v;
                        }
                    }
                    if need_x {
                        let dcols = wg.t().dot(&dyg);
                        let dxs = &mut dx[(s - s0) * sample_in..(s - s0 + 1) * sample_in];
                        for r in 0..kk {
                            for q in 0..p {
                                if let Some(o) = geo.tap(a, g, r, q) {
                                    dxs[o] += dcols[[r, q]];
                                }
                            }
                        }
                    }
                }
            }
            (dx, dw)
        })
        .collect();
    let mut grads: Grads = vec![None; ins.len()];
    if need_x {
        let all: Vec<f64> = parts.iter().flat_map(|(d, _)| d.iter().copied()).collect();
        grads[0] = Some(ArrayD::from_shape_vec(IxDyn(xs), all).expect("invariant: n·c·h·w"));
    }
    if need_w {
        let mut dw = vec![0.0; geo.m * kk];
        for (_, part) in &parts {
            for (acc, v) in dw.iter_mut().zip(part) {
                *acc += v;
            }
        }
        grads[1] = Some(ArrayD::from_shape_vec(IxDyn(ws), dw).expect("invariant: weight size"));
    }
    if ins.len() > 2 && need[2] {
        let db = dy.sum_axis(Axis(0)).sum_axis(Axis(1)).sum_axis(Axis(1));
        grads[2] = Some(
            db.into_shape_with_order(IxDyn(ins[2].shape()))
                .map_err(|e| node_err(node, format!("bias shape: {e}")))?,
        );
    }
    Ok(grads)
}

/// Shared loop of the pool backwards: `f(plane input, plane dy, plane dx, windows, p)`.
fn pool_backward(
    node: &Node,
    a: &PoolAttrs,
    x: &ArrayD<f64>,
    dy: &ArrayD<f64>,
    f: impl Fn(&[f64], &[f64], &mut [f64], &pool::Windows, usize) + Sync,
) -> Result<ArrayD<f64>> {
    let xs = x.shape().to_vec();
    let (planes, plane, outs) =
        pool::geometry(a, &xs).map_err(|e| crate::name_error(e, &node.name, &node.op))?;
    let win = pool::windows(a, &xs[2..], &outs);
    let p: usize = outs.iter().product();
    if dy.len() != planes * p {
        return Err(node_err(node, "the output gradient does not fit the pool's output"));
    }
    let xd = x.as_standard_layout();
    let dyd = dy.as_standard_layout();
    let (xd, dyd) = (
        xd.as_slice().expect("invariant: standard layout"),
        dyd.as_slice().expect("invariant: standard layout"),
    );
    let mut dx = vec![0.0; planes * plane];
    if plane > 0 {
        dx.par_chunks_mut(plane).enumerate().for_each(|(pi, dxp)| {
            f(&xd[pi * plane..(pi + 1) * plane], &dyd[pi * p..(pi + 1) * p], dxp, &win, p)
        });
    }
    Ok(ArrayD::from_shape_vec(IxDyn(&xs), dx).expect("invariant: planes·plane elements"))
}

/// MaxPool: each output's gradient goes to the first maximum of its window (the tap the
/// forward kernel picked).
pub(super) fn max_pool_backward(
    node: &Node,
    a: &PoolAttrs,
    x: &ArrayD<f64>,
    dy: &ArrayD<f64>,
) -> Result<ArrayD<f64>> {
    pool_backward(node, a, x, dy, |xp, dyp, dxp, win, p| {
        for j in 0..p {
            let taps = &win.offs[win.start[j]..win.start[j + 1]];
            if let Some((&first, rest)) = taps.split_first() {
                let (mut best, mut at) = (xp[first], first);
                for &o in rest {
                    if xp[o] > best {
                        best = xp[o];
                        at = o;
                    }
                }
                dxp[at] += dyp[j];
            }
        }
    })
}

/// AveragePool: each output's gradient spread evenly over the taps it divided by.
pub(super) fn average_pool_backward(
    node: &Node,
    a: &PoolAttrs,
    x: &ArrayD<f64>,
    dy: &ArrayD<f64>,
) -> Result<ArrayD<f64>> {
    let include_pad = a.count_include_pad;
    pool_backward(node, a, x, dy, |_, dyp, dxp, win, p| {
        for j in 0..p {
            let taps = &win.offs[win.start[j]..win.start[j + 1]];
            let count = if include_pad { win.padded_count[j] } else { taps.len() };
            for &o in taps {
                dxp[o] += dyp[j] / count as f64;
            }
        }
    })
}
