//! N-d convolution (1-D, 2-D, 3-D, ...; groups, depthwise, strides, dilations, pads).
//!
//! The paths, all producing `[N, M, O..]` row-major:
//! - f32 2-D layers on CPUs with AVX-512 (all but depthwise): one product over the padded,
//!   stride-split input plane with the weights packed at load, no im2col (`conv/plane.rs`,
//!   micro-kernels in `conv/avx512.rs`), with the output channels in the vector lanes for
//!   layers with whole vectors of channels and long reductions (`conv/lanes.rs`; on CPUs
//!   with AVX2 but not AVX-512 these layers take it too, `conv/avx2.rs`);
//! - pointwise (1x1 kernel, stride 1, no padding): each group's input `[Cg, P]` already is the
//!   right-hand matrix, one GEMM per image and group;
//! - 2-D with one input channel per group (depthwise, any channel multiplier): on CPUs with
//!   AVX-512 and a horizontal stride of 1 or 2, vectors of 16 outputs read in place through a
//!   table of tap offsets and lane masks (`conv/depthwise_vec.rs`), other strides over the
//!   plane path's padded copy; elsewhere a direct loop over output rows (`conv/depthwise.rs`);
//!   all three give the same bits, and are parallel over output channels;
//! - 2-D layers with many output positions: column tiles, each expanded (im2col), multiplied
//!   and finished on one thread while in cache, tiles in parallel (`conv/tiled.rs`);
//! - everything else: im2col into `[Cg*prod(K), P]` (rows filled in parallel), then one GEMM
//!   per image and group with the weights `[Mg, Cg*prod(K)]` (ONNX's own layout).
//!
//! A fused [`Epilogue`] (BatchNorm's per-channel affine, then an activation) is applied per
//! output row right after the bias, while the row is in cache.

use super::activation::Act;
use super::gemm::{gemm, GemmFloat, Mat};
use super::{arity, bad, data_of, same_dtype, unsupported, PAR_MIN};
use crate::error::{InterpError, Result};
use crate::tensor::Tensor;
use cimc_ir::ConvAttrs;
use ndarray::ArrayD;
use rayon::prelude::*;

mod avx2;
mod avx512;
mod depthwise;
mod depthwise_vec;
mod lanes;
mod plane;
mod tiled;

/// What the runner fused after a convolution: `y = act(y * a[m] + b[m])`.
#[derive(Clone, Debug)]
pub(crate) struct Epilogue<T> {
    pub affine: Option<(Vec<T>, Vec<T>)>,
    pub act: Option<Act>,
}

impl<T> Default for Epilogue<T> {
    fn default() -> Self {
        Epilogue { affine: None, act: None }
    }
}

/// A convolution with its weights checked and copied once.
#[derive(Clone, Debug)]
pub(crate) struct PreparedConv<T> {
    attrs: ConvAttrs,
    /// `[M, Cg, K..]` row-major (ONNX layout): group g's matrix is rows `g*Mg..(g+1)*Mg`.
    /// Empty when `plane` holds the weights (they are not kept twice; [`Self::weights`]
    /// unpacks them for the rare path that needs this layout).
    w: Vec<T>,
    bias: Option<Vec<T>>,
    m: usize,
    cg: usize,
    kernel: Vec<usize>,
    /// The weights packed for the plane path (`conv/plane.rs`), when the layer takes it.
    plane: Option<plane::PlanePack>,
}

/// Bias, BatchNorm affine and activation on a run of one output channel's values.
pub(crate) fn finish_seg<T: super::num::Float>(
    r: &mut [T],
    bias: Option<T>,
    affine: Option<(T, T)>,
    act: Option<Act>,
) {
    // One pass for bias and affine, each operation rounded as when done in turn.
    match (bias, affine) {
        (Some(c), Some((a, b))) => r.iter_mut().for_each(|v| *v = (*v + c) * a + b),
        (Some(c), None) => r.iter_mut().for_each(|v| *v += c),
        (None, Some((a, b))) => r.iter_mut().for_each(|v| *v = *v * a + b),
        (None, None) => {}
    }
    if let Some(act) = act {
        act.apply_seq(r);
    }
}

