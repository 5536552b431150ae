//! The stream simulator (`StreamRunner`) on streams written by hand: a convolution as
//! `im2col` + `mvm` + `requant` against the program interpreter running the same Conv step on a
//! crossbar (ADC steps that lose bits, per layer and per column group, both encodings, conv
//! groups, a layer split by rows into two groups summed with `shift_add` or by columns into two
//! groups run one after the other over every chunk, lossless configurations that take the exact
//! GEMM); reconfiguring a group; the lazy `im2col` and the kept input planes against eager
//! execution, with instructions that disturb them; several cores exchanging words with
//! `send`/`recv` and meeting at `sync`; deadlock detection; the progress callback; randomly
//! corrupted streams (refused or run, never a panic). The vector instructions against naive
//! references are in `sim_vector.rs`.

mod sim_common;

use cimc_backends::arith::{code_range, FixedMultiplier};
use cimc_backends::isa::Instr;
use cimc_backends::program::{
    BufQuant, BufferDecl, CodeType, Crossbar, Elem, IntTensor, Program, Requant, Step, Window,
};
use cimc_backends::stream::{Core, GroupEntry, PermEntry, RequantEntry, Stream, WindowEntry};
use cimc_interp::Tensor;
use cimc_ir::{CrossbarGeometry, WeightEncoding};
use cimc_sim::{ProgramRunner, StreamRunner};
use sim_common::*;

/// One random convolution: shapes, numerics, data, and how the stream cuts it.
#[derive(Debug)]
struct ConvCase {
    n: usize,
    groups: usize,
    cg: usize,
    mg: usize,
    h: usize,
    w: usize,
    k: [usize; 2],
    s: [usize; 2],
    d: [usize; 2],
    p: [usize; 4],
    oh: usize,
    ow: usize,
    in_bits: u8,
    in_signed: bool,
    z_x: i32,
    xb: Crossbar,
    weights: Vec<i32>,
    bias: Vec<i64>,
    mult: Vec<FixedMultiplier>,
    out: (u8, bool, i32),
    /// Positions per `im2col` chunk.
    chunk: usize,
    /// Rows of the first group when the layer is split in two (a multiple of `xb.rows`).
    split: Option<usize>,
    /// Outputs of the first group when the layer is split in two by columns (at a column
    /// group's boundary; one conv group); the groups then run one after the other over every
    /// chunk, as a layer-serial stream runs them.
    col_split: Option<usize>,
}

fn out_dim(i: usize, k: usize, s: usize, d: usize, p: usize) -> Option<usize> {
    let span = d * (k - 1) + 1;
    (i + p >= span).then(|| (i + p - span) / s + 1)
}

