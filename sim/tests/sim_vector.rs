//! Every non-crossbar instruction of the stream simulator against a naive reference written
//! here from the ISA's documentation: memory moves (overlapping copies), `fill`, `shift_add`,
//! `requant`, `relu`, `add`, `im2col`, `max_pool`, `avg_pool`, `transpose`; the host operations
//! against the program interpreter (bit-identical floats); run-time errors that name the core
//! and the instruction.

mod sim_common;

use cimc_backends::arith::FixedMultiplier;
use cimc_backends::isa::Instr;
use cimc_backends::program::{BufQuant, BufferDecl, CodeType, Elem, Program, Step};
use cimc_backends::stream::{AddEntry, Core, HostEntry, PermEntry, RequantEntry, WindowEntry};
use cimc_sim::{ProgramRunner, StreamRunner};
use sim_common::*;

/// `docs/hardware-model.md` §4 written out:
/// `clamp(z + floor((y·m + 2^(30+sh)) / 2^(31+sh)), lo, hi)`.
fn naive_requant(y: i64, m: FixedMultiplier, z: i32, lo: i32, hi: i32) -> i64 {
    let shift = 31 + m.sh;
    let num = y as i128 * m.m as i128 + (1i128 << (shift - 1));
    (num.div_euclid(1i128 << shift) + z as i128).clamp(lo as i128, hi as i128) as i64
}

fn mult(r: &mut Rng) -> FixedMultiplier {
    let e = r.int(-20, 2);
    FixedMultiplier::from_real(2f64.powi(e) * (1.0 + (r.next_u64() % 1000) as f64 / 1000.0))
        .unwrap()
}

fn values(r: &mut Rng, n: usize, lo: i64, hi: i64) -> Vec<i64> {
    (0..n).map(|_| r.int(lo, hi)).collect()
}

#[test]
fn moves_copies_and_fills() {
    let mut r = Rng(1);
    for _ in 0..200 {
        let n = r.int(2, 40) as u32;
        let init = values(&mut r, n as usize, -1000, 1000);
        let len = r.int(0, n as i64 / 2) as u32;
        let (src, dst) = (r.int(0, (n - len) as i64) as u32, r.int(0, (n - len) as i64) as u32);
        let value = r.int(-5, 5);
        let at = r.int(0, (n - len) as i64) as u32;
        let code = vec![
            Instr::Copy { dst, src, len },
            Instr::Fill { dst: at, len: len / 2, value },
            Instr::Store { dst: 0, src: 0, len: 2, elem_bytes: 8 },
            Instr::Load { dst: n - 2, src: 0, len: 2, elem_bytes: 8 },
        ];
        let got = run_scratch(n, &init, code, |_| {}).unwrap();
        let mut want = init.clone();
        let read: Vec<i64> = want[src as usize..][..len as usize].to_vec();
        want[dst as usize..][..len as usize].copy_from_slice(&read);
        want[at as usize..][..(len / 2) as usize].fill(value as i64);
        let (a, b) = (want[0], want[1]);
        want[n as usize - 2] = a;
        want[n as usize - 1] = b;
        assert_eq!(got, want, "copy {src}→{dst} len {len}, fill {at}");
    }
}

#[test]
fn shift_add_and_relu() {
    let mut r = Rng(2);
    for _ in 0..200 {
        let n = r.int(2, 40) as u32;
        let init = values(&mut r, n as usize, -1000, 1000);
        let len = r.int(1, n as i64 / 2) as u32;
        let (src, dst) = (r.int(0, (n - len) as i64) as u32, r.int(0, (n - len) as i64) as u32);
        let shift = r.int(0, 12) as u8;
        let zero = r.int(-20, 20);
        let (rs, rd) = (r.int(0, (n - len) as i64) as u32, r.int(0, (n - len) as i64) as u32);
        let code = vec![
            Instr::ShiftAdd { dst, src, len, shift },
            Instr::Relu { dst: rd, src: rs, len, zero },
        ];
        let got = run_scratch(n, &init, code, |_| {}).unwrap();
        let mut want = init.clone();
        let add: Vec<i64> = want[src as usize..][..len as usize].to_vec();
        for (i, a) in add.iter().enumerate() {
            want[dst as usize + i] += a << shift;
        }
        let x: Vec<i64> = want[rs as usize..][..len as usize].to_vec();
        for (i, v) in x.iter().enumerate() {
            want[rd as usize + i] = (*v).max(zero as i64);
        }
        assert_eq!(got, want);
    }
}

