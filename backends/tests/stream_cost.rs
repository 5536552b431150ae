//! The cost model of a stream (`docs/cost-model.md`): small streams built by hand, checked
//! against figures computed by hand in the comments; barriers, sends and receives on the
//! timeline; errors; determinism; the peak figures of the presets.

use cimc_backends::arith::FixedMultiplier;
use cimc_backends::isa::{Instr, WeightEncoding};
use cimc_backends::stream::cost::{
    array_peak, estimate, vector_cost, CostReport, GroupShape, Numerics,
};
use cimc_backends::stream::{Core, GroupEntry, RequantEntry, Schedule, Stream, WindowEntry};
use cimc_backends::target::Target;

/// Round figures, so that every expected value below is a short hand computation.
const TARGET: &str = r#"
name = "round"
[array]
rows = 4
cols = 8
cell_bits = 2
count = 4
[adc]
range = "worst"
[core]
arrays = 4
scratchpad_kib = 1
[cost]
xbar_read_energy_pj = 0.5
xbar_read_latency_ns = 10.0
dac_energy_pj = 1.0
adc_energy_pj = 2.0
adc_rate_gsps = 0.5
adcs_per_array = 1.0
shift_add_energy_pj = 0.25
vector_op_energy_pj = 3.0
vector_op_latency_ns = 2.0
vector_lanes = 2.0
buffer_read_pj_per_byte = 0.5
buffer_write_pj_per_byte = 1.0
global_mem_pj_per_byte = 10.0
global_mem_gb_per_s = 2.0
interconnect_pj_per_byte_hop = 4.0
interconnect_gb_per_s = 1.0
xbar_write_energy_pj = 5.0
xbar_write_latency_ns = 100.0
clock_ghz = 1.0
"#;

fn target() -> Target {
    Target::from_toml_str(TARGET, "round.toml").unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * b.abs().max(1.0)
}

macro_rules! assert_close {
    ($a:expr, $b:expr) => {{
        let (a, b) = ($a as f64, $b as f64);
        assert!(close(a, b), "{} = {a}, expected {b}", stringify!($a));
    }};
}

/// Group 0: 6 rows, 2 outputs, one conv group, on arrays 0 and 1.
fn group() -> GroupEntry {
    GroupEntry {
        core: 0,
        layer: 0,
        replica: 0,
        k: 6,
        n: 2,
        conv_groups: 1,
        in_stride: 6,
        in_offset: 0,
        group_stride: 6,
        out_stride: 2,
        weight_bits: 4,
        weights: vec![1; 12],
        arrays: vec![0, 1],
    }
}

/// 4-bit inputs bit-serial, 4-bit weights (3 magnitude bits) differential in 2-bit cells:
/// S_x = 4, S_w = 2, 4 columns per output.
fn config() -> Instr {
    Instr::XbarConfig {
        group: 0,
        rows: 4,
        cols: 8,
        input_bits: 4,
        dac_bits: 1,
        cell_bits: 2,
        weight_bits: 4,
        magnitude_bits: 3,
        encoding: WeightEncoding::Differential,
        adc_bits: 8,
        adc_step: 0,
        input_min: 0,
        input_zero: 0,
    }
}

fn requant_entry() -> RequantEntry {
    RequantEntry {
        scale: vec![],
        bias: vec![0],
        mult: vec![FixedMultiplier { m: 1 << 30, sh: 0 }],
        zero_point: 0,
        lo: 0,
        hi: 255,
    }
}

fn window() -> WindowEntry {
    WindowEntry {
        channels: 1,
        height: 4,
        width: 4,
        kernel: [3, 3],
        strides: [1, 1],
        dilations: [1, 1],
        pads: [0; 4],
        conv_groups: 1,
        out_height: 2,
        out_width: 2,
        first_position: 0,
        positions: 4,
        count_include_pad: false,
    }
}

fn core(code: Vec<Instr>, marks: Vec<(u32, u32)>) -> Core {
    Core { scratch_words: 256, code, marks }
}