fn conv_case(seed: u64) -> Option<ConvCase> {
    let mut r = Rng(seed);
    let depthwise = r.int(0, 3) == 0;
    let groups = r.int(1, 3) as usize;
    let (cg, mg) = if depthwise { (1, 1) } else { (r.int(1, 4) as usize, r.int(1, 5) as usize) };
    let (h, w) = (r.int(1, 7) as usize, r.int(2, 7) as usize);
    let k = [r.int(1, 3) as usize, r.int(1, 3) as usize];
    let s = [r.int(1, 2) as usize, r.int(1, 2) as usize];
    let d = [r.int(1, 2) as usize, r.int(1, 2) as usize];
    let p = [0, 0, 0, 0].map(|_: usize| r.int(0, 2) as usize);
    let oh = out_dim(h, k[0], s[0], d[0], p[0] + p[2])?;
    let ow = out_dim(w, k[1], s[1], d[1], p[1] + p[3])?;
    let in_bits = r.int(2, 8) as u8;
    let in_signed = r.coin();
    let (ilo, ihi) = code_range(in_bits, in_signed);
    let encoding = WeightEncoding::ALL[r.int(0, 2) as usize];
    let weight_bits = r.int(2, 8) as u32;
    let full_range = r.int(0, 3) == 0;
    let magnitude_bits = match encoding {
        WeightEncoding::Differential if !full_range => weight_bits - 1,
        _ => weight_bits,
    };
    let cell_bits = r.int(1, 3) as u32;
    let cpo = magnitude_bits.div_ceil(cell_bits) as usize
        * if encoding == WeightEncoding::Differential { 2 } else { 1 };
    let kk = cg * k[0] * k[1];
    let lossless = r.int(0, 4) == 0;
    let mut xb = Crossbar {
        geometry: CrossbarGeometry {
            encoding,
            rows: r.int(1, kk as i64 + 2) as usize,
            cols: cpo * r.int(1, 3) as usize + r.int(0, cpo as i64 - 1) as usize,
            cell_bits,
            dac_bits: r.int(1, 3) as u32,
            adc_bits: if lossless { 16 } else { r.int(1, 8) as u32 },
        },
        weight_bits,
        magnitude_bits,
        input_bits: in_bits as u32,
        input_min: ilo,
        adc_step: vec![],
        arrays: vec![],
    };
    let m = groups * mg;
    let column_groups = xb.column_group_of(m - 1, mg) + 1;
    let n_steps = if lossless || r.coin() { 1 } else { column_groups };
    xb.adc_step = (0..n_steps).map(|_| if lossless { 0 } else { r.int(0, 5) as u32 }).collect();
    let wmax = (1i64 << (weight_bits - 1)) - 1;
    let wmin = if full_range { -wmax - 1 } else { -wmax };
    let weights = (0..m * kk).map(|_| r.int(wmin, wmax) as i32).collect();
    let bias = (0..m).map(|_| r.int(-50, 50)).collect();
    let out_bits = r.int(8, 16) as u8;
    let out_signed = r.coin();
    let (olo, ohi) = code_range(out_bits, out_signed);
    let bound = kk as f64 * (1u64 << in_bits) as f64 * (1u64 << weight_bits) as f64;
    let top = (1u64 << (out_bits - 1)) as f64;
    let mult = (0..m)
        .map(|_| {
            let f = 0.5 + (r.next_u64() % 1000) as f64 / 2000.0;
            FixedMultiplier::from_real((top / bound * 4.0 * f).min(3.0)).unwrap()
        })
        .collect();
    let tiles = kk.div_ceil(xb.geometry.rows);
    let split =
        (tiles >= 2 && r.coin()).then(|| xb.geometry.rows * r.int(1, tiles as i64 - 1) as usize);
    let cpg = (xb.geometry.cols / cpo).max(1);
    let col_split = (split.is_none() && groups == 1 && m > cpg && r.int(0, 3) > 0)
        .then(|| cpg * r.int(1, ((m - 1) / cpg) as i64) as usize);
    Some(ConvCase {
        n: r.int(1, 2) as usize,
        groups,
        cg,
        mg,
        h,
        w,
        k,
        s,
        d,
        p,
        oh,
        ow,
        in_bits,
        in_signed,
        z_x: r.int(ilo as i64, ihi as i64) as i32,
        xb,
        weights,
        bias,
        mult,
        out: (out_bits, out_signed, r.int(olo as i64, ohi as i64) as i32),
        chunk: r.int(1, (oh * ow) as i64) as usize,
        split,
        col_split,
    })
}

fn code_decl(name: &str, shape: Vec<usize>, bits: u8, signed: bool, zp: i32) -> BufferDecl {
    BufferDecl {
        name: name.into(),
        shape,
        elem: Elem::Code(CodeType { bits, signed }),
        quant: Some(BufQuant { scale: vec![0.1], zero_point: vec![zp], axis: None }),
    }
}

