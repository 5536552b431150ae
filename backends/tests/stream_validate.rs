//! Static validation of instruction streams (`Stream::validate`, run by `Stream::from_bytes`):
//! a small stream that uses every table and every kind of check is valid and round-trips
//! through its file form; each way of breaking it is refused with an error that names the core
//! and the instruction; every prefix of its file and thousands of corrupted copies are refused
//! or read without a panic.

use cimc_backends::arith::FixedMultiplier;
use cimc_backends::isa::{encode_all, Instr, WeightEncoding};
use cimc_backends::program::{CodeType, Elem};
use cimc_backends::stream::{
    AddEntry, Core, GroupEntry, HostEntry, Io, PermEntry, RequantEntry, Schedule, Stream,
    WindowEntry,
};

const ONE: FixedMultiplier = FixedMultiplier { m: 1 << 30, sh: -1 };

fn window(kernel: u32, out: u32) -> WindowEntry {
    WindowEntry {
        channels: 2,
        height: 3,
        width: 3,
        kernel: [kernel; 2],
        strides: [1, 1],
        dilations: [1, 1],
        pads: [0; 4],
        conv_groups: 1,
        out_height: out,
        out_width: out,
        first_position: 0,
        positions: out * out,
        count_include_pad: false,
    }
}

fn group(arrays: Vec<u32>) -> GroupEntry {
    GroupEntry {
        core: 0,
        layer: 0,
        replica: 0,
        k: 8,
        n: 2,
        conv_groups: 1,
        in_stride: 8,
        in_offset: 0,
        group_stride: 8,
        out_stride: 2,
        weight_bits: 4,
        weights: (0..16).map(|i| i % 15 - 7).collect(),
        arrays,
    }
}

fn config(group: u16) -> Instr {
    Instr::XbarConfig {
        group,
        rows: 8,
        cols: 8,
        input_bits: 8,
        dac_bits: 1,
        cell_bits: 1,
        weight_bits: 4,
        magnitude_bits: 3,
        encoding: WeightEncoding::Differential,
        adc_bits: 4,
        adc_step: 1,
        input_min: 0,
        input_zero: 0,
    }
}

/// Two cores, layer-serial. Core 0: conv (im2col, xbar_load, xbar_config, adc_step, mvm,
/// requant), pooling, a host op, sends the codes to core 1 and gets them back; core 1: relu,
/// transpose, add.
fn small() -> Stream {
    let core0 = vec![
        Instr::Load { dst: 0, src: 0, len: 18, elem_bytes: 1 },
        Instr::Im2col { window: 0, src: 0, dst: 18, pad: 0 },
        Instr::XbarLoad { group: 0 },
        config(0),
        Instr::AdcStep { group: 0, column_group: 0, step: 2 },
        Instr::Mvm { group: 0, src: 18, dst: 50, count: 4 },
        Instr::Requant { table: 0, src: 50, dst: 50, len: 8, channel_len: 1, first_channel: 0 },
        Instr::MaxPool { window: 1, src: 0, dst: 58 },
        Instr::AvgPool { window: 1, table: 1, src: 0, dst: 66, zero: 0 },
        Instr::Host { op: 0 },
        Instr::Send { to: 1, dst: 0, src: 50, len: 8, elem_bytes: 1 },
        Instr::Sync { barrier: 0 },
        Instr::Recv { from: 1, len: 8 },
        Instr::Store { dst: 32, src: 50, len: 8, elem_bytes: 1 },
        Instr::Halt {},
    ];
    let core1 = vec![
        Instr::Recv { from: 0, len: 8 },
        Instr::Relu { dst: 0, src: 0, len: 8, zero: 0 },
        Instr::Sync { barrier: 0 },
        Instr::Send { to: 0, dst: 50, src: 0, len: 8, elem_bytes: 1 },
        Instr::Transpose { table: 0, src: 0, dst: 8 },
        Instr::Add { table: 0, a: 0, b: 8, dst: 16, len: 8 },
        Instr::Halt {},
    ];
    let codes = Elem::Code(CodeType { bits: 8, signed: false });
    Stream {
        name: "small".into(),
        target: None,
        schedule: Schedule::LayerSerial,
        arrays: 4,
        global_words: 64,
        inputs: vec![Io {
            name: "x".into(),
            shape: vec![1, 2, 3, 3],
            elem: codes,
            quant: None,
            addr: 0,
        }],
        outputs: vec![Io { name: "y".into(), shape: vec![8], elem: codes, quant: None, addr: 32 }],
        layers: vec!["conv".into(), "relu".into()],
        cores: vec![
            Core { scratch_words: 80, code: core0, marks: vec![(0, 0), (10, 1)] },
            Core { scratch_words: 32, code: core1, marks: vec![(1, 1)] },
        ],
        groups: vec![group(vec![0, 1]), group(vec![1, 2])],
        windows: vec![window(2, 2), window(2, 2)],
        requants: vec![
            RequantEntry {
                scale: vec![],
                bias: vec![3, -2],
                mult: vec![ONE],
                zero_point: 0,
                lo: 0,
                hi: 255,
            },
            RequantEntry {
                scale: vec![],
                bias: vec![],
                mult: vec![ONE; 4],
                zero_point: 0,
                lo: 0,
                hi: 255,
            },
        ],
        adds: vec![AddEntry {
            a_zero_point: 0,
            b_zero_point: 0,
            headroom: 20,
            a_mult: ONE,
            b_mult: ONE,
            mult: FixedMultiplier { m: 1 << 30, sh: 19 },
            zero_point: 0,
            lo: 0,
            hi: 255,
        }],
        perms: vec![PermEntry { shape: vec![2, 4], perm: vec![1, 0] }],
        hosts: vec![HostEntry::Quantize {
            src: 40,
            dst: 48,
            len: 4,
            scale: 0.5,
            zero_point: 0,
            lo: 0,
            hi: 255,
        }],
        digital: vec![],
    }
}