#[test]
fn requant_per_channel_and_shared() {
    let mut r = Rng(3);
    for _ in 0..300 {
        let channels = r.int(1, 6) as usize;
        let vec_of = |r: &mut Rng, empty_ok: bool, f: &mut dyn FnMut(&mut Rng) -> i64| {
            let len = match r.int(0, 2) {
                0 if empty_ok => 0,
                1 => 1,
                _ => channels,
            };
            (0..len).map(|_| f(r)).collect::<Vec<i64>>()
        };
        let scale: Vec<i32> =
            vec_of(&mut r, true, &mut |r| r.int(-9, 9)).into_iter().map(|v| v as i32).collect();
        let bias = vec_of(&mut r, true, &mut |r| r.int(-500, 500));
        let mut m: Vec<FixedMultiplier> = (0..channels).map(|_| mult(&mut r)).collect();
        if r.coin() {
            m.truncate(1);
        }
        let (lo, hi) = (r.int(-300, 0), r.int(0, 300));
        let entry = RequantEntry { scale, bias, mult: m, zero_point: r.int(-10, 10), lo, hi };
        let n = r.int(1, 40) as u32;
        let init = values(&mut r, n as usize, -5000, 5000);
        let len = r.int(1, n as i64) as u32;
        let (src, dst) = (r.int(0, (n - len) as i64) as u32, r.int(0, (n - len) as i64) as u32);
        let (channel_len, first_channel) = (r.int(1, 5) as u32, r.int(0, 9) as u32);
        let code = vec![Instr::Requant { table: 0, src, dst, len, channel_len, first_channel }];
        let e = entry.clone();
        let got = run_scratch(n, &init, code, move |s| s.requants = vec![e]).unwrap();
        let c = entry.channels();
        let pick = |v: usize, ch: usize| if v == 1 { 0 } else { ch };
        let mut want = init.clone();
        for i in 0..len as usize {
            let ch = (first_channel as usize + i / channel_len as usize) % c;
            let a = entry.scale.get(pick(entry.scale.len(), ch)).map_or(1, |&a| a as i64);
            let b = entry.bias.get(pick(entry.bias.len(), ch)).copied().unwrap_or(0);
            let m = entry.mult[pick(entry.mult.len(), ch)];
            let x = init[src as usize + i];
            want[dst as usize + i] = naive_requant(a * x + b, m, entry.zero_point, lo, hi);
        }
        assert_eq!(got, want, "{entry:?}");
    }
}

#[test]
fn add_as_the_program_adds() {
    let mut r = Rng(4);
    for _ in 0..200 {
        let e = AddEntry {
            a_zero_point: r.int(-20, 20),
            b_zero_point: r.int(-20, 20),
            headroom: r.int(0, 20) as u32,
            a_mult: mult(&mut r),
            b_mult: mult(&mut r),
            mult: mult(&mut r),
            zero_point: r.int(-10, 10),
            lo: -128,
            hi: 127,
        };
        let n = 30u32;
        let init = values(&mut r, n as usize, -128, 127);
        let len = r.int(1, 10) as u32;
        let [a, b, dst] = [0; 3].map(|_: u32| r.int(0, (n - len) as i64) as u32);
        let code = vec![Instr::Add { table: 0, a, b, dst, len }];
        let entry = e.clone();
        let got = run_scratch(n, &init, code, move |s| s.adds = vec![entry]).unwrap();
        let rescale = |q: i64, z: i32, m| {
            naive_requant((q - z as i64) << e.headroom, m, 0, i32::MIN, i32::MAX)
        };
        let mut want = init.clone();
        for i in 0..len as usize {
            let sum = rescale(init[a as usize + i], e.a_zero_point, e.a_mult)
                + rescale(init[b as usize + i], e.b_zero_point, e.b_mult);
            want[dst as usize + i] = naive_requant(sum, e.mult, e.zero_point, e.lo, e.hi);
        }
        assert_eq!(got, want, "{e:?}");
    }
}