fn stream(cores: Vec<Core>) -> Stream {
    Stream {
        name: "hand".into(),
        target: None,
        schedule: Schedule::Pipelined,
        arrays: 4,
        global_words: 1024,
        inputs: vec![],
        outputs: vec![],
        layers: vec!["conv".into(), "out".into()],
        cores,
        groups: vec![group()],
        windows: vec![window()],
        requants: vec![requant_entry()],
        adds: vec![],
        perms: vec![],
        hosts: vec![],
        digital: vec![],
    }
}

/// load, xbar_config, mvm of 3 vectors, requant, store, halt on one core.
fn one_core() -> Stream {
    let code = vec![
        Instr::Load { dst: 0, src: 0, len: 18, elem_bytes: 1 },
        config(),
        Instr::Mvm { group: 0, src: 0, dst: 32, count: 3 },
        Instr::Requant { table: 0, src: 32, dst: 40, len: 6, channel_len: 1, first_channel: 0 },
        Instr::Store { dst: 100, src: 40, len: 6, elem_bytes: 1 },
        Instr::Halt {},
    ];
    stream(vec![core(code, vec![(1, 0), (3, 1)])])
}

#[test]
fn one_core_by_hand() {
    let r = estimate(&one_core(), &target()).unwrap();
    let at = |i| r.per_instruction(0, i).unwrap();
    // load: 18 bytes at 2 GB/s = 9 ns; 18 x 10 pJ global + 18 x 1 pJ buffer write.
    assert_close!(at(0).start_ns, 0.0);
    assert_close!(at(0).latency_ns, 9.0);
    assert_close!(at(0).energy_pj, 198.0);
    // xbar_config: 4 cycles.
    assert_close!(at(1).start_ns, 9.0);
    assert_close!(at(1).latency_ns, 4.0);
    // mvm, per vector: T = ceil(6/4) = 2 row tiles, 2 outputs x 4 columns: 16 columns per
    // slice, 8 per array; a slice takes max(10 ns, 8 / (1 x 0.5 GS/s) = 16 ns), a vector 4
    // slices = 64 ns; 3 vectors = 192 ns. Energy per vector: crossbar 0.5 x 4 x 6 x 2 x 4 = 96,
    // DAC 1 x 4 x 6 = 24, ADC 2 x (4 x 16 = 64 conversions) = 128, shift-add 0.25 x 64 = 16,
    // buffer 6 B read x 0.5 + 8 B written x 1 = 11: 275 pJ; 3 vectors 825 pJ.
    assert_close!(at(2).start_ns, 13.0);
    assert_close!(at(2).latency_ns, 192.0);
    assert_close!(at(2).energy_pj, 825.0);
    // requant of 6 accumulators (4 bytes each, as the mvm wrote them) to 6 codes: 6 elements
    // x 2 ns / 2 lanes = 6 ns; 6 x 3 pJ + 24 B x 0.5 + 6 B x 1 = 36 pJ.
    assert_close!(at(3).start_ns, 205.0);
    assert_close!(at(3).latency_ns, 6.0);
    assert_close!(at(3).energy_pj, 36.0);
    // store of 6 one-byte codes: 3 ns; 60 pJ global + 3 pJ buffer read.
    assert_close!(at(4).latency_ns, 3.0);
    assert_close!(at(4).energy_pj, 63.0);
    assert_close!(at(5).start_ns, 214.0);
    assert_close!(at(5).latency_ns, 0.0);
    assert!(r.per_instruction(0, 6).is_none());

    let t = &r.totals;
    assert_close!(t.latency_ns, 214.0);
    assert_close!(t.cycles, 214.0);
    assert_close!(t.energy_pj, 198.0 + 825.0 + 36.0 + 63.0);
    let e = &t.energy;
    assert_close!(e.crossbar, 288.0);
    assert_close!(e.dac, 72.0);
    assert_close!(e.adc, 384.0);
    assert_close!(e.shift_add, 48.0);
    assert_close!(e.vector, 18.0);
    assert_close!(e.buffer, 18.0 + 33.0 + 18.0 + 3.0);
    assert_close!(e.global_memory, 240.0);
    assert_close!(e.interconnect + e.programming, 0.0);
    assert_eq!((t.macs, t.ops), (36, 72));
    assert_eq!((t.counts.mvm_vectors, t.counts.conversions, t.counts.instructions), (3, 192, 6));
    assert_close!(t.tops_per_w, 72.0 / 1122.0);
    assert_close!(t.gops, 72.0 / 214.0);
    // One core: pipelined interval = its busy time = the latency (it never waits).
    assert_close!(t.interval_ns, 214.0);
    assert_close!(t.inferences_per_s, 1e9 / 214.0);

    // Layers: the load before the first mark is unattributed; conv = config + mvm; out =
    // requant, store, halt.
    let u = r.unattributed.as_ref().unwrap();
    assert_eq!(u.instructions, 1);
    assert_close!(u.energy_pj, 198.0);
    let (conv, out) = (&r.layers[0], &r.layers[1]);
    assert_eq!((conv.name.as_str(), conv.instructions, conv.mvm_vectors), ("conv", 2, 3));
    assert_eq!((conv.macs, conv.conversions), (36, 192));
    assert_close!(conv.busy_ns, 196.0);
    assert_close!(conv.energy_pj, 825.0);
    assert_close!(conv.first_ns, 9.0);
    assert_close!(conv.last_ns, 205.0);
    assert_eq!(out.instructions, 3);
    assert_close!(out.busy_ns, 9.0);
    assert_close!(out.energy_pj, 99.0);

    // Scratchpad: inputs 0..18 (1 byte), accumulators 32..38 (4 bytes), codes 40..46.
    let c = &r.cores[0];
    assert_eq!(c.high_water_words, 46);
    assert_eq!(c.footprint_bytes, 18 + 24 + 6);
    assert_eq!(c.capacity_bytes, 1024);
    assert!(!c.over_capacity && r.scratch_over_capacity.is_empty());
    assert_close!(c.busy_ns, 214.0);
    assert_close!(c.idle_ns, 0.0);

    // Arrays: 2 of 4 busy during 192 of 214 ns.
    let u = &r.utilization;
    assert_eq!((u.arrays, u.bins.len()), (4, 100));
    assert_close!(u.mean, 192.0 * 2.0 / (214.0 * 4.0));
    assert_close!(u.bins.iter().sum::<f64>() / 100.0, u.mean);
    assert_close!(u.bins[0], 0.0);
    assert_close!(u.bins[50], 0.5);
    assert_eq!(u.used_arrays, 2);
    assert_close!(u.mean_used, 192.0 / 214.0);

    // Pipelined: the group is programmed when the stream is loaded: 6 x 2 x 4 = 48 cells x 5 pJ;
    // ceil(6 rows / 2 arrays) = 3 rows x 100 ns.
    assert_eq!((r.preload.groups, r.preload.cells), (1, 48));
    assert_close!(r.preload.energy_pj, 240.0);
    assert_close!(r.preload.latency_ns, 300.0);
}