fn program_of(c: &ConvCase) -> Program {
    let (out_bits, out_signed, z_y) = c.out;
    let (olo, ohi) = code_range(out_bits, out_signed);
    let (cin, m) = (c.groups * c.cg, c.groups * c.mg);
    Program {
        name: "conv".into(),
        buffers: vec![
            code_decl("x", vec![c.n, cin, c.h, c.w], c.in_bits, c.in_signed, c.z_x),
            code_decl("y", vec![c.n, m, c.oh, c.ow], out_bits, out_signed, z_y),
        ],
        inputs: vec![0],
        outputs: vec![1],
        steps: vec![Step::Conv {
            input: 0,
            output: 1,
            input_zero_point: c.z_x,
            weights: IntTensor {
                shape: vec![m, c.cg, c.k[0], c.k[1]],
                bits: c.xb.weight_bits as u8,
                data: c.weights.clone(),
            },
            bias: c.bias.clone(),
            window: Window {
                kernel: c.k.to_vec(),
                strides: c.s.to_vec(),
                dilations: c.d.to_vec(),
                pads: c.p.to_vec(),
            },
            group: c.groups,
            requant: Requant { mult: c.mult.clone(), zero_point: z_y, lo: olo, hi: ohi },
            crossbar: Some(c.xb.clone()),
        }],
        origins: vec!["conv".into()],
        target: None,
    }
}

/// The `xbar_config` (and `adc_step`s) of group `group` for crossbar `x`, input zero point `z`.
fn configure(x: &Crossbar, z: i32, group: u16) -> Vec<Instr> {
    let mut code = vec![Instr::XbarConfig {
        group,
        rows: x.geometry.rows as u16,
        cols: x.geometry.cols as u16,
        input_bits: x.input_bits as u8,
        dac_bits: x.geometry.dac_bits as u8,
        cell_bits: x.geometry.cell_bits as u8,
        weight_bits: x.weight_bits as u8,
        magnitude_bits: x.magnitude_bits as u8,
        encoding: x.geometry.encoding,
        adc_bits: x.geometry.adc_bits as u8,
        adc_step: x.adc_step[0] as u8,
        input_min: x.input_min,
        input_zero: z,
    }];
    if x.adc_step.len() > 1 {
        for (cgi, &e) in x.adc_step.iter().enumerate() {
            code.push(Instr::AdcStep { group, column_group: cgi as u16, step: e as u8 });
        }
    }
    code
}