/// A random window entry over a small image (floor or ceil mode, a random chunk of positions).
fn window(r: &mut Rng) -> Option<WindowEntry> {
    let (groups, cg) = (r.int(1, 2) as u32, r.int(1, 3) as u32);
    let (h, w) = (r.int(1, 6) as u32, r.int(1, 6) as u32);
    let k = [r.int(1, 3) as u32, r.int(1, 3) as u32];
    let s = [r.int(1, 3) as u32, r.int(1, 2) as u32];
    let d = [r.int(1, 2) as u32, r.int(1, 2) as u32];
    // Pads smaller than the kernel's extent, as ONNX pooling has them.
    let span = [(k[0] - 1) * d[0], (k[1] - 1) * d[1]];
    let p = [0usize, 1, 2, 3].map(|i| r.int(0, span[i % 2].min(2) as i64) as u32);
    let ceil = r.coin();
    let out = |len: u32, k: u32, s: u32, d: u32, p: u32| {
        let span = (k - 1) * d + 1;
        (len + p >= span).then(|| {
            if ceil {
                (len + p - span).div_ceil(s) + 1
            } else {
                (len + p - span) / s + 1
            }
        })
    };
    let oh = out(h, k[0], s[0], d[0], p[0] + p[2])?;
    let ow = out(w, k[1], s[1], d[1], p[1] + p[3])?;
    let first = r.int(0, (oh * ow - 1) as i64) as u32;
    Some(WindowEntry {
        channels: groups * cg,
        height: h,
        width: w,
        kernel: k,
        strides: s,
        dilations: d,
        pads: p,
        conv_groups: groups,
        out_height: oh,
        out_width: ow,
        first_position: first,
        positions: r.int(1, (oh * ow - first) as i64) as u32,
        count_include_pad: r.coin(),
    })
}

/// `(input index or None for padding, inside the padded extent)` of each kernel offset of
/// channel `c` at output position `pos`, from the entry's definition.
fn taps(w: &WindowEntry, c: u32, pos: u32) -> Vec<(Option<usize>, bool)> {
    let (oy, ox) = ((pos / w.out_width) as i64, (pos % w.out_width) as i64);
    let mut v = Vec::new();
    for ky in 0..w.kernel[0] as i64 {
        for kx in 0..w.kernel[1] as i64 {
            let iy = oy * w.strides[0] as i64 + ky * w.dilations[0] as i64 - w.pads[0] as i64;
            let ix = ox * w.strides[1] as i64 + kx * w.dilations[1] as i64 - w.pads[1] as i64;
            let inside = iy >= 0 && ix >= 0 && iy < w.height as i64 && ix < w.width as i64;
            let padded = iy < (w.height + w.pads[2]) as i64 && ix < (w.width + w.pads[3]) as i64;
            let at = ((c * w.height) as i64 + iy) * w.width as i64 + ix;
            v.push((inside.then_some(at as usize), padded));
        }
    }
    v
}