/// `one_core` with its group's converters at other resolutions. The target's figures hold at
/// its own 8-bit ADC and 1-bit DAC (`adc_ref_bits`, `dac_ref_bits` default to them), and scale
/// by the default laws: Murmann (x2 per bit up to 10 bits, x4 above), a SAR rate of
/// `0.5 GS/s x 8 / bits`, a binary-weighted DAC (x2 per bit).
fn with_converters(adc_bits: u8, dac_bits: u8) -> CostReport {
    let mut s = one_core();
    if let Instr::XbarConfig { adc_bits: a, dac_bits: d, .. } = &mut s.cores[0].code[1] {
        (*a, *d) = (adc_bits, dac_bits);
    }
    estimate(&s, &target()).unwrap()
}

#[test]
fn converters_follow_the_groups_resolution() {
    let mvm_ns = |r: &CostReport| r.per_instruction(0, 2).unwrap().latency_ns;
    // 8 bits: the figures as stated (one_core_by_hand): 192 conversions x 2 pJ, 192 ns.
    let r8 = with_converters(8, 1);
    assert_close!(r8.totals.energy.adc, 384.0);
    assert_close!(mvm_ns(&r8), 192.0);
    // 4 bits: 2 / 2^4 = 0.125 pJ per conversion: 24 pJ. Rate 1 GS/s: a slice is max(10 ns,
    // 8 columns / 1 GS/s = 8 ns) = 10 ns, a vector 40 ns, 3 vectors 120 ns.
    let r4 = with_converters(4, 1);
    assert_close!(r4.totals.energy.adc, 24.0);
    assert_close!(mvm_ns(&r4), 120.0);
    // 10 bits: 2 x 2^2 = 8 pJ: 1536 pJ. Rate 0.4 GS/s: 8 / 0.4 = 20 ns a slice, 240 ns.
    let r10 = with_converters(10, 1);
    assert_close!(r10.totals.energy.adc, 1536.0);
    assert_close!(mvm_ns(&r10), 240.0);
    assert_close!(r10.totals.energy.adc / r4.totals.energy.adc, 64.0);
    // 12 bits: above the knee, x4 per bit: 2 x 4 x 4^2 = 128 pJ per conversion.
    assert_close!(with_converters(12, 1).totals.energy.adc, 192.0 * 128.0);
    // A 2-bit DAC: 2 input slices instead of 4 (96 conversions), each row's DAC 2 x 1 pJ:
    // 2 pJ x 2 slices x 6 rows x 3 vectors = 72 pJ, as the 1-bit DAC's 1 x 4 x 6 x 3.
    let d2 = with_converters(8, 2);
    assert_close!(d2.totals.energy.dac, 72.0);
    assert_eq!(d2.totals.counts.conversions, 96);
    assert_close!(d2.totals.energy.adc, 192.0);

    // The target's own resolution changed (as `--adc-bits` does) keeps the reference, and the
    // report's converters say what a conversion costs at it.
    let mut t = target();
    assert_eq!(t.cost.adc_ref_bits, Some(8));
    t.chip.crossbar.adc_bits = 4;
    let r = estimate(&one_core(), &t).unwrap();
    assert_eq!((r.chip.converters.adc_bits, r.chip.converters.adc_ref_bits), (4, 8));
    assert_close!(r.chip.converters.adc_energy_pj, 0.125);
    assert_close!(r.chip.converters.adc_rate_gsps, 1.0);
    assert_eq!(r.chip.converters.adc_energy_law, "murmann");
    // ... and survives the record: the TOML names the reference, and reads back the same.
    let text = t.to_toml();
    assert!(text.contains("adc_ref_bits = 8"), "{text}");
    assert_eq!(Target::from_toml_str(&text, "record").unwrap(), t);
}