/// The stream of the case: per image, `load`, `im2col` chunks with one `mvm` per group (the
/// second group of a split layer into a temporary, added with `shift_add`), `requant` in
/// place, `transpose` to channel-first and `store`.
fn stream_of(c: &ConvCase) -> Stream {
    let (cin, m) = (c.groups * c.cg, c.groups * c.mg);
    let kk = c.cg * c.k[0] * c.k[1];
    let (src_len, pos) = (cin * c.h * c.w, c.oh * c.ow);
    let (x_at, col) = (0, src_len);
    let acc = col + c.chunk * c.groups * kk;
    let tmp = acc + pos * m;
    let out = tmp + c.chunk * m;
    let scratch = out + pos * m;
    let rows_a = c.split.unwrap_or(kk);
    let group = |r0: usize, r1: usize| GroupEntry {
        core: 0,
        layer: 0,
        replica: 0,
        k: (r1 - r0) as u32,
        n: m as u32,
        conv_groups: c.groups as u32,
        in_stride: (c.groups * kk) as u32,
        in_offset: r0 as u32,
        group_stride: kk as u32,
        out_stride: m as u32,
        weight_bits: c.xb.weight_bits as u8,
        weights: (0..m).flat_map(|o| (r0..r1).map(move |r| c.weights[o * kk + r])).collect(),
        arrays: vec![],
    };
    let mut groups = vec![group(0, rows_a)];
    let mut code = configure(&c.xb, c.z_x, 0);
    if c.split.is_some() {
        groups.push(group(rows_a, kk));
        code.extend(configure(&c.xb, c.z_x, 1));
    }
    // Column parts: (group, first output).
    let mut parts = vec![(0u16, 0usize)];
    if let Some(m1) = c.col_split {
        code.clear();
        groups.clear();
        let cpg = (c.xb.geometry.cols / c.xb.columns_per_output()).max(1);
        for (gi, (n0, n1)) in [(0, m1), (m1, m)].into_iter().enumerate() {
            groups.push(GroupEntry {
                n: (n1 - n0) as u32,
                conv_groups: 1,
                weights: (n0..n1)
                    .flat_map(|o| (0..kk).map(move |r| c.weights[o * kk + r]))
                    .collect(),
                ..group(0, kk)
            });
            let mut x = c.xb.clone();
            if x.adc_step.len() > 1 {
                x.adc_step =
                    (0..(n1 - n0).div_ceil(cpg)).map(|j| c.xb.step_of(n0 + j * cpg, m)).collect();
            }
            code.extend(configure(&x, c.z_x, gi as u16));
        }
        parts = vec![(0, 0), (1, m1)];
    }
    let base = WindowEntry {
        channels: cin as u32,
        height: c.h as u32,
        width: c.w as u32,
        kernel: c.k.map(|v| v as u32),
        strides: c.s.map(|v| v as u32),
        dilations: c.d.map(|v| v as u32),
        pads: c.p.map(|v| v as u32),
        conv_groups: c.groups as u32,
        out_height: c.oh as u32,
        out_width: c.ow as u32,
        first_position: 0,
        positions: pos as u32,
        count_include_pad: false,
    };
    let mut windows = Vec::new();
    for b in 0..c.n {
        let len = src_len as u32;
        code.push(Instr::Load { dst: x_at as u32, src: b as u32 * len, len, elem_bytes: 1 });
        for &(part, n0) in &parts {
            for p0 in (0..pos).step_by(c.chunk) {
                let p1 = (p0 + c.chunk).min(pos);
                let count = (p1 - p0) as u32;
                // One entry per chunk, shared by the parts and the images (as the emitter
                // shares equal entries).
                let entry =
                    WindowEntry { first_position: p0 as u32, positions: count, ..base.clone() };
                let window = match windows.iter().position(|w| *w == entry) {
                    Some(i) => i as u16,
                    None => {
                        windows.push(entry);
                        (windows.len() - 1) as u16
                    }
                };
                let (src, dst) = (col as u32, (acc + p0 * m + n0) as u32);
                code.push(Instr::Im2col { window, src: x_at as u32, dst: src, pad: c.z_x });
                code.push(Instr::Mvm { group: part, src, dst, count });
                if c.split.is_some() {
                    code.push(Instr::Mvm { group: 1, src, dst: tmp as u32, count });
                    let len = count * m as u32;
                    code.push(Instr::ShiftAdd { dst, src: tmp as u32, len, shift: 0 });
                }
            }
        }
        let len = (pos * m) as u32;
        let (acc, out) = (acc as u32, out as u32);
        code.push(Instr::Requant {
            table: 0,
            src: acc,
            dst: acc,
            len,
            channel_len: 1,
            first_channel: 0,
        });
        code.push(Instr::Transpose { table: 0, src: acc, dst: out });
        let dst = (c.n * src_len) as u32 + b as u32 * len;
        code.push(Instr::Store { dst, src: out, len, elem_bytes: 1 });
    }
    code.push(Instr::Halt {});
    let (out_bits, out_signed, z_y) = c.out;
    let (olo, ohi) = code_range(out_bits, out_signed);
    let p = program_of(c);
    let io = |b: usize, addr: usize| io_of(&p.buffers[b], addr as u32);
    let mut s = stream(vec![Core { scratch_words: scratch as u32, code, marks: vec![] }]);
    s.global_words = (c.n * (src_len + pos * m)) as u32;
    s.inputs = vec![io(0, 0)];
    s.outputs = vec![io(1, c.n * src_len)];
    s.groups = groups;
    s.windows = windows;
    s.requants = vec![RequantEntry {
        scale: vec![],
        bias: c.bias.clone(),
        mult: c.mult.clone(),
        zero_point: z_y,
        lo: olo,
        hi: ohi,
    }];
    s.perms = vec![PermEntry { shape: vec![pos as u32, m as u32], perm: vec![1, 0] }];
    s
}