#[test]
fn im2col_and_pooling() {
    let mut r = Rng(5);
    let (mut pooled, mut skipped) = (0, 0);
    for _ in 0..400 {
        let Some(w) = window(&mut r) else { continue };
        let src_len = (w.channels * w.height * w.width) as usize;
        let init = values(&mut r, src_len, -50, 50);
        let (col, pool, avg) = (src_len as u32, src_len as u32 + w.im2col_len() as u32, 0);
        let avg_at = pool + w.pool_len() as u32;
        let scratch = avg_at + w.pool_len() as u32;
        let pad = r.int(-3, 3);
        let zero = r.int(-3, 3);
        let counts = (w.kernel[0] * w.kernel[1]) as usize;
        let rq = RequantEntry {
            scale: vec![],
            bias: vec![],
            mult: (0..if r.coin() { 1 } else { counts }).map(|_| mult(&mut r)).collect(),
            zero_point: r.int(-5, 5),
            lo: -100,
            hi: 100,
        };
        let code = vec![
            Instr::Im2col { window: 0, src: 0, dst: col, pad },
            Instr::MaxPool { window: 0, src: 0, dst: pool },
            Instr::AvgPool { window: 0, table: avg, src: 0, dst: avg_at, zero },
        ];
        let (we, re) = (w.clone(), rq.clone());
        let got = match run_scratch(scratch, &init, code, move |s| {
            s.windows = vec![we];
            s.requants = vec![re];
        }) {
            Ok(g) => g,
            // Validation refuses windows entirely in the padding (checked below that it was one).
            Err(e) if e.contains("entirely in the padding") => {
                let empty = (0..w.channels).any(|c| {
                    (w.first_position..w.first_position + w.positions)
                        .any(|p| taps(&w, c, p).iter().all(|t| t.0.is_none()))
                });
                assert!(empty, "{e}: {w:?}");
                skipped += 1;
                continue;
            }
            Err(e) => panic!("{e}: {w:?}"),
        };
        let mut want = init.clone();
        want.resize(scratch as usize, 0);
        let mut at = col as usize;
        for p in w.first_position..w.first_position + w.positions {
            for c in 0..w.channels {
                for (i, _) in taps(&w, c, p) {
                    want[at] = i.map_or(pad as i64, |i| init[i]);
                    at += 1;
                }
            }
        }
        for c in 0..w.channels {
            for (j, p) in (w.first_position..w.first_position + w.positions).enumerate() {
                let t = taps(&w, c, p);
                let inside: Vec<i64> = t.iter().filter_map(|x| x.0.map(|i| init[i])).collect();
                let o = (c * w.positions) as usize + j;
                want[pool as usize + o] = *inside.iter().max().unwrap();
                let k = if w.count_include_pad {
                    t.iter().filter(|x| x.1).count()
                } else {
                    inside.len()
                };
                let m = rq.mult[if rq.mult.len() == 1 { 0 } else { k - 1 }];
                let sum: i64 = inside.iter().map(|&x| x - zero as i64).sum();
                want[avg_at as usize + o] = naive_requant(sum, m, rq.zero_point, rq.lo, rq.hi);
            }
        }
        assert_eq!(got, want, "{w:?}");
        pooled += 1;
    }
    assert!(pooled >= 200 && skipped >= 5, "{pooled} cases, {skipped} refused");
}

#[test]
fn transpose_permutes_axes() {
    let mut r = Rng(6);
    for _ in 0..200 {
        let rank = r.int(1, 4) as usize;
        let shape: Vec<u32> = (0..rank).map(|_| r.int(1, 4) as u32).collect();
        let mut perm: Vec<u32> = (0..rank as u32).collect();
        for i in (1..rank).rev() {
            perm.swap(i, r.int(0, i as i64) as usize);
        }
        let n: u32 = shape.iter().product();
        let init = values(&mut r, n as usize, -99, 99);
        let entry = PermEntry { shape: shape.clone(), perm: perm.clone() };
        let code = vec![Instr::Transpose { table: 0, src: 0, dst: n }];
        let got = run_scratch(2 * n, &init, code, move |s| s.perms = vec![entry]).unwrap();
        // Output index (row-major over the permuted shape) → source multi-index.
        let out_shape: Vec<u32> = perm.iter().map(|&a| shape[a as usize]).collect();
        let mut want = init.clone();
        for o in 0..n {
            let mut rest = o;
            let mut idx = vec![0u32; rank];
            for dd in (0..rank).rev() {
                idx[perm[dd] as usize] = rest % out_shape[dd];
                rest /= out_shape[dd];
            }
            let src = idx.iter().zip(&shape).fold(0, |a, (&i, &d)| a * d + i);
            want.push(init[src as usize]);
        }
        assert_eq!(got, want, "{shape:?} {perm:?}");
    }
}