#[test]
fn records_of_unchanged_presets_name_no_new_key() {
    // The keys added with the converters' laws and the [area]/[leakage] tables are written only
    // when they say something the defaults do not: a default-target record is the text it was.
    let isaac = Target::preset("isaac").unwrap().to_toml();
    for key in ["adc_ref_bits", "dac_ref_bits", "adc_energy_law", "[area]", "[leakage]"] {
        assert!(!isaac.contains(key), "{key} in\n{isaac}");
    }
    assert_eq!(Target::from_toml_str(&isaac, "record").unwrap(), Target::preset("isaac").unwrap());
    let puma = Target::preset("puma").unwrap();
    let text = puma.to_toml();
    assert!(text.contains("[area]") && text.contains("[leakage]"), "{text}");
    assert_eq!(Target::from_toml_str(&text, "record").unwrap(), puma);
    // The arrays' registers and bus are 0 unless a target states them, and then left out:
    // the records of `puma` and `edge` are the text they were; `isaac` states Table I's.
    for key in ["input_register_pj", "output_register_pj", "array_bus_pj_per_byte"] {
        assert!(isaac.contains(key), "{key} not in\n{isaac}");
        for other in ["puma", "edge"] {
            let text = Target::preset(other).unwrap().to_toml();
            assert!(!text.contains(key), "{key} in\n{text}");
        }
    }
    // The explicit form names every key.
    let all = Target::preset("isaac").unwrap().to_toml_explicit();
    for key in ["adc_ref_bits = 8", "dac_ref_bits = 1", "adc_energy_law = \"murmann\"", "[area]"] {
        assert!(all.contains(key), "{key} in\n{all}");
    }
}