fn conv_input(c: &ConvCase, seed: u64) -> Tensor {
    let mut r = Rng(seed ^ 0x5eed);
    let (lo, hi) = code_range(c.in_bits, c.in_signed);
    let cin = c.groups * c.cg;
    let x: Vec<i32> = (0..c.n * cin * c.h * c.w)
        .map(|_| if r.int(0, 2) == 0 { lo } else { r.int(lo as i64, hi as i64) as i32 })
        .collect();
    i32_tensor(&[c.n, cin, c.h, c.w], x)
}

#[test]
fn conv_matches_program_crossbar() {
    let (mut ran, mut split, mut per_cg, mut offset, mut lossless, mut cols) = (0, 0, 0, 0, 0, 0);
    let mut flipped = 0;
    for seed in 0..400u64 {
        let Some(c) = conv_case(seed) else { continue };
        let program = program_of(&c);
        let Ok(pr) = ProgramRunner::new(&program) else { continue };
        let x = conv_input(&c, seed);
        let want = codes(&pr.run(vec![x.clone()]).unwrap()[0]);
        let s = stream_of(&c);
        // Through the file form, as an executor gets it.
        let s = Stream::from_bytes(&s.to_bytes()).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let sr = StreamRunner::new(&s).unwrap();
        let got = codes(&sr.run(vec![x.clone()]).unwrap_or_else(|e| panic!("seed {seed}: {e}"))[0]);
        assert_eq!(got, want, "seed {seed}: {c:?}");
        // A second run reuses the prepared groups and gives the same codes.
        assert_eq!(codes(&sr.run(vec![x]).unwrap()[0]), want, "seed {seed}: second run");
        ran += 1;
        split += c.split.is_some() as usize;
        cols += c.col_split.is_some() as usize;
        per_cg += (c.xb.adc_step.len() > 1) as usize;
        offset += (c.xb.geometry.encoding == WeightEncoding::Offset) as usize;
        flipped += (c.xb.geometry.encoding == WeightEncoding::Flipped) as usize;
        lossless += c.xb.is_lossless(c.cg * c.k[0] * c.k[1]) as usize;
    }
    assert!(ran >= 200 && split >= 20 && cols >= 20 && per_cg >= 20 && offset >= 40 && flipped >= 40 && lossless >= 20,
        "coverage: {ran} cases, {split} split, {cols} split by columns, {per_cg} per column group, {offset} offset, {flipped} flipped, {lossless} lossless");
}