/// Quantize, dequantize (per channel) and softmax on the host give the program's floats, bit
/// for bit.
#[test]
fn host_operations_match_the_program() {
    let shape = vec![2usize, 3, 4];
    let n = 24;
    let code8 = Elem::Code(CodeType { bits: 8, signed: false });
    let quant =
        BufQuant { scale: vec![0.05, 0.11, 0.3], zero_point: vec![3, 128, 7], axis: Some(1) };
    let decl = |name: &str, elem, quant| BufferDecl {
        name: name.into(),
        shape: shape.clone(),
        elem,
        quant,
    };
    let program = Program {
        name: "host".into(),
        buffers: vec![
            decl("x", Elem::F32, None),
            decl("q", code8, Some(quant.clone())),
            decl("d", Elem::F32, None),
            decl("y", Elem::F32, None),
        ],
        inputs: vec![0],
        outputs: vec![3, 1],
        steps: vec![
            Step::Quantize { input: 0, output: 1, scale: 0.07, zero_point: 100, lo: 0, hi: 255 },
            Step::Dequantize { input: 1, output: 2 },
            Step::Softmax { input: 2, output: 3, axis: 1 },
        ],
        origins: vec!["q".into(), "d".into(), "s".into()],
        target: None,
    };
    let mut s = stream(vec![Core {
        scratch_words: 0,
        code: vec![
            Instr::Host { op: 0 },
            Instr::Host { op: 1 },
            Instr::Host { op: 2 },
            Instr::Halt {},
        ],
        marks: vec![],
    }]);
    let sh32: Vec<u32> = shape.iter().map(|&d| d as u32).collect();
    s.global_words = 4 * n;
    s.hosts = vec![
        HostEntry::Quantize {
            src: 0,
            dst: n,
            len: n,
            scale: 0.07,
            zero_point: 100,
            lo: 0,
            hi: 255,
        },
        HostEntry::Dequantize { src: n, dst: 2 * n, shape: sh32.clone(), quant },
        HostEntry::Softmax { src: 2 * n, dst: 3 * n, shape: sh32, axis: 1 },
    ];
    s.inputs = vec![io_of(&program.buffers[0], 0)];
    s.outputs = vec![io_of(&program.buffers[3], 3 * n), io_of(&program.buffers[1], n)];
    let mut r = Rng(7);
    let x: Vec<f32> = (0..n).map(|_| (r.int(-4000, 4000) as f32) * 0.003 + 0.0015).collect();
    let want =
        ProgramRunner::new(&program).unwrap().run(vec![f32_tensor(&shape, x.clone())]).unwrap();
    let got = StreamRunner::new(&s).unwrap().run(vec![f32_tensor(&shape, x)]).unwrap();
    let bits = |t: &cimc_interp::Tensor| -> Vec<u32> {
        t.as_f32().unwrap().iter().map(|v| v.to_bits()).collect()
    };
    assert_eq!(bits(&got[0]), bits(&want[0]));
    assert_eq!(codes(&got[1]), codes(&want[1]));
    // Inputs are checked as the program checks them.
    let e = StreamRunner::new(&s).unwrap().run(vec![i32_tensor(&shape, vec![0; n as usize])]);
    assert!(e.unwrap_err().to_string().contains("expected F32"));
}