/// The validation error of `s` (which must be invalid).
fn error(s: &Stream) -> String {
    match s.validate() {
        Ok(()) => panic!("accepted: {s:?}"),
        Err(e) => e.to_string(),
    }
}

/// `s` changed by `f` is refused with an error containing every one of `parts`.
fn refused(f: impl FnOnce(&mut Stream), parts: &[&str]) {
    let mut s = small();
    f(&mut s);
    let e = error(&s);
    for p in parts {
        assert!(e.contains(p), "error {e:?} does not contain {p:?}");
    }
    // The file form refuses it too (the same way, unless the decoder already refuses a field).
    let e2 = Stream::from_bytes(&s.to_bytes()).unwrap_err().to_string();
    assert!(e2 == e || e2.contains("out of range"), "{e2}");
}

#[test]
fn the_small_stream_is_valid_and_round_trips() {
    let s = small();
    s.validate().unwrap();
    let bytes = s.to_bytes();
    assert_eq!(Stream::from_bytes(&bytes).unwrap(), s);
    // Pipelined, the two groups of core 0 share array 1 (blocks of one array, as the tile pass
    // packs them): allowed.
    let mut p = s.clone();
    p.schedule = Schedule::Pipelined;
    p.validate().unwrap();
}

#[test]
fn every_truncated_file_is_refused() {
    let bytes = small().to_bytes();
    for n in 0..bytes.len() {
        assert!(Stream::from_bytes(&bytes[..n]).is_err(), "a prefix of {n} bytes was accepted");
    }
}

#[test]
fn an_unknown_opcode_names_the_instruction() {
    let s = small();
    let mut bytes = s.to_bytes();
    let code = encode_all(&s.cores[0].code);
    let at = bytes.windows(code.len()).position(|w| w == code).expect("core 0's code bytes");
    bytes[at + 5 * 24] = 0xEE;
    let e = Stream::from_bytes(&bytes).unwrap_err().to_string();
    assert!(e.contains("core 0") && e.contains("instruction 5: unknown opcode 0xee"), "{e}");
}

#[test]
fn corrupted_files_never_panic() {
    let bytes = small().to_bytes();
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut accepted = 0;
    for _ in 0..5000 {
        let mut b = bytes.clone();
        for _ in 0..1 + next() % 4 {
            let i = (next() % b.len() as u64) as usize;
            b[i] = match next() % 3 {
                0 => next() as u8,
                1 => b[i] ^ (1 << (next() % 8)),
                _ => [0, 1, 0x7f, 0x80, 0xff][(next() % 5) as usize],
            };
        }
        accepted += Stream::from_bytes(&b).is_ok() as usize;
    }
    assert!(accepted < 5000);
}

#[test]
fn structure_errors() {
    refused(|s| _ = s.cores[1].code.pop(), &["core 1: no halt at the end"]);
    refused(
        |s| s.cores[1].code.insert(2, Instr::Halt {}),
        &["core 1, instruction 2 (halt): 5 instruction(s) after the first halt"],
    );
    refused(|s| s.cores.clear(), &["no cores"]);
    refused(|s| s.cores[0].marks = vec![(3, 0), (1, 1)], &["core 0: layer mark"]);
    refused(|s| s.groups[0].layer = 5, &["group 0: layer 5 does not exist"]);
    refused(|s| s.outputs[0].addr = 60, &["output 0 ('y')", "words 60..68"]);
    refused(
        |s| s.cores[0].code[0] = Instr::Load { dst: 0, src: 0, len: 18, elem_bytes: 9 },
        &["core 0, instruction 0 (load): field `elem_bytes` = 9 is out of range"],
    );
}