/// Three cores: core 0 loads the input and sends a third to each of the others; each core
/// computes `relu` on its third; cores 1 and 2 send their results back; core 0 stores the
/// whole. Barriers before and after the exchange.
#[test]
fn three_cores_exchange_words() {
    let n = 12u32;
    let third = n / 3;
    let relu = |at: u32| Instr::Relu { dst: at, src: at, len: third, zero: 2 };
    let core0 = vec![
        Instr::Load { dst: 0, src: 0, len: n, elem_bytes: 1 },
        Instr::Sync { barrier: 7 },
        Instr::Send { to: 1, dst: 0, src: third, len: third, elem_bytes: 1 },
        Instr::Send { to: 2, dst: 4, src: 2 * third, len: 2, elem_bytes: 1 },
        Instr::Send { to: 2, dst: 6, src: 2 * third + 2, len: 2, elem_bytes: 1 },
        relu(0),
        Instr::Recv { from: 2, len: third },
        Instr::Recv { from: 1, len: third },
        Instr::Sync { barrier: 8 },
        Instr::Store { dst: n, src: 0, len: n, elem_bytes: 1 },
        Instr::Halt {},
    ];
    let worker = |at: u32, back: u32| {
        vec![
            Instr::Sync { barrier: 7 },
            Instr::Recv { from: 0, len: third },
            relu(at),
            Instr::Send { to: 0, dst: back, src: at, len: third, elem_bytes: 1 },
            Instr::Sync { barrier: 8 },
            Instr::Halt {},
        ]
    };
    let mut s = stream(vec![
        Core { scratch_words: n, code: core0, marks: vec![] },
        Core { scratch_words: 8, code: worker(0, third), marks: vec![] },
        Core { scratch_words: 8, code: worker(4, 2 * third), marks: vec![] },
    ]);
    s.global_words = 2 * n;
    s.inputs = vec![codes_io("x", vec![n as usize], 0)];
    s.outputs = vec![codes_io("y", vec![n as usize], n)];
    let x: Vec<i32> = (0..n as i32).map(|v| v * 3 % 7 - 2).collect();
    let r = StreamRunner::new(&s).unwrap();
    let calls = std::cell::Cell::new((0u64, 0u64));
    let y = r
        .run_with_progress(vec![i32_tensor(&[n as usize], x.clone())], &|d, t| calls.set((d, t)))
        .unwrap();
    assert_eq!(codes(&y[0]), x.iter().map(|&v| v.max(2)).collect::<Vec<_>>());
    // Every instruction counted once.
    assert_eq!(calls.get(), (23, 23));
}

#[test]
fn deadlock_is_reported_with_every_waiting_core() {
    // Each core waits for the other's words before sending its own.
    let side = |other: u16| {
        vec![
            Instr::Recv { from: other, len: 2 },
            Instr::Send { to: other, dst: 0, src: 0, len: 2, elem_bytes: 1 },
            Instr::Halt {},
        ]
    };
    let s = stream(vec![
        Core { scratch_words: 4, code: side(1), marks: vec![] },
        Core { scratch_words: 4, code: side(0), marks: vec![] },
    ]);
    s.validate().unwrap();
    let e = StreamRunner::new(&s).unwrap().run(vec![]).unwrap_err().to_string();
    assert!(e.contains("deadlock"), "{e}");
    assert!(e.contains("core 0 at instruction 0") && e.contains("core 1 at instruction 0"), "{e}");
    assert!(e.contains("waits for 2 words from core 1, 0 arrived"), "{e}");

    // A core that halts while another waits at a barrier: the stream is invalid, so the
    // runner refuses it before running.
    let mut s = stream(vec![
        Core {
            scratch_words: 1,
            code: vec![Instr::Sync { barrier: 0 }, Instr::Halt {}],
            marks: vec![],
        },
        Core { scratch_words: 1, code: vec![Instr::Halt {}], marks: vec![] },
    ]);
    assert!(StreamRunner::new(&s).is_err());
    s.cores[1].code.insert(0, Instr::Sync { barrier: 0 });
    assert!(StreamRunner::new(&s).unwrap().run(vec![]).is_ok());
}