/// `ceil(a / b)` for a possibly negative `a` and positive `b`.
fn ceil_div(a: i64, b: i64) -> i64 {
    -((-a).div_euclid(b))
}

/// The output positions `o` in `[0, out)` whose input coordinate `o*s - pad + off` lies in
/// `[0, len)`: a half-open range.
#[inline]
pub(crate) fn valid_range(
    out: usize,
    len: usize,
    s: usize,
    pad: usize,
    off: usize,
) -> (usize, usize) {
    let (s, shift) = (s as i64, pad as i64 - off as i64);
    let lo = ceil_div(shift, s).clamp(0, out as i64);
    let hi = ceil_div(len as i64 + shift, s).clamp(lo, out as i64);
    (lo as usize, hi as usize)
}

impl<T: GemmFloat> PreparedConv<T> {
    pub(crate) fn new(attrs: &ConvAttrs, w: &ArrayD<T>, bias: Option<&ArrayD<T>>) -> Result<Self> {
        let wsh = w.shape();
        let n = wsh.len().saturating_sub(2);
        if wsh.len() < 3 {
            return Err(bad(format!("weights must have rank >= 3, got {wsh:?}")));
        }
        let kernel = wsh[2..].to_vec();
        if !attrs.kernel.is_empty() && attrs.kernel != kernel {
            return Err(bad(format!("kernel {:?} differs from weights {wsh:?}", attrs.kernel)));
        }
        if attrs.strides.len() != n || attrs.dilations.len() != n || attrs.pads.len() != 2 * n {
            return Err(bad(format!(
                "attributes do not fit {n} spatial dims: strides {:?}, dilations {:?}, pads {:?}",
                attrs.strides, attrs.dilations, attrs.pads
            )));
        }
        if attrs.strides.contains(&0) || attrs.dilations.contains(&0) {
            return Err(bad("strides and dilations must be >= 1"));
        }
        let (m, cg, g) = (wsh[0], wsh[1], attrs.group);
        if g == 0 || m % g != 0 {
            return Err(bad(format!("{m} output channels do not split into {g} groups")));
        }
        let bias = match bias {
            Some(b) if b.len() != m => {
                return Err(bad(format!(
                    "bias has {} elements, weights {wsh:?} have {m} outputs",
                    b.len()
                )))
            }
            Some(b) => Some(data_of(b).into_owned()),
            None => None,
        };
        let w = data_of(w);
        let plane = match T::f32s(&w) {
            Some(wf) if plane::applies(&kernel, cg) => {
                Some(plane::PlanePack::new(wf, m, w.len() / m.max(1), g))
            }
            Some(wf) if lanes::applies_without_panels(&kernel, cg, m / g, w.len() / m.max(1)) => {
                Some(plane::PlanePack::new(wf, m, w.len() / m.max(1), g))
            }
            _ => None,
        };
        // Packed, the weights are not copied in ONNX layout too (nor ever held twice).
        let w = if plane.is_some() { Vec::new() } else { w.into_owned() };
        Ok(PreparedConv { attrs: attrs.clone(), w, bias, m, cg, kernel, plane })
    }