#[test]
fn address_errors() {
    refused(
        |s| s.cores[0].code[0] = Instr::Load { dst: 70, src: 0, len: 18, elem_bytes: 1 },
        &["core 0, instruction 0 (load): destination: words 70..88 lie outside the scratchpad (80 words)"],
    );
    refused(
        |s| s.cores[0].code[13] = Instr::Store { dst: u32::MAX, src: 50, len: 8, elem_bytes: 1 },
        &["core 0, instruction 13 (store): destination", "global memory (64 words)"],
    );
    refused(
        |s| s.cores[0].code[5] = Instr::Mvm { group: 0, src: 18, dst: 50, count: 9 },
        &["core 0, instruction 5 (mvm): input vectors: words 18..90 lie outside the scratchpad"],
    );
    refused(
        |s| s.cores[0].code[1] = Instr::Im2col { window: 0, src: 0, dst: 60, pad: 0 },
        &["core 0, instruction 1 (im2col): im2col vectors: words 60..92"],
    );
    refused(
        |s| s.cores[1].code[3] = Instr::Send { to: 0, dst: 75, src: 0, len: 8, elem_bytes: 1 },
        &["core 1, instruction 3 (send): destination: words 75..83 lie outside the scratchpad of core 0"],
    );
    refused(
        |s| {
            s.hosts[0] = HostEntry::Quantize {
                src: 60,
                dst: 0,
                len: 5,
                scale: 1.0,
                zero_point: 0,
                lo: 0,
                hi: 1,
            }
        },
        &["host entry 0"],
    );
}

#[test]
fn table_index_errors() {
    let cases: [(usize, usize, Instr, &str); 9] = [
        (
            0,
            1,
            Instr::Im2col { window: 9, src: 0, dst: 18, pad: 0 },
            "(im2col): window entry 9 does not exist (2 entries)",
        ),
        (
            0,
            6,
            Instr::Requant { table: 9, src: 50, dst: 50, len: 8, channel_len: 1, first_channel: 0 },
            "(requant): requant entry 9",
        ),
        (0, 7, Instr::MaxPool { window: 2, src: 0, dst: 58 }, "(max_pool): window entry 2"),
        (
            0,
            8,
            Instr::AvgPool { window: 1, table: 2, src: 0, dst: 66, zero: 0 },
            "(avg_pool): requant entry 2",
        ),
        (0, 9, Instr::Host { op: 1 }, "(host): host entry 1 does not exist (1 entries)"),
        (0, 5, Instr::Mvm { group: 7, src: 18, dst: 50, count: 4 }, "(mvm): group entry 7"),
        (0, 2, Instr::XbarLoad { group: 2 }, "(xbar_load): group entry 2"),
        (1, 4, Instr::Transpose { table: 1, src: 0, dst: 8 }, "(transpose): permutation entry 1"),
        (1, 5, Instr::Add { table: 3, a: 0, b: 8, dst: 16, len: 8 }, "(add): add entry 3"),
    ];
    for (core, i, instr, msg) in cases {
        refused(
            |s| s.cores[core].code[i] = instr,
            &[&format!("core {core}, instruction {i} {msg}")],
        );
    }
}

#[test]
fn crossbar_group_errors() {
    let nop = Instr::Fill { dst: 0, len: 0, value: 0 };
    refused(
        |s| s.cores[0].code[3] = nop,
        &["core 0, instruction 4 (adc_step): group 0 has no xbar_config before it"],
    );
    refused(
        |s| {
            s.cores[0].code[3] = nop;
            s.cores[0].code[4] = nop;
        },
        &["core 0, instruction 5 (mvm): group 0 has no xbar_config before it"],
    );
    refused(
        |s| s.cores[0].code[2] = nop,
        &["core 0, instruction 5 (mvm): group 0 is not programmed"],
    );
    refused(
        |s| s.cores[0].code[4] = Instr::XbarLoad { group: 1 },
        &["core 0, instruction 5 (mvm): array 1 of group 0 holds group 1 since its xbar_load"],
    );
    refused(
        |s| {
            s.groups[0].core = 1;
            s.groups[1].arrays = vec![2, 3];
        },
        &["core 0, instruction 2 (xbar_load): group 0 belongs to core 1"],
    );
    refused(
        |s| {
            s.groups[1].core = 1;
            s.groups[1].arrays = vec![3, 1];
        },
        &["group 1 (core 1): array 1 also holds group 0 of core 0 (an array belongs to one core)"],
    );
    refused(
        |s| s.groups[1].arrays = vec![4],
        &["group 1: array 4 does not exist (the chip has 4)"],
    );
    refused(
        |s| s.groups[0].weights[3] = 8,
        &["group 0: weight 3 (output 0, row 3) = 8 is outside the 4-bit range"],
    );
    refused(|s| _ = s.groups[0].weights.pop(), &["group 0: 15 weights for n·k = 2·8 = 16"]);
    refused(
        |s| s.cores[0].code[4] = Instr::AdcStep { group: 0, column_group: 2, step: 2 },
        &["core 0, instruction 4 (adc_step): column group 2 of group 0, which has 2"],
    );
    let with = |f: fn(&mut Instr)| {
        move |s: &mut Stream| {
            let mut c = config(0);
            f(&mut c);
            s.cores[0].code[3] = c;
        }
    };
    refused(
        with(|c| {
            if let Instr::XbarConfig { weight_bits, .. } = c {
                *weight_bits = 5
            }
        }),
        &["core 0, instruction 3 (xbar_config): weight_bits 5 but the group's weights have 4 bits"],
    );
    refused(
        with(|c| {
            if let Instr::XbarConfig { magnitude_bits, .. } = c {
                *magnitude_bits = 2
            }
        }),
        &["(xbar_config): weight code -7 does not fit 2 magnitude bits"],
    );
    refused(
        with(|c| {
            if let Instr::XbarConfig { cols, .. } = c {
                *cols = 5
            }
        }),
        &["(xbar_config): one output needs more columns than an array has"],
    );
    refused(
        with(|c| if let Instr::XbarConfig { input_zero, .. } = c { *input_zero = -1 }),
        &["(xbar_config): the input zero point -1 (padding) minus input_min 0 does not fit 8 input bits"],
    );
}