/// Reconfiguring a group between `mvm`s takes effect (a new preparation, or the cached one of
/// an equal configuration): the layer run twice in one stream, with the last configuration's
/// result in the output.
#[test]
fn reconfiguring_a_group_changes_its_numerics() {
    let c = (0..400).filter_map(conv_case).find(|c| {
        c.split.is_none()
            && c.col_split.is_none()
            && c.xb.adc_step.len() == 1
            && c.xb.geometry.adc_bits <= 2
            && c.n == 1
    });
    let c = c.expect("a case with a coarse ADC");
    let x = conv_input(&c, 1);
    let mut wide = c.xb.clone();
    wide.adc_step = vec![0];
    wide.geometry.adc_bits = 16;
    let program = |xb: &Crossbar| {
        let mut p = program_of(&c);
        if let Step::Conv { crossbar, .. } = &mut p.steps[0] {
            *crossbar = Some(xb.clone());
        }
        codes(&ProgramRunner::new(&p).unwrap().run(vec![x.clone()]).unwrap()[0])
    };
    let (coarse_codes, wide_codes) = (program(&c.xb), program(&wide));
    assert_ne!(coarse_codes, wide_codes, "the coarse ADC should lose something");
    let s = stream_of(&c);
    let code = &s.cores[0].code;
    let body = &code[1..code.len() - 1];
    let twice = |first: &Crossbar, second: &Crossbar| {
        let mut t = s.clone();
        let mut new = configure(first, c.z_x, 0);
        new.extend_from_slice(body);
        new.extend(configure(second, c.z_x, 0));
        new.extend_from_slice(body);
        new.push(Instr::Halt {});
        t.cores[0].code = new;
        StreamRunner::new(&t).unwrap()
    };
    let r = twice(&c.xb, &wide);
    assert_eq!(codes(&r.run(vec![x.clone()]).unwrap()[0]), wide_codes);
    let r = twice(&wide, &c.xb);
    assert_eq!(codes(&r.run(vec![x.clone()]).unwrap()[0]), coarse_codes);
    assert_eq!(codes(&r.run(vec![x]).unwrap()[0]), coarse_codes);
}

/// Streams with random fields changed (instruction fields within their encodable ranges, table
/// entries, group strides): validation refuses them or the simulator runs them to a result or
/// an error, never a panic.
#[test]
fn mutated_streams_never_panic() {
    let cases: Vec<ConvCase> = (0..60).filter_map(conv_case).filter(|c| c.n == 1).take(6).collect();
    let mut r = Rng(99);
    let (mut valid, mut ran_ok) = (0, 0);
    for it in 0..3000 {
        let c = &cases[it % cases.len()];
        let mut s = stream_of(c);
        for _ in 0..r.int(1, 3) {
            let small = |r: &mut Rng, v: i64| match r.int(0, 3) {
                0 => r.int(0, 16),
                1 => v + r.int(-3, 3),
                2 => r.int(0, 1 << 12),
                _ => v.saturating_mul(2),
            };
            match r.int(0, 5) {
                0..=2 => {
                    let code = &mut s.cores[0].code;
                    let i = r.int(0, code.len() as i64 - 1) as usize;
                    let info = code[i].info();
                    if info.fields.is_empty() {
                        continue;
                    }
                    let mut v = code[i].values().to_vec();
                    let f = r.int(0, v.len() as i64 - 1) as usize;
                    let fi = &info.fields[f];
                    v[f] = small(&mut r, v[f]).clamp(fi.min, fi.max);
                    if let Some(new) = Instr::from_values(info.opcode, &v) {
                        code[i] = new;
                    }
                }
                3 => {
                    let wi = r.int(0, s.windows.len() as i64 - 1) as usize;
                    let w = &mut s.windows[wi];
                    let fields = [
                        &mut w.kernel[0],
                        &mut w.strides[1],
                        &mut w.dilations[0],
                        &mut w.pads[3],
                        &mut w.out_width,
                        &mut w.first_position,
                        &mut w.positions,
                        &mut w.conv_groups,
                    ];
                    let k = r.int(0, fields.len() as i64 - 1) as usize;
                    let old = *fields[k] as i64;
                    *fields.into_iter().nth(k).unwrap() =
                        small(&mut r, old).clamp(0, u32::MAX as i64) as u32;
                }
                4 => {
                    let g = &mut s.groups[0];
                    let fields = [
                        &mut g.k,
                        &mut g.in_stride,
                        &mut g.in_offset,
                        &mut g.out_stride,
                        &mut g.group_stride,
                    ];
                    let k = r.int(0, fields.len() as i64 - 1) as usize;
                    let old = *fields[k] as i64;
                    *fields.into_iter().nth(k).unwrap() =
                        small(&mut r, old).clamp(0, u32::MAX as i64) as u32;
                }
                _ => {
                    let q = &mut s.requants[0];
                    match r.int(0, 2) {
                        0 => q.lo = small(&mut r, q.lo as i64) as i32,
                        1 => q.bias.truncate(r.int(0, 2) as usize),
                        _ => q.mult[0].sh = small(&mut r, q.mult[0].sh as i64) as i32,
                    }
                }
            }
        }
        let Ok(runner) = StreamRunner::new(&s) else { continue };
        valid += 1;
        ran_ok += runner.run(vec![conv_input(c, it as u64)]).is_ok() as usize;
    }
    assert!(valid > 300 && ran_ok > 100, "{valid} valid, {ran_ok} ran");
}

