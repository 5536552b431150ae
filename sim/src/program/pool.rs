//! Pooling on codes (2-D spatial; 1-D runs as height 1): the one implementation of the
//! program's MaxPool/AvgPool steps and of the stream simulator's `max_pool`/`avg_pool`, so the
//! two cannot disagree.

use cimc_backends::arith::FixedMultiplier;
use cimc_backends::program::Window;
use rayon::prelude::*;

/// A pooling window over channel-first planes `[planes][h][w]`, producing the output positions
/// `positions` (row-major over `oh × ow`) of every plane, channel-first:
/// `[planes][positions.len()]`. `ow` is the output's width (positions are `oy·ow + ox`).
pub(crate) struct PoolGeom {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub ow: usize,
    pub k: [usize; 2],
    pub s: [usize; 2],
    pub d: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub p: [usize; 4],
    pub positions: std::ops::Range<usize>,
}

/// The geometry of a program step: every plane of every image, every output position.
fn geometry(si: &[usize], so: &[usize], win: &Window) -> Result<PoolGeom, String> {
    let at = |v: &[usize], i: usize| v.get(i).copied().ok_or("window too short");
    let (planes, h, w, oh, ow, k, s, d, p) = match (si.len(), so.len()) {
        (4, 4) => (
            si[0] * si[1],
            si[2],
            si[3],
            so[2],
            so[3],
            [at(&win.kernel, 0)?, at(&win.kernel, 1)?],
            [at(&win.strides, 0)?, at(&win.strides, 1)?],
            [at(&win.dilations, 0)?, at(&win.dilations, 1)?],
            [at(&win.pads, 0)?, at(&win.pads, 1)?, at(&win.pads, 2)?, at(&win.pads, 3)?],
        ),
        (3, 3) => (
            si[0] * si[1],
            1,
            si[2],
            1,
            so[2],
            [1, at(&win.kernel, 0)?],
            [1, at(&win.strides, 0)?],
            [1, at(&win.dilations, 0)?],
            [0, at(&win.pads, 0)?, 0, at(&win.pads, 1)?],
        ),
        (r, _) => {
            return Err(format!("integer pooling of rank {r} is not supported (1-D and 2-D are)"))
        }
    };
    Ok(PoolGeom { planes, h, w, ow, k, s, d, p, positions: 0..oh * ow })
}

impl PoolGeom {
    /// Words of the input.
    pub(crate) fn input_len(&self) -> usize {
        self.planes * self.h * self.w
    }

    /// Words of the output.
    pub(crate) fn output_len(&self) -> usize {
        self.planes * self.positions.len()
    }

    /// Calls `f(output index, positions, padded)` for each output, with the input positions of
    /// its window that fall inside the input, and the count of window positions inside input +
    /// padding.
    fn for_windows(&self, mut f: impl FnMut(usize, &[usize], usize)) {
        let g = self;
        let mut inside = Vec::with_capacity(g.k[0] * g.k[1]);
        let npos = g.positions.len();
        for plane in 0..g.planes {
            for (j, pos) in g.positions.clone().enumerate() {
                let (oy, ox) = (pos / g.ow.max(1), pos % g.ow.max(1));
                inside.clear();
                let mut padded = 0;
                for ky in 0..g.k[0] {
                    let iy = (oy * g.s[0] + ky * g.d[0]) as isize - g.p[0] as isize;
                    for kx in 0..g.k[1] {
                        let ix = (ox * g.s[1] + kx * g.d[1]) as isize - g.p[1] as isize;
                        // Positions in the padded extent (begin pad + input + end pad) count
                        // for count_include_pad; ceil_mode windows beyond it do not.
                        if iy < g.h as isize + g.p[2] as isize
                            && ix < g.w as isize + g.p[3] as isize
                        {
                            padded += 1;
                        }
                        if iy >= 0 && (iy as usize) < g.h && ix >= 0 && (ix as usize) < g.w {
                            inside.push(plane * g.h * g.w + iy as usize * g.w + ix as usize);
                        }
                    }
                }
                f(plane * npos + j, &inside, padded);
            }
        }
    }