/// Area and static power by hand: 4 arrays of 4 rows x 8 columns, one ADC each, one core.
#[test]
fn chip_area_and_static_power_by_hand() {
    let text = format!(
        "{TARGET}
[area]
xbar_mm2 = 1.0
adc_mm2 = 2.0
dac_mm2 = 0.5
sample_hold_mm2 = 0.25
shift_add_mm2 = 1.0
array_buffer_mm2 = 1.0
core_buffer_mm2 = 10.0
bus_mm2 = 5.0
digital_mm2 = 3.0
router_mm2 = 2.0
link_mm2 = 20.0
[leakage]
adc_mw = 1.0
core_buffer_mw = 0.5
"
    );
    let t = Target::from_toml_str(&text, "area.toml").unwrap();
    let r = estimate(&one_core(), &t).unwrap();
    let c = &r.chip;
    assert_eq!((c.arrays, c.cores), (4, 1));
    // Per array 1 + 2 + 4 DACs x 0.5 + 8 S+H x 0.25 + 1 + 1 = 9, x 4 = 36; the core
    // 10 + 5 + 3 + 2 = 20; the links 20: 76 mm².
    assert_close!(c.area_mm2, 76.0);
    let adc = c.components.iter().find(|p| p.name == "adc").unwrap();
    assert_close!(adc.area_mm2, 8.0);
    // 4 ADCs x 1 mW + 0.5 mW = 4.5 mW over 214 ns = 963 pJ.
    assert_close!(c.static_mw, 4.5);
    assert_close!(c.static_pj, 963.0);
    assert_close!(c.energy_with_static_pj, 1122.0 + 963.0);
    assert_close!(c.tops_per_w_with_static, 72.0 / 2085.0);
    assert_close!(c.tops_per_mm2, 72.0 / 214.0 / 1000.0 / 76.0);
    // At 4 bits the ADCs' area and leakage follow the energy law (/16).
    let mut t4 = t.clone();
    t4.chip.crossbar.adc_bits = 4;
    let c4 = estimate(&one_core(), &t4).unwrap().chip;
    assert_close!(c4.area_mm2, 76.0 - 8.0 + 0.5);
    assert_close!(c4.static_mw, 0.25 + 0.5);
}

#[test]
fn xbar_load_programs_and_fetches_weights() {
    let mut s = one_core();
    s.schedule = Schedule::LayerSerial;
    s.cores[0].code.insert(2, Instr::XbarLoad { group: 0 });
    let r = estimate(&s, &target()).unwrap();
    let l = r.per_instruction(0, 2).unwrap();
    // 48 cells x 5 pJ + 12 one-byte... 4-bit weights (1 byte each) x 10 pJ from global memory;
    // max(3 rows x 100 ns, 12 B / 2 GB/s) = 300 ns.
    assert_close!(l.start_ns, 13.0);
    assert_close!(l.latency_ns, 300.0);
    assert_close!(l.energy_pj, 240.0 + 120.0);
    assert_eq!(r.totals.counts.cells_programmed, 48);
    assert_close!(r.totals.energy.programming, 240.0);
    assert_eq!(r.preload.groups, 0);
    // Layer-serial: the interval is the latency.
    assert_close!(r.totals.interval_ns, r.totals.latency_ns);
}

#[test]
fn window_instructions() {
    let code = vec![
        Instr::Fill { dst: 0, len: 16, value: 0 },
        Instr::Im2col { window: 0, src: 0, dst: 16, pad: 0 },
        Instr::MaxPool { window: 0, src: 0, dst: 64 },
        Instr::AvgPool { window: 0, table: 0, src: 0, dst: 68, zero: 0 },
        Instr::Halt {},
    ];
    let r = estimate(&stream(vec![core(code, vec![])]), &target()).unwrap();
    let at = |i| r.per_instruction(0, i).unwrap();
    // fill: 16 words never written, counted as 1-byte codes: 16 x 3 + 16 x 1 pJ; 16 ns.
    assert_close!(at(0).energy_pj, 64.0);
    assert_close!(at(0).latency_ns, 16.0);
    // im2col: 4 positions x 9 = 36 codes read and written: 36 x 3 + 18 + 36 = 162 pJ; 36 ns.
    assert_close!(at(1).energy_pj, 162.0);
    assert_close!(at(1).latency_ns, 36.0);
    // max_pool: 4 outputs x 9 window elements: 108 + 18 + 4 = 130 pJ; 36 ns.
    assert_close!(at(2).energy_pj, 130.0);
    // avg_pool: 4 x (9 + 1) elements: 120 + 18 + 4 = 142 pJ; 40 ns.
    assert_close!(at(3).energy_pj, 142.0);
    assert_close!(at(3).latency_ns, 40.0);
    assert!(r.unattributed.is_some());
    assert_eq!(r.totals.counts.vector_elements, 16 + 36 + 36 + 40);
}