    /// The weights in ONNX layout `[M, Cg, K..]`, unpacked from the plane pack if that holds
    /// them.
    fn weights(&self) -> std::borrow::Cow<'_, [T]> {
        match &self.plane {
            Some(pack) if self.w.is_empty() => {
                let kk = self.cg * self.kernel.iter().product::<usize>();
                let unpacked = pack.unpack(self.m, kk, self.attrs.group);
                std::borrow::Cow::Owned(unpacked.into_iter().map(|v| T::of(v as f64)).collect())
            }
            _ => std::borrow::Cow::Borrowed(&self.w),
        }
    }

    /// The output spatial shape for an input spatial shape.
    fn out_spatial(&self, ins: &[usize]) -> Result<Vec<usize>> {
        let n = self.kernel.len();
        (0..n)
            .map(|d| {
                let span = (self.kernel[d] - 1) * self.attrs.dilations[d] + 1;
                let padded = ins[d] + self.attrs.pads[d] + self.attrs.pads[n + d];
                if padded < span {
                    return Err(bad(format!(
                        "spatial dim {d}: padded input {padded} is smaller than the window {span}"
                    )));
                }
                Ok((padded - span) / self.attrs.strides[d] + 1)
            })
            .collect()
    }

    /// Runs the convolution on `x` `[N, C, D..]`, then the bias and `epi`.
    pub(crate) fn run(&self, x: &ArrayD<T>, epi: &Epilogue<T>) -> Result<ArrayD<T>> {
        let out = vec![T::ZERO; self.out_len(x.shape())?];
        self.run_into(x, epi, out)
    }

    /// The number of output elements for an input of shape `xs` (checked as in `run`).
    pub(crate) fn out_len(&self, xs: &[usize]) -> Result<usize> {
        let n = self.kernel.len();
        if xs.len() != n + 2 {
            return Err(bad(format!("input {xs:?} does not have {} spatial dims", n)));
        }
        Ok(xs[0] * self.m * self.out_spatial(&xs[2..])?.iter().product::<usize>())
    }

    /// [`PreparedConv::run`] writing into `out`, a buffer of [`PreparedConv::out_len`]
    /// elements whose contents do not matter (every element is overwritten).
    pub(crate) fn run_into(
        &self,
        x: &ArrayD<T>,
        epi: &Epilogue<T>,
        out: Vec<T>,
    ) -> Result<ArrayD<T>> {
        let xs = x.shape();
        let n = self.kernel.len();
        let g = self.attrs.group;
        if xs.len() != n + 2 || xs[1] != self.cg * g {
            return Err(bad(format!(
                "input {xs:?} does not fit weights [{}, {}, {:?}] with {g} groups",
                self.m, self.cg, self.kernel
            )));
        }
        let outs = self.out_spatial(&xs[2..])?;
        let batch = xs[0];
        let p: usize = outs.iter().product();
        let kk: usize = self.cg * self.kernel.iter().product::<usize>();
        let xd = data_of(x);
        // The output buffer as the `[N, M, O..]` result.
        let shaped =
            |out: Vec<T>| Ok(super::array(&[&[batch, self.m][..], &outs[..]].concat(), out));
        let mut out = out;
        if out.len() != batch * self.m * p {
            return Err(InterpError::Internal("conv output buffer of the wrong size".into()));
        }
        let pointwise = self.kernel.iter().all(|&k| k == 1)
            && self.attrs.strides.iter().all(|&s| s == 1)
            && self.attrs.pads.iter().all(|&p| p == 0);
        if let (Some(xf), Some(of)) = (T::f32s(&xd), T::f32s_mut(&mut out)) {
            let fin = plane::Finish {
                bias: self.bias.as_deref().and_then(T::f32s),
                affine: epi.affine.as_ref().and_then(|(a, b)| Some((T::f32s(a)?, T::f32s(b)?))),
                act: epi.act,
            };
            if let Some(pack) = &self.plane {
                self.run_plane(pack, xf, xs, &outs, of, fin);
                return shaped(out);
            }
            if let Some(wf) =
                T::f32s(&self.w).filter(|_| plane::applies_depthwise(&self.kernel, self.cg))
            {
                self.run_depthwise_plane(wf, xf, xs, &outs, of, fin);
                return shaped(out);
            }
        }
        let direct = n == 2 && self.cg == 1 && !pointwise;
        if direct {
            let plane = xs[2..].iter().product::<usize>() * self.cg * g;
            for b in 0..batch {
                let ob = &mut out[b * self.m * p..(b + 1) * self.m * p];
                self.depthwise_2d(&xd[b * plane..(b + 1) * plane], &xs[2..], &outs, ob, epi);
            }
            return shaped(out);
        }
        if let Some(nt) = self.tile_width(p, kk) {
            let (plane, c, mg) = (xs[2..].iter().product::<usize>(), self.cg * g, self.m / g);
            for b in 0..batch {
                for gi in 0..g {
                    let x0 = (b * c + gi * self.cg) * plane;
                    let o0 = (b * self.m + gi * mg) * p;
                    let (xg, og) = (&xd[x0..x0 + self.cg * plane], &mut out[o0..o0 + mg * p]);
                    self.convolve_tiled(xg, &xs[2..], &outs, og, gi, nt, pointwise, epi);
                }
            }
            return shaped(out);
        }
        if !pointwise && self.m / g >= 2 * tiled::ROW_TILE && kk * p >= PAR_MIN {
            let (plane, c, mg) = (xs[2..].iter().product::<usize>(), self.cg * g, self.m / g);
            T::with_scratch(kk * p, |col| {
                for b in 0..batch {
                    for gi in 0..g {
                        let x0 = (b * c + gi * self.cg) * plane;
                        let o0 = (b * self.m + gi * mg) * p;
                        let (xg, og) = (&xd[x0..x0 + self.cg * plane], &mut out[o0..o0 + mg * p]);
                        self.convolve_row_tiled(xg, &xs[2..], &outs, og, gi, col, epi);
                    }
                }
            });
            return shaped(out);
        }
        let col_len = if pointwise { 0 } else { kk * p };
        T::with_scratch(col_len, |col| {
            self.convolve(&xd, &xs[2..], &outs, &mut out, col, pointwise)
        });
        self.finish(&mut out, p, epi);
        shaped(out)
    }

    /// The convolution proper (no bias) of every image and group of `xd` (`[N, C, ins..]`)
    /// into `out`; `col` is the im2col scratch (empty for the pointwise path).
    fn convolve(
        &self,
        xd: &[T],
        ins: &[usize],
        outs: &[usize],
        out: &mut [T],
        col: &mut [T],
        pointwise: bool,
    ) {
        let g = self.attrs.group;
        let plane: usize = ins.iter().product();
        let p: usize = outs.iter().product();
        let c = self.cg * g;
        let batch = xd.len().checked_div(c * plane).unwrap_or(0);
        let mg = self.m / g;
        let kk: usize = self.cg * self.kernel.iter().product::<usize>();
        if p == 0 {
            return;
        }
        for b in 0..batch {
            let xb = &xd[b * c * plane..(b + 1) * c * plane];
            let ob = &mut out[b * self.m * p..(b + 1) * self.m * p];
            for gi in 0..g {
                let xg = &xb[gi * self.cg * plane..(gi + 1) * self.cg * plane];
                let rhs: &[T] = if pointwise {
                    xg
                } else {
                    self.im2col(xg, ins, outs, col);
                    col
                };
                let wg = &self.w[gi * mg * kk..(gi + 1) * mg * kk];
                let og = &mut ob[gi * mg * p..(gi + 1) * mg * p];
                gemm(mg, kk, p, T::of(1.0), Mat::rows(wg, kk), Mat::rows(rhs, p), T::ZERO, og, p);
            }
        }
    }

    /// Bias, then the epilogue, per output row `[p]` (rows are `(n, m)` pairs).
    fn finish(&self, out: &mut [T], p: usize, epi: &Epilogue<T>) {
        let bias = self.bias.as_ref();
        if p == 0 || (bias.is_none() && epi.affine.is_none() && epi.act.is_none()) {
            return;
        }
        let m = self.m;
        let row = |(i, r): (usize, &mut [T])| self.epilogue_row(i % m, r, epi);
        if out.len() >= PAR_MIN {
            out.par_chunks_mut(p).enumerate().for_each(row);
        } else {
            out.chunks_mut(p).enumerate().for_each(row);
        }
    }

    /// Bias, then the epilogue, on part of output channel `ch`'s row.
    fn epilogue_row(&self, ch: usize, r: &mut [T], epi: &Epilogue<T>) {
        let bias = self.bias.as_ref().map(|b| b[ch]);
        finish_seg(r, bias, epi.affine.as_ref().map(|(a, b)| (a[ch], b[ch])), epi.act);
    }

    /// Fills `col` `[Cg*prod(K), P]` from one group's input `[Cg, D..]`.
    fn im2col(&self, xg: &[T], ins: &[usize], outs: &[usize], col: &mut [T]) {
        let p: usize = outs.iter().product();
        let rows = self.cg * self.kernel.iter().product::<usize>();
        let fill = |(r, row): (usize, &mut [T])| self.im2col_row(xg, ins, outs, r, 0, p, row);
        if rows * p >= PAR_MIN {
            col[..rows * p].par_chunks_mut(p).enumerate().for_each(fill);
        } else {
            col[..rows * p].chunks_mut(p).enumerate().for_each(fill);
        }
    }

    /// Columns `n0..n1` of row `r` of one group's im2col matrix `[Cg*prod(K), P]` into `dst`.
    #[allow(clippy::too_many_arguments)]
    fn im2col_row(
        &self,
        xg: &[T],
        ins: &[usize],
        outs: &[usize],
        r: usize,
        n0: usize,
        n1: usize,
        dst: &mut [T],
    ) {
        let n = ins.len();
        let ksz: usize = self.kernel.iter().product();
        let plane: usize = ins.iter().product();
        let (st, dil, pads) = (&self.attrs.strides, &self.attrs.dilations, &self.attrs.pads);
        let last = n - 1;
        let (ol, il) = (outs[last], ins[last]);
        if ol == 0 || n1 <= n0 {
            return;
        }
        let c = r / ksz;
        let mut rem = r % ksz;
        let mut koff = [0usize; 8];
        let mut koff_v = vec![0usize; if n > 8 { n } else { 0 }];
        let koff: &mut [usize] = if n <= 8 { &mut koff[..n] } else { &mut koff_v };
        for d in (0..n).rev() {
            koff[d] = (rem % self.kernel[d]) * dil[d];
            rem /= self.kernel[d];
        }
        let xc = &xg[c * plane..(c + 1) * plane];
        let (lo, hi) = valid_range(ol, il, st[last], pads[last], koff[last]);
        for seg in n0 / ol..n1.div_ceil(ol) {
            // Columns of this output row that are asked for, as offsets within the row.
            let (a, b) = (n0.max(seg * ol) - seg * ol, n1.min((seg + 1) * ol) - seg * ol);
            let out = &mut dst[seg * ol + a - n0..seg * ol + b - n0];
            // Input offset of this outer output position, if inside the input.
            let (mut base, mut q) = (Some(0usize), seg);
            for d in (0..last).rev() {
                let o = q % outs[d];
                q /= outs[d];
                let i = (o * st[d] + koff[d]) as i64 - pads[d] as i64;
                if i < 0 || i >= ins[d] as i64 {
                    base = None;
                    break;
                }
                let stride: usize = ins[d + 1..].iter().product();
                base = base.map(|bs| bs + i as usize * stride);
            }
            let Some(base) = base else {
                out.iter_mut().for_each(|v| *v = T::ZERO);
                continue;
            };
            let (vlo, vhi) = (lo.clamp(a, b), hi.clamp(a, b));
            out[..vlo - a].iter_mut().for_each(|v| *v = T::ZERO);
            out[vhi.max(vlo) - a..].iter_mut().for_each(|v| *v = T::ZERO);
            if vhi > vlo {
                let i0 = base + vlo * st[last] + koff[last] - pads[last];
                let o = &mut out[vlo - a..vhi - a];
                if st[last] == 1 {
                    o.copy_from_slice(&xc[i0..i0 + (vhi - vlo)]);
                } else {
                    let src = xc[i0..].iter().step_by(st[last]);
                    o.iter_mut().zip(src).for_each(|(v, &x)| *v = x);
                }
            }
        }
    }
}

