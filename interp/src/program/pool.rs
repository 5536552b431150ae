//! Pooling on codes (2-D spatial; 1-D runs as height 1).

use cimc_backends::program::{Step, Window};

struct Geometry {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    k: [usize; 2],
    s: [usize; 2],
    d: [usize; 2],
    p: [usize; 4],
}

fn geometry(si: &[usize], so: &[usize], win: &Window) -> Result<Geometry, String> {
    match si.len() {
        4 => Ok(Geometry {
            n: si[0],
            c: si[1],
            h: si[2],
            w: si[3],
            oh: so[2],
            ow: so[3],
            k: [win.kernel[0], win.kernel[1]],
            s: [win.strides[0], win.strides[1]],
            d: [win.dilations[0], win.dilations[1]],
            p: [win.pads[0], win.pads[1], win.pads[2], win.pads[3]],
        }),
        3 => Ok(Geometry {
            n: si[0],
            c: si[1],
            h: 1,
            w: si[2],
            oh: 1,
            ow: so[2],
            k: [1, win.kernel[0]],
            s: [1, win.strides[0]],
            d: [1, win.dilations[0]],
            p: [0, win.pads[0], 0, win.pads[1]],
        }),
        r => Err(format!("integer pooling of rank {r} is not supported (1-D and 2-D are)")),
    }
}

/// Calls `f(plane, oy, ox, positions)` for each output, with the input positions of its window
/// that fall inside the input, and the count of window positions inside input + padding.
fn for_windows(g: &Geometry, mut f: impl FnMut(usize, usize, usize, &[usize], usize)) {
    let mut inside = Vec::with_capacity(g.k[0] * g.k[1]);
    for plane in 0..g.n * g.c {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
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
                f(plane, oy, ox, &inside, padded);
            }
        }
    }
}

pub(crate) fn max_pool(
    x: &[i32],
    si: &[usize],
    so: &[usize],
    win: &Window,
    _ceil: bool,
) -> Result<Vec<i32>, String> {
    let g = geometry(si, so, win)?;
    let mut out = vec![0; g.n * g.c * g.oh * g.ow];
    let mut err = None;
    for_windows(&g, |plane, oy, ox, inside, _| match inside.iter().map(|&i| x[i]).max() {
        Some(v) => out[(plane * g.oh + oy) * g.ow + ox] = v,
        None => err = Some("a pooling window lies entirely in the padding".to_string()),
    });
    err.map_or(Ok(out), Err)
}

pub(crate) fn avg_pool(
    s: &Step,
    x: &[i32],
    si: &[usize],
    so: &[usize],
) -> Result<Vec<i32>, String> {
    let Step::AvgPool {
        window,
        count_include_pad,
        input_zero_point: z,
        mult_by_count,
        zero_point,
        lo,
        hi,
        ..
    } = s
    else {
        return Err("not an average pool".into());
    };
    let g = geometry(si, so, window)?;
    let mut out = vec![0; g.n * g.c * g.oh * g.ow];
    let mut err = None;
    for_windows(&g, |plane, oy, ox, inside, padded| {
        let count = if *count_include_pad { padded } else { inside.len() };
        let sum: i64 = inside.iter().map(|&i| (x[i] - z) as i64).sum();
        match mult_by_count.get(count.wrapping_sub(1)) {
            Some(&m) => {
                out[(plane * g.oh + oy) * g.ow + ox] =
                    cimc_backends::arith::requantize(sum, m, *zero_point, *lo, *hi)
            }
            None => err = Some(format!("no multiplier for a window of {count} elements")),
        }
    });
    err.map_or(Ok(out), Err)
}