#[test]
fn sync_aligns_the_clocks() {
    let c0 =
        vec![Instr::Fill { dst: 0, len: 10, value: 0 }, Instr::Sync { barrier: 0 }, Instr::Halt {}];
    let c1 =
        vec![Instr::Sync { barrier: 0 }, Instr::Fill { dst: 0, len: 2, value: 0 }, Instr::Halt {}];
    let r = estimate(&stream(vec![core(c0, vec![]), core(c1, vec![])]), &target()).unwrap();
    // Core 0 reaches the barrier at 10 ns, core 1 at 0: both leave it at 10 + 1 cycle.
    assert_close!(r.per_instruction(0, 1).unwrap().start_ns, 10.0);
    assert_close!(r.per_instruction(1, 0).unwrap().start_ns, 10.0);
    assert_close!(r.per_instruction(1, 1).unwrap().start_ns, 11.0);
    assert_close!(r.cores[0].end_ns, 11.0);
    assert_close!(r.cores[1].end_ns, 13.0);
    assert_close!(r.totals.latency_ns, 13.0);
    assert_close!(r.cores[1].busy_ns, 3.0);
    assert_close!(r.cores[1].idle_ns, 10.0);
    assert_close!(r.cores[0].idle_ns, 2.0);
    // Pipelined: the busiest core (11 ns busy) sets the interval.
    assert_close!(r.totals.interval_ns, 11.0);
}

#[test]
fn recv_waits_for_the_words_in_order() {
    // 4 cores on a 2x2 mesh: core 0 at (0,0), core 3 at (1,1), 2 hops.
    let c0 = vec![
        Instr::Send { to: 3, dst: 0, src: 0, len: 4, elem_bytes: 4 },
        Instr::Send { to: 3, dst: 4, src: 4, len: 4, elem_bytes: 4 },
        Instr::Halt {},
    ];
    let c3 = vec![Instr::Recv { from: 0, len: 6 }, Instr::Recv { from: 0, len: 2 }, Instr::Halt {}];
    let halt = || core(vec![Instr::Halt {}], vec![]);
    let s = stream(vec![core(c0, vec![]), halt(), halt(), core(c3, vec![])]);
    let r = estimate(&s, &target()).unwrap();
    // Each send: 16 bytes at 1 GB/s = 16 ns; energy 16 B x 2 hops x 4 pJ + 16 x (0.5 + 1).
    let send = r.per_instruction(0, 1).unwrap();
    assert_close!(send.start_ns, 16.0);
    assert_close!(send.latency_ns, 16.0);
    assert_close!(send.energy_pj, 128.0 + 24.0);
    // The first 6 words need the second send, which arrives at 32 + 2 hops = 34 ns.
    let (a, b) = (r.per_instruction(3, 0).unwrap(), r.per_instruction(3, 1).unwrap());
    assert_close!(a.start_ns, 34.0);
    assert_close!(a.latency_ns, 1.0);
    assert_close!(b.start_ns, 35.0);
    assert_close!(r.totals.latency_ns, 36.0);
    assert_eq!(r.totals.counts.interconnect_byte_hops, 64);
    // The receiver's scratchpad holds 8 words of 4 bytes.
    assert_eq!(r.cores[3].footprint_bytes, 32);
}