impl PreparedConv<f32> {
    /// [`PreparedConv::run`] with every partial sum of every dot product rounded to `fmt`
    /// (`ops/rounded_acc.rs`): im2col per image and group (every path, depthwise and pointwise
    /// included), the rounded loop, the bias as one more rounded add, then `epi` in f32.
    pub(crate) fn run_rounded_acc(
        &self,
        x: &ArrayD<f32>,
        epi: &Epilogue<f32>,
        fmt: crate::format::FloatFormat,
    ) -> Result<ArrayD<f32>> {
        let xs = x.shape();
        let (n, g) = (self.kernel.len(), self.attrs.group);
        if xs.len() != n + 2 || xs[1] != self.cg * g {
            return Err(bad(format!("input {xs:?} does not fit the weights with {g} groups")));
        }
        let ins = &xs[2..];
        let outs = self.out_spatial(ins)?;
        let (batch, p) = (xs[0], outs.iter().product::<usize>());
        let kk: usize = self.cg * self.kernel.iter().product::<usize>();
        let (plane, mg) = (ins.iter().product::<usize>(), self.m / g);
        let xd = data_of(x);
        let mut out = vec![0f32; batch * self.m * p];
        let mut col = vec![0f32; kk * p];
        let weights = self.weights();
        for b in 0..batch {
            for gi in 0..g {
                let c0 = (b * self.cg * g + gi * self.cg) * plane;
                self.im2col(&xd[c0..c0 + self.cg * plane], ins, &outs, &mut col);
                let wg = &weights[gi * mg * kk..(gi + 1) * mg * kk];
                let og = &mut out[(b * self.m + gi * mg) * p..(b * self.m + (gi + 1) * mg) * p];
                super::rounded_acc::gemm_rounded(
                    mg,
                    kk,
                    p,
                    Mat::rows(wg, kk),
                    Mat::rows(&col, p),
                    og,
                    fmt,
                );
            }
        }
        for (i, r) in out.chunks_mut(p.max(1)).enumerate() {
            let ch = i % self.m;
            if let Some(bias) = &self.bias {
                r.iter_mut().for_each(|v| super::rounded_acc::add_rounded(v, bias[ch], fmt));
            }
            if let Some((a, b)) = &epi.affine {
                r.iter_mut().for_each(|v| *v = *v * a[ch] + b[ch]);
            }
            if let Some(act) = epi.act {
                act.apply_seq(r);
            }
        }
        Ok(super::array(&[&[batch, self.m][..], &outs[..]].concat(), out))
    }
}