    fn check_input<T>(&self, x: &[T]) -> Result<(), String> {
        if x.len() < self.input_len() {
            return Err(format!("pooling reads {} values of {}", self.input_len(), x.len()));
        }
        Ok(())
    }
}

/// Max pooling: each output is the largest code of its window inside the input (padding never
/// wins); a window entirely in the padding is an error.
pub(crate) fn max_pool_codes<T: Copy + Ord + Default + Send + Sync>(
    x: &[T],
    g: &PoolGeom,
) -> Result<Vec<T>, String> {
    g.check_input(x)?;
    if let Some(out) = max_pool_inside(x, g) {
        return Ok(out);
    }
    let mut out = vec![T::default(); g.output_len()];
    let mut err = None;
    g.for_windows(|o, inside, _| match inside.iter().map(|&i| x[i]).max() {
        Some(v) => out[o] = v,
        None => err = Some("a pooling window lies entirely in the padding".to_string()),
    });
    err.map_or(Ok(out), Err)
}

/// [`max_pool_codes`] when every window lies inside the input (no padding reached, the common
/// case): the maximum over the window's fixed offsets, without listing each window's
/// positions; `None` otherwise. The input's length is checked.
fn max_pool_inside<T: Copy + Ord + Default + Send + Sync>(x: &[T], g: &PoolGeom) -> Option<Vec<T>> {
    let (npos, ow, [kh, kw]) = (g.positions.len(), g.ow, g.k);
    if npos == 0 || ow == 0 || kh == 0 || kw == 0 || g.p[0] != 0 || g.p[1] != 0 {
        return None;
    }
    let (first, last) = (g.positions.start, g.positions.end - 1);
    let ox_max = if first / ow == last / ow { last % ow } else { ow - 1 };
    if (last / ow) * g.s[0] + (kh - 1) * g.d[0] >= g.h || ox_max * g.s[1] + (kw - 1) * g.d[1] >= g.w
    {
        return None;
    }
    let planes = &x[..g.input_len()];
    let mut out = vec![T::default(); g.output_len()];
    // One plane's windows.
    let plane = |xp: &[T], out: &mut [T]| {
        let (mut oy, mut ox) = (first / ow, first % ow);
        for o in out.iter_mut() {
            let base = oy * g.s[0] * g.w + ox * g.s[1];
            let mut m = xp[base];
            for ky in 0..kh {
                let row = &xp[base + ky * g.d[0] * g.w..];
                for kx in 0..kw {
                    m = m.max(row[kx * g.d[1]]);
                }
            }
            *o = m;
            ox += 1;
            if ox == ow {
                (oy, ox) = (oy + 1, 0);
            }
        }
    };
    // Planes in parallel when there are enough outputs to pay for it (a batch's).
    if out.len() >= 1 << 15 {
        out.par_chunks_mut(npos)
            .zip(planes.par_chunks_exact(g.h * g.w))
            .with_min_len(((1 << 13) / npos).max(1))
            .for_each(|(o, xp)| plane(xp, o));
    } else {
        for (o, xp) in out.chunks_exact_mut(npos).zip(planes.chunks_exact(g.h * g.w)) {
            plane(xp, o);
        }
    }
    Some(out)
}

/// Average pooling: each output is `rq(s, k)` with `s = Σ (x − z)` over the window's positions
/// inside the input and `k` their count (or the count inside input and padding, with
/// `include_pad`); `rq` requantizes with the multiplier of `k`.
pub(crate) fn avg_pool_codes<T: Copy + Into<i64>>(
    x: &[T],
    g: &PoolGeom,
    z: i64,
    include_pad: bool,
    rq: impl Fn(i64, usize) -> Result<i32, String>,
) -> Result<Vec<i32>, String> {
    g.check_input(x)?;
    let mut out = vec![0; g.output_len()];
    let mut err = None;
    g.for_windows(|o, inside, padded| {
        if err.is_some() {
            return;
        }
        let count = if include_pad { padded } else { inside.len() };
        let sum = inside
            .iter()
            .try_fold(0i64, |s, &i| x[i].into().checked_sub(z).and_then(|d| s.checked_add(d)));
        match sum
            .ok_or_else(|| "the window's sum overflows i64".to_string())
            .and_then(|s| rq(s, count))
        {
            Ok(v) => out[o] = v,
            Err(e) => err = Some(e),
        }
    });
    err.map_or(Ok(out), Err)
}