#[test]
fn table_entry_errors() {
    refused(
        |s| s.windows[0].out_height = 3,
        &["window entry 0: out_height 3 is not the output of height 3 with kernel 2"],
    );
    refused(
        |s| s.windows[0].conv_groups = 3,
        &["window entry 0: 2 channels do not split into 3 conv groups"],
    );
    refused(
        |s| s.windows[0].positions = 5,
        &["window entry 0: positions 0..5 are beyond the 2x2 outputs"],
    );
    refused(|s| s.windows[1].kernel = [0, 2], &["window entry 1: kernel height is 0"]);
    refused(
        |s| {
            s.windows[1] = WindowEntry { pads: [2, 0, 0, 0], kernel: [1, 2], out_height: 5, positions: 10, ..window(2, 2) };
        },
        &["core 0, instruction 7 (max_pool): window entry 1: output row 0: its window lies entirely in the padding"],
    );
    refused(|s| s.requants[0].mult.clear(), &["requant entry 0: no multiplier"]);
    refused(
        |s| {
            s.requants[0].bias = vec![1, 2, 3];
            s.requants[0].mult = vec![ONE; 2];
        },
        &["requant entry 0: 2 multipliers for 3 channels (1 or 3 expected)"],
    );
    refused(
        |s| s.requants[0].mult[0].sh = 70,
        &["requant entry 0: multiplier 0 (m = 1073741824, sh = 70)"],
    );
    refused(|s| s.requants[1].mult.truncate(2), &["core 0, instruction 8 (avg_pool): requant entry 1 has 2 multipliers for windows of up to 4 positions"]);
    refused(
        |s| s.requants[1].bias = vec![1],
        &["(avg_pool): requant entry 1 has scales other than 1 or biases other than 0"],
    );
    refused(|s| s.adds[0].lo = 300, &["add entry 0: the clamp range 300..=255 is empty"]);
    refused(
        |s| s.perms[0].perm = vec![1, 1],
        &["permutation entry 0: [1, 1] is not a permutation of 0..2"],
    );
    refused(
        |s| s.inputs[0].elem = Elem::Code(CodeType { bits: 0, signed: false }),
        &["input 0 ('x'): codes of 0 bits"],
    );
}

#[test]
fn communication_errors() {
    refused(
        |s| s.cores[1].code[0] = Instr::Recv { from: 0, len: 7 },
        &["core 0, instruction 10 (send): core 0 sends 8 words to core 1, which receives 7 from it"],
    );
    refused(
        |s| s.cores[0].code[10] = Instr::Send { to: 0, dst: 0, src: 50, len: 8, elem_bytes: 1 },
        &["core 0, instruction 10 (send): the receiving core 0 must be another core (0..2)"],
    );
    refused(
        |s| s.cores[1].code[0] = Instr::Recv { from: 5, len: 8 },
        &["core 1, instruction 0 (recv): the sending core 5"],
    );
    refused(
        |s| s.cores[1].code[2] = Instr::Sync { barrier: 1 },
        &["core 1, instruction 2 (sync): barrier 1 is its sync number 0; core 0's (instruction 11) is barrier 0"],
    );
    refused(
        |s| {
            s.cores[1].code.remove(2);
            s.cores[1].marks.clear();
        },
        &["core 0, instruction 11 (sync): barrier 0 is never met by core 1"],
    );
}