#[test]
fn errors_name_the_core_and_instruction() {
    let deadlock =
        stream(vec![core(vec![Instr::Recv { from: 0, len: 1 }, Instr::Halt {}], vec![])]);
    let e = estimate(&deadlock, &target()).unwrap_err().to_string();
    assert!(e.contains("core 0, instruction 0 (recv)") && e.contains("deadlock"), "{e}");

    let unconfigured =
        stream(vec![core(vec![Instr::Mvm { group: 0, src: 0, dst: 32, count: 1 }], vec![])]);
    let e = estimate(&unconfigured, &target()).unwrap_err().to_string();
    assert!(e.contains("before its xbar_config"), "{e}");

    let c0 = vec![Instr::Sync { barrier: 1 }, Instr::Halt {}];
    let c1 = vec![Instr::Sync { barrier: 2 }, Instr::Halt {}];
    let e = estimate(&stream(vec![core(c0, vec![]), core(c1, vec![])]), &target()).unwrap_err();
    assert!(e.to_string().contains("barrier"), "{e}");

    let c0 = vec![Instr::Sync { barrier: 1 }, Instr::Halt {}];
    let e =
        estimate(&stream(vec![core(c0, vec![]), core(vec![Instr::Halt {}], vec![])]), &target());
    assert!(e.unwrap_err().to_string().contains("waits forever at barrier 1"));

    let beyond = stream(vec![core(vec![Instr::Fill { dst: 250, len: 10, value: 0 }], vec![])]);
    let e = estimate(&beyond, &target()).unwrap_err().to_string();
    assert!(e.contains("beyond scratchpad of 256 words"), "{e}");
}

#[test]
fn scratch_over_capacity_is_flagged() {
    let mut s = stream(vec![core(
        vec![Instr::Load { dst: 0, src: 0, len: 300, elem_bytes: 4 }, Instr::Halt {}],
        vec![],
    )]);
    s.cores[0].scratch_words = 4096;
    let r = estimate(&s, &target()).unwrap();
    assert_eq!(r.cores[0].footprint_bytes, 1200);
    assert!(r.cores[0].over_capacity);
    assert_eq!(r.scratch_over_capacity, vec![0]);
}

fn busy_stream() -> Stream {
    let mut cores = Vec::new();
    for c in 0..3u16 {
        let mut code =
            vec![config(), Instr::Mvm { group: 0, src: 0, dst: 32, count: 2 + c as u32 }];
        code.push(Instr::Sync { barrier: 7 });
        if c > 0 {
            code.push(Instr::Send { to: c - 1, dst: 100, src: 32, len: 4, elem_bytes: 4 });
        }
        if c < 2 {
            code.push(Instr::Recv { from: c + 1, len: 4 });
        }
        code.push(Instr::Halt {});
        cores.push(core(code, vec![(0, 0), (3, 1)]));
    }
    stream(cores)
}

#[test]
fn estimates_are_deterministic() {
    let (s, t) = (busy_stream(), Target::preset("isaac").unwrap());
    let a: CostReport = estimate(&s, &t).unwrap();
    let b = estimate(&s.clone(), &t).unwrap();
    assert_eq!(a, b);
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
    for c in 0..3 {
        assert_eq!(a.instructions_of(c), b.instructions_of(c));
    }
    assert_eq!(a.target_hash, t.hash_hex());
    assert!(a.totals.energy_pj > 0.0 && a.totals.latency_ns > 0.0);
}

/// The arrays' registers and bus by hand, on a group of several row tiles and column groups:
/// `isaac`, 8-bit inputs and weights, differential (8 columns per output); k = 300 rows
/// (T = 3 row tiles), n = 32 outputs (256 columns, CG = 2 column groups), on 6 arrays.
#[test]
fn registers_and_bus_count_every_array() {
    let t = Target::preset("isaac").unwrap();
    let num = Numerics::of_target(&t, 8, 8, WeightEncoding::Differential);
    let shape = GroupShape { k: 300, n: 32, conv_groups: 1, arrays: 6 };
    let v = vector_cost(&num, &shape, &t.cost);
    // 8 slices x 3 tiles x 32 outputs x 8 columns.
    assert_eq!(v.conversions, 6144);
    // Row drives: 8 slices x 300 rows x 2 column groups = 4800, each with its DAC and its input
    // register (0.12109375 pJ); every conversion through the output register (0.0224609375).
    assert_close!(v.energy.dac, 4800.0 * 0.390625);
    assert_close!(v.energy.registers, 4800.0 * 0.12109375 + 6144.0 * 0.0224609375);
    // The scratchpad: 300 input bytes read once, 32 accumulators of 4 bytes written once. The
    // bus: each column group's arrays take the 300 inputs, each row tile's arrays give 32
    // partial sums: 2 x 300 + 3 x 128 = 984 bytes at 0.405092593 pJ/B.
    assert_close!(v.energy.buffer, (300.0 + 128.0) * 0.646875);
    assert_close!(v.energy.array_bus, 984.0 * 0.405092593);
    // A target that does not separate them (`edge`) charges neither.
    let e = Target::preset("edge").unwrap();
    let v =
        vector_cost(&Numerics::of_target(&e, 8, 8, WeightEncoding::Differential), &shape, &e.cost);
    assert_eq!((v.energy.registers, v.energy.array_bus), (0.0, 0.0));
}