/// Conv as an op: inputs x, w, optional bias (the weights are prepared on every call).
pub(crate) fn conv(attrs: &ConvAttrs, inputs: &[&Tensor]) -> Result<Tensor> {
    arity(inputs, 2, 3)?;
    same_dtype(inputs)?;
    fn go<T: GemmFloat>(attrs: &ConvAttrs, inputs: &[&Tensor]) -> Result<Tensor> {
        let v = |i: usize| T::view(inputs[i]).expect("invariant: dtypes checked equal");
        let pc = PreparedConv::new(attrs, v(1), inputs.get(2).map(|_| v(2)))?;
        Ok(T::wrap(pc.run(v(0), &Epilogue::default())?))
    }
    match inputs[0] {
        Tensor::F32(_) => go::<f32>(attrs, inputs),
        Tensor::F64(_) => go::<f64>(attrs, inputs),
        t => Err(unsupported(format!("conv of {} tensors", t.dtype()))),
    }
}

/// What a lean runner keeps of a convolution: its attributes and the graph's weight and bias
/// data (the same bytes as the graph's, not a copy).
#[derive(Debug)]
pub(crate) struct ConvSource {
    pub attrs: cimc_ir::ConvAttrs,
    pub w: cimc_ir::TensorData,
    pub b: Option<cimc_ir::TensorData>,
}

impl ConvSource {
    pub(crate) fn prepare(&self) -> Result<PreparedConv<f32>> {
        let w = Tensor::from_data(&self.w)?;
        let b = self.b.as_ref().map(Tensor::from_data).transpose()?;
        let not_f32 = || bad("a lean convolution's weights or bias are not f32");
        let w = <f32 as super::num::Elem>::view(&w).ok_or_else(not_f32)?;
        let b = b
            .as_ref()
            .map(|b| <f32 as super::num::Elem>::view(b).ok_or_else(not_f32))
            .transpose()?;
        PreparedConv::new(&self.attrs, w, b)
    }
}
