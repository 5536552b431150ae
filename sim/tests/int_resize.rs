//! Property tests of the program's `Resize` step (linear interpolation on codes) and of nearest
//! Resize as a gather, against a naive reference written here in f64 from ONNX's definition
//! (each output coordinate mapped to an input coordinate, the two neighbours along each resized
//! axis weighted by distance, indices clamped to the edge): the linear step's output is within
//! one output code of the exact real result, and nearest Resize copies codes exactly.

use cimc_backends::program::lower::lower;
use cimc_backends::program::Step;
use cimc_interp::Tensor;
use cimc_sim::program::ProgramRunner;
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

const COORDS: [&str; 4] = ["half_pixel", "pytorch_half_pixel", "asymmetric", "align_corners"];

/// The input coordinate of output index `y` along an axis (ONNX's formulas).
fn coordinate(coord: &str, y: usize, len_in: usize, len_out: usize) -> f64 {
    let (y, li, lo) = (y as f64, len_in as f64, len_out as f64);
    let scale = lo / li;
    match coord {
        "half_pixel" => (y + 0.5) / scale - 0.5,
        "pytorch_half_pixel" if len_out > 1 => (y + 0.5) / scale - 0.5,
        "pytorch_half_pixel" => 0.0,
        "asymmetric" => y / scale,
        "align_corners" if len_out > 1 => y * (li - 1.0) / (lo - 1.0),
        _ => 0.0,
    }
}

/// Per output index along one axis: the two (edge-clamped) neighbours and their weights.
fn linear_taps(coord: &str, len_in: usize, len_out: usize) -> Vec<[(usize, f64); 2]> {
    (0..len_out)
        .map(|y| {
            let x = coordinate(coord, y, len_in, len_out);
            let x0 = x.floor();
            let r = x - x0;
            let clamp = |i: f64| i.clamp(0.0, len_in as f64 - 1.0) as usize;
            [(clamp(x0), 1.0 - r), (clamp(x0 + 1.0), r)]
        })
        .collect()
}

/// The naive linear resize of `x` (shape `[n, c, h, w]`) to `[n, c, oh, ow]`, in f64.
fn linear_reference(x: &[f64], s: [usize; 4], (oh, ow): (usize, usize), coord: &str) -> Vec<f64> {
    let (th, tw) = (linear_taps(coord, s[2], oh), linear_taps(coord, s[3], ow));
    let mut y = Vec::with_capacity(s[0] * s[1] * oh * ow);
    for p in 0..s[0] * s[1] {
        for ty in &th {
            for tx in &tw {
                let mut v = 0.0;
                for &(i, wi) in ty {
                    for &(j, wj) in tx {
                        v += wi * wj * x[(p * s[2] + i) * s[3] + j];
                    }
                }
                y.push(v);
            }
        }
    }
    y
}

fn codes(n: usize, lo: i32, hi: i32, seed: u64) -> Vec<i32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            lo + (s % (hi - lo + 1) as u64) as i32
        })
        .collect()
}

fn resize_text(
    mode: &str,
    coord: &str,
    s: [usize; 4],
    o: [usize; 4],
    qx: (f32, i32),
    qy: (f32, i32),
) -> String {
    let dims = |d: [usize; 4]| d.map(|v| v.to_string()).join(",");
    let list = |d: [usize; 4]| d.map(|v| v.to_string()).join(", ");
    format!(
        "graph t {{\n  input %x : u8[{}] q(bits=8, unsigned, scale=[{:?}], zp=[{}])\n  \
         %y : u8[{}] q(bits=8, unsigned, scale=[{:?}], zp=[{}]) = resize(%x) {{mode={mode}, \
         coord={coord}, nearest=floor, cubic_a=-0.75, exclude_outside=false, antialias=false, \
         extrapolation=0.0, scales=[], sizes=[{}], roi=[]}} \"r\"\n  output %y\n}}\n",
        dims(s),
        qx.0,
        qx.1,
        dims(o),
        qy.0,
        qy.1,
        list(o)
    )
}

fn run(text: &str, s: [usize; 4], x: &[i32]) -> (Vec<i32>, cimc_backends::program::Program) {
    let g = cimc_ir::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    cimc_ir::verify::verify(&g).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    let p = lower(&g).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let t = Tensor::I32(ArrayD::from_shape_vec(IxDyn(&s), x.to_vec()).unwrap());
    let out = ProgramRunner::new(&p).unwrap().run(vec![t]).unwrap();
    let Tensor::I32(a) = &out[0] else { panic!("codes expected") };
    (a.iter().copied().collect(), p)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Linear Resize on codes is within one output code of the exact real interpolation (the
    /// output scale within a factor 2 of the input's, as calibration gives an interpolation).
    #[test]
    fn linear_resize_is_within_one_code(
        coord in 0usize..4, h in 1usize..7, w in 2usize..7, oh in 1usize..13, ow in 1usize..13,
        zx in 0i32..256, zy in 0i32..256, e in -8i32..2, ratio in 0.5f32..2.0, seed in any::<u64>(),
    ) {
        let coord = COORDS[coord];
        let s = [1, 2, h, w];
        let o = [1, 2, oh, ow];
        let (sx, sy) = (2f32.powi(e) * 1.37, 2f32.powi(e) * 1.37 * ratio);
        let x = codes(s.iter().product(), 0, 255, seed);
        let (y, p) = run(&resize_text("linear", coord, s, o, (sx, zx), (sy, zy)), s, &x);
        let stepped = p.steps.iter().any(|st| matches!(st, Step::Resize { .. }));
        prop_assert!(stepped || (h, w) == (oh, ow), "no resize step");
        let real: Vec<f64> = x.iter().map(|&q| sx as f64 * (q - zx) as f64).collect();
        let want = linear_reference(&real, s, (oh, ow), coord);
        for (k, (&got, &v)) in y.iter().zip(&want).enumerate() {
            let exact = (v / sy as f64 + zy as f64).clamp(0.0, 255.0);
            prop_assert!((got as f64 - exact).abs() <= 1.0,
                "{coord} {s:?} -> {o:?}, output {k}: got {got}, exact {exact}");
        }
    }

    /// Nearest Resize (asymmetric, floor: PyTorch's `Upsample(mode='nearest')`) lowers to a
    /// gather and copies each output's source code exactly.
    #[test]
    fn nearest_resize_copies_codes(h in 1usize..6, w in 1usize..6, fh in 1usize..4, fw in 1usize..4, seed in any::<u64>()) {
        let s = [1, 3, h, w];
        let o = [1, 3, h * fh, w * fw];
        let x = codes(s.iter().product(), 0, 255, seed);
        let (y, p) = run(&resize_text("nearest", "asymmetric", s, o, (0.1, 7), (0.1, 7)), s, &x);
        let gathers = p.steps.iter().all(|st| matches!(st, Step::Gather { .. }));
        prop_assert!(gathers, "a step other than a gather");
        for c in 0..3 {
            for i in 0..h * fh {
                for j in 0..w * fw {
                    let got = y[(c * h * fh + i) * w * fw + j];
                    prop_assert_eq!(got, x[(c * h + i / fh) * w + j / fw]);
                }
            }
        }
    }
}