#[test]
fn presets_peak_figures() {
    let isaac = Target::preset("isaac").unwrap();
    // ISAAC's own precision: 16-bit inputs and weights, 8 cells per weight (offset): 128 rows
    // x 16 outputs per array, 16 slices of 100 ns: 4096 ops / 1600 ns = 2.56 GOPS per array,
    // x 16128 arrays = 41.3 TOPS (the published peak, 41.3 TOPS).
    let p = array_peak(&isaac, 16, 16, WeightEncoding::Offset);
    assert_eq!((p.rows, p.outputs, p.macs_per_vector), (128, 16, 2048));
    assert_close!(p.ns_per_vector, 1600.0);
    assert_close!(p.chip_tops, 2.56 * 16128.0 / 1000.0);
    // Energy: crossbar 30 pJ x 16 slices, DAC 0.390625 x 128 x 16, ADC 1.5625 x 128 x 16,
    // shift-add 0.01953125 x 128 x 16; the input register 0.12109375 x 128 rows x 16 and the
    // output register 0.0224609375 x 128 conversions x 16 (Table I's 1.24 and 0.23 mW per IMA).
    assert_close!(p.analog_pj, 480.0 + 800.0 + 3200.0);
    assert_close!(p.array_pj, 480.0 + 800.0 + 3200.0 + 40.0 + 248.0 + 46.0);
    // The mvm's traffic: 128 two-byte inputs read and 16 four-byte accumulators written, 320 B
    // at 0.646875 pJ/B in the eDRAM and 0.405092593 pJ/B over the eDRAM-to-IMA bus.
    assert_close!(p.mvm_pj, p.array_pj + 320.0 * (0.646875 + 0.405092593));

    // The edge preset is normalized on the macro: 4-bit inputs and weights in 4 binary-weighted
    // columns (offset), 64 rows x 16 outputs = 1024 MACs per 5.5-ns access at 351 TOPS/W.
    let edge = Target::preset("edge").unwrap();
    let p = array_peak(&edge, 4, 4, WeightEncoding::Offset);
    assert_eq!(p.macs_per_vector, 1024);
    assert_close!(p.ns_per_vector, 5.5);
    assert!((p.analog_tops_per_w - 351.0).abs() < 0.01, "{}", p.analog_tops_per_w);
    assert!((p.gops_per_array - 372.4).abs() < 0.1, "{}", p.gops_per_array);

    // The table of docs/cost-model.md (run with --nocapture to print it).
    for (name, enc) in [
        ("isaac", WeightEncoding::Differential),
        ("puma", WeightEncoding::Differential),
        ("edge", WeightEncoding::Differential),
    ] {
        let t = Target::preset(name).unwrap();
        for (x, w, e) in [
            (8, 8, enc),
            (16, 16, WeightEncoding::Offset),
            (4, 4, WeightEncoding::Offset),
            (4, 4, enc),
        ] {
            let p = array_peak(&t, x, w, e);
            println!(
                "| {name} | {x}/{w} {} | {}x{} | {:.1} ns | {:.1} pJ | {:.3} | {:.3} | {:.1} pJ | {:.3} | {:.3} | {:.2} |",
                p.encoding, p.rows, p.outputs, p.ns_per_vector, p.analog_pj, p.analog_tops_per_w, p.array_tops_per_w,
                p.mvm_pj, p.mvm_tops_per_w, p.gops_per_array, p.chip_tops
            );
        }
    }
}