pub(crate) fn max_pool(
    x: &[i32],
    si: &[usize],
    so: &[usize],
    win: &Window,
    _ceil: bool,
) -> Result<Vec<i32>, String> {
    max_pool_codes(x, &geometry(si, so, win)?)
}

/// An AvgPool step's requantization of a window's sum: one multiplier per window count, the
/// output zero point and clamp range.
pub(crate) struct CountRequant<'a> {
    pub mult_by_count: &'a [FixedMultiplier],
    pub zero_point: i32,
    pub lo: i32,
    pub hi: i32,
}

/// Average pooling of codes whose zero point is `z`, counting the padding in each window's
/// count when `count_include_pad`.
pub(crate) fn avg_pool(
    x: &[i32],
    (si, so): (&[usize], &[usize]),
    window: &Window,
    (z, count_include_pad): (i32, bool),
    rq: &CountRequant,
) -> Result<Vec<i32>, String> {
    let g = geometry(si, so, window)?;
    avg_pool_codes(x, &g, z as i64, count_include_pad, |sum, count| {
        match rq.mult_by_count.get(count.wrapping_sub(1)) {
            Some(&m) => Ok(cimc_backends::arith::requantize(sum, m, rq.zero_point, rq.lo, rq.hi)),
            None => Err(format!("no multiplier for a window of {count} elements")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::SplitMix64 as Rng;

    fn pick(rng: &mut Rng, lo: usize, hi: usize) -> usize {
        rng.int(lo as i64, hi as i64) as usize
    }

    /// The inside-only max pool gives the window lists' maxima, on random windows and output
    /// ranges (with padding, strides and dilations, where it declines).
    #[test]
    fn max_pool_inside_matches_the_window_lists() {
        let mut rng = Rng(11);
        let mut fast = 0;
        for _ in 0..400 {
            let r = &mut rng;
            let (h, w) = (pick(r, 1, 9), pick(r, 1, 9));
            let k = [pick(r, 1, 3), pick(r, 1, 3)];
            let s = [pick(r, 1, 3), pick(r, 1, 3)];
            let d = [pick(r, 1, 2), pick(r, 1, 2)];
            let p = if r.coin() { [0; 4] } else { [pick(r, 0, 1), 0, 1, pick(r, 0, 1)] };
            let extent =
                |i: usize, n: usize| (n + p[i] + p[i + 2]).checked_sub((k[i] - 1) * d[i] + 1);
            let (Some(ey), Some(ex)) = (extent(0, h), extent(1, w)) else { continue };
            let (oh, ow) = (ey / s[0] + 1, ex / s[1] + 1);
            let first = pick(r, 0, oh * ow - 1);
            let end = pick(r, first + 1, oh * ow);
            let g = PoolGeom { planes: 2, h, w, ow, k, s, d, p, positions: first..end };
            let x: Vec<i32> = (0..g.input_len()).map(|_| r.int(-50i32, 50)).collect();
            let mut want = vec![0; g.output_len()];
            g.for_windows(|o, inside, _| {
                want[o] = inside.iter().map(|&i| x[i]).max().unwrap_or(i32::MIN)
            });
            if let Some(got) = max_pool_inside(&x, &g) {
                fast += 1;
                assert_eq!(got, want, "{h}x{w} k {k:?} s {s:?} d {d:?} p {p:?} {first}..{end}");
            }
            if want.iter().all(|&v| v != i32::MIN) {
                assert_eq!(max_pool_codes(&x, &g).unwrap(), want);
            }
        }
        assert!(fast > 50, "the inside path ran {fast} times");
    }
}