#[test]
fn run_time_errors_name_the_core_and_the_instruction() {
    // An accumulator overflow in shift_add.
    let init = [i64::from(i32::MAX >> 1), 1];
    let code = vec![
        Instr::ShiftAdd { dst: 0, src: 0, len: 1, shift: 20 },
        Instr::ShiftAdd { dst: 0, src: 0, len: 1, shift: 40 },
    ];
    let e = run_scratch(2, &init, code, |_| {}).unwrap_err();
    assert!(e.starts_with("core 0, instruction 2 (shift_add): ") && e.contains("overflows"), "{e}");
    // A requantization whose a·x + b overflows.
    let entry = RequantEntry {
        scale: vec![i32::MAX],
        bias: vec![],
        mult: vec![FixedMultiplier { m: 1 << 30, sh: 0 }],
        zero_point: 0,
        lo: -10,
        hi: 10,
    };
    let code = vec![
        Instr::ShiftAdd { dst: 0, src: 0, len: 1, shift: 33 },
        Instr::Requant { table: 0, src: 0, dst: 1, len: 1, channel_len: 1, first_channel: 0 },
    ];
    let e = run_scratch(2, &[1 << 20, 0], code, move |s| s.requants = vec![entry]).unwrap_err();
    assert!(e.starts_with("core 0, instruction 2 (requant): ") && e.contains("overflows"), "{e}");
    // An output word that is not an i32 code.
    let code = vec![Instr::ShiftAdd { dst: 0, src: 0, len: 1, shift: 40 }];
    let e = run_scratch(2, &[1, 0], code, |_| {}).unwrap_err();
    assert!(e.contains("not an i32 code"), "{e}");
}

/// `requant` and `transpose` over more words than one parallel task or one tile takes.
#[test]
fn large_requant_and_transpose() {
    let mut r = Rng(8);
    let n = 40_000u32;
    let init = values(&mut r, n as usize, -3000, 3000);
    let entry = RequantEntry {
        scale: vec![2, -1, 3, 1, 1],
        bias: vec![7],
        mult: (0..5).map(|_| mult(&mut r)).collect(),
        zero_point: 3,
        lo: -200,
        hi: 200,
    };
    let (cl, first) = (7u32, 3u32);
    for (src, dst) in [(0, 0), (0, n)] {
        let code = vec![Instr::Requant {
            table: 0,
            src,
            dst,
            len: n,
            channel_len: cl,
            first_channel: first,
        }];
        let e = entry.clone();
        let got = run_scratch(2 * n, &init, code, move |s| s.requants = vec![e]).unwrap();
        for i in 0..n as usize {
            let ch = (first as usize + i / cl as usize) % 5;
            let y = entry.scale[ch] as i64 * init[i] + 7;
            let want = naive_requant(y, entry.mult[ch], 3, -200, 200);
            assert_eq!(got[dst as usize + i], want, "word {i}, in place: {}", src == dst);
        }
    }
    for (shape, perm) in [
        (vec![70u32, 45], vec![1u32, 0]),
        (vec![3, 50, 40], vec![2, 0, 1]),
        (vec![1, 33, 1, 65], vec![3, 2, 0, 1]),
    ] {
        let len: u32 = shape.iter().product();
        let init = values(&mut r, len as usize, -99, 99);
        let entry = PermEntry { shape: shape.clone(), perm: perm.clone() };
        let code = vec![Instr::Transpose { table: 0, src: 0, dst: len }];
        let got = run_scratch(2 * len, &init, code, move |s| s.perms = vec![entry]).unwrap();
        let a = ndarray::ArrayD::from_shape_vec(
            ndarray::IxDyn(&shape.iter().map(|&d| d as usize).collect::<Vec<_>>()),
            init.clone(),
        )
        .unwrap();
        let p: Vec<usize> = perm.iter().map(|&d| d as usize).collect();
        let want: Vec<i64> = a.permuted_axes(ndarray::IxDyn(&p)).iter().copied().collect();
        assert_eq!(&got[len as usize..], &want[..], "{shape:?} {perm:?}");
    }
}