/// The simulator records an `im2col` and lets the `mvm`s read its vectors from the image; that
/// must be invisible. Streams with instructions that read, overwrite or shift around the
/// vectors and their image between `im2col` and `mvm` give the same result (or error) with and
/// without it.
#[test]
fn lazy_im2col_is_invisible() {
    let mut r = Rng(7);
    let mut compared = 0;
    for seed in 0..300u64 {
        let Some(c) = conv_case(seed) else { continue };
        if c.n != 1 {
            continue;
        }
        let s = stream_of(&c);
        let cin = c.groups * c.cg;
        let src_len = (cin * c.h * c.w) as u32;
        let col = src_len;
        let per_vec = (c.groups * c.cg * c.k[0] * c.k[1]) as u32;
        let mut s = s;
        s.windows.push(WindowEntry { first_position: 0, positions: 1, ..s.windows[0].clone() });
        let one = (s.windows.len() - 1) as u16;
        // Room for the shifted vectors.
        s.cores[0].scratch_words += 2 * per_vec;
        let mut code = Vec::new();
        for &i in &s.cores[0].code {
            code.push(i);
            if !matches!(i, Instr::Im2col { .. }) {
                continue;
            }
            match r.int(0, 5) {
                // The image overwritten before the mvm reads the vectors.
                0 => code.push(Instr::Fill { dst: 0, len: src_len, value: c.xb.input_min }),
                // A word of the vectors read, then one overwritten.
                1 => {
                    code.push(Instr::Relu { dst: 0, src: col, len: 1, zero: c.xb.input_min });
                    code.push(Instr::Fill { dst: col + 1, len: 1, value: c.xb.input_min });
                }
                // The vectors shifted by a word.
                2 => code.push(Instr::Copy { dst: col, src: col + 1, len: 1 }),
                // Another im2col of one position over part of the vectors (at a vector
                // boundary or not), then every vector's word read.
                3 => {
                    let shift = if r.coin() { per_vec } else { 1 };
                    code.push(Instr::Im2col { window: one, src: 0, dst: col + shift, pad: c.z_x });
                    let len = (c.chunk as u32 * per_vec).max(shift + per_vec);
                    code.push(Instr::Relu { dst: col, src: col, len, zero: i32::MIN });
                }
                _ => {}
            }
        }
        // The mvms read one word later in some streams (the count shrinks to stay in range).
        if r.coin() {
            for i in &mut code {
                if let Instr::Mvm { src, count, .. } = i {
                    if *count > 1 {
                        *src += 1;
                        *count -= 1;
                    }
                }
            }
        }
        let mut t = s.clone();
        t.cores[0].code = code;
        let run = |lazy: bool| {
            let mut r = StreamRunner::new(&t).unwrap();
            r.set_lazy_im2col(lazy);
            r.run(vec![conv_input(&c, seed)]).map(|y| codes(&y[0])).map_err(|e| e.to_string())
        };
        assert_eq!(run(true), run(false), "seed {seed}");
        compared += 1;
    }
    assert!(compared > 100);
}
