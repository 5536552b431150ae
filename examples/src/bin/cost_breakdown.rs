//! The presets' per-component power and area against the published breakdowns
//! (`docs/cost-model.md`, "Validation against the published breakdowns").
//!
//! For `isaac`, ISAAC's Table I (Shafiee et al., ISCA 2016): the power and area of every
//! component of an IMA, a tile and the chip. For `puma`, the chip totals of PUMA (Ankit et al.,
//! ASPLOS 2019) as the Nature Communications review of Aguirre et al. (2024, Table 3) lists them
//! (26.2 TOPS at 0.29 TOPS/mm² and 0.42 TOPS/W, one operation per MAC: 90.3 mm², 62.4 W), and
//! the per-unit figures of the simulator released with the paper.
//!
//! The model's side is recomputed from the preset every run (nothing of it is written here):
//! each component's power is the preset's energy per event times the rate at which the
//! component's events happen when every array converts at full speed (the ADCs at
//! `adc_rate_at(bits)`, the crossbar, its DACs and registers once per slice, the array bus at
//! the bytes of one 16-bit vector per array per vector time, one buffer access, router flit and
//! vector element per 1-ns cycle, the off-chip link at `global_mem_gb_per_s`), plus its
//! `[leakage]`; its area is `[area]` times the units `Target::chip_inventory` counts.
//!
//! `cargo run --release -p cimc-examples --bin cost_breakdown -- [--out docs/cost-breakdown.md]`

use cimc_backends::isa::WeightEncoding;
use cimc_backends::stream::cost::{vector_cost, GroupShape, Numerics};
use cimc_backends::target::Target;
use cimc_examples::arg;
use std::fmt::Write;
use std::path::PathBuf;

/// One row of a comparison: the published power (mW) and area (mm²), or `None` where the
/// source gives none, against the model's.
struct Row {
    name: &'static str,
    paper_mw: Option<f64>,
    model_mw: f64,
    paper_mm2: Option<f64>,
    model_mm2: f64,
}

/// What every array, core and the chip draw at full activity (mW), by the model's component.
struct FullRate {
    xbar: f64,
    dac: f64,
    adc: f64,
    shift_add: f64,
    /// An array's input register (every row per slice) and output register (every conversion).
    registers: f64,
    /// An array's share of the bus to its core's scratchpad: the inputs and accumulators of one
    /// vector at the presets' published 16 bits (16-bit offset weights), per vector time.
    array_bus: f64,
    /// A core's scratchpad: one 32-byte access per 1-ns cycle.
    buffer: f64,
    /// A core's vector unit: `vector_lanes` elements per `vector_op_latency_ns`.
    vector: f64,
    /// A core's share of the network: one 4-byte flit per 1-ns cycle on each of 8 ports of a
    /// router, its energy per byte per hop, shared by the cores of a router.
    router: f64,
    /// The off-chip link at its bandwidth.
    link: f64,
}

/// Full-rate power per unit from the preset's per-event energies (pJ per ns = mW).
fn full_rate(t: &Target, cores_per_router: f64, router_bytes_per_ns: f64) -> FullRate {
    let c = &t.cost;
    let x = &t.chip.crossbar;
    let (rows, cols) = (x.rows as f64, x.cols as f64);
    let rate = c.adc_rate_at(x.adc_bits);
    // One slice: every row driven, every column read, the columns converted by the array's ADCs.
    let slice_ns = c.xbar_read_latency_ns.max(cols / (c.adcs_per_array * rate));
    let num = Numerics::of_target(t, 16, 16, WeightEncoding::Offset);
    let outputs = (x.cols as u64 / num.columns_per_output()).max(1);
    let one = GroupShape { k: x.rows as u64, n: outputs, conv_groups: 1, arrays: 1 };
    let v = vector_cost(&num, &one, c);
    FullRate {
        xbar: c.xbar_read_energy_pj * rows * cols / slice_ns,
        dac: c.dac_energy_at(x.dac_bits) * rows / slice_ns,
        adc: c.adc_energy_at(x.adc_bits) * cols / slice_ns,
        shift_add: c.shift_add_energy_pj * cols / slice_ns,
        registers: (c.input_register_pj * rows + c.output_register_pj * cols) / slice_ns,
        array_bus: v.energy.array_bus / v.ns,
        buffer: c.buffer_read_pj_per_byte * 32.0,
        vector: c.vector_op_energy_pj * c.vector_lanes / c.vector_op_latency_ns,
        router: c.interconnect_pj_per_byte_hop * router_bytes_per_ns / cores_per_router,
        link: c.global_mem_pj_per_byte * c.global_mem_gb_per_s,
    }
}

/// The model's area (mm²) and static power (mW) of one unit group: `name` of `chip_figures`,
/// divided by `per` (the number of such groups on the chip).
fn part(t: &Target, name: &str, per: f64) -> (f64, f64) {
    let f = t.chip_figures(0);
    let (_, mm2, mw) = f.components.iter().find(|c| c.0 == name).copied().unwrap_or(("", 0.0, 0.0));
    (mm2 / per, mw / per)
}

fn pct(model: f64, paper: Option<f64>) -> String {
    match paper {
        Some(p) if p > 0.0 => format!("{:+.1} %", 100.0 * (model - p) / p),
        _ => "—".into(),
    }
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.5}"))
}

fn table(out: &mut String, title: &str, rows: &[Row]) {
    let _ = writeln!(out, "\n{title}\n");
    let _ = writeln!(
        out,
        "| component | paper mW | model mW | Δ power | paper mm² | model mm² | Δ area |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {:.5} | {} | {} | {:.5} | {} |",
            r.name,
            fmt(r.paper_mw),
            r.model_mw,
            pct(r.model_mw, r.paper_mw),
            fmt(r.paper_mm2),
            r.model_mm2,
            pct(r.model_mm2, r.paper_mm2)
        );
    }
}

/// ISAAC's Table I, IMA and tile, against the preset.
fn isaac(out: &mut String) {
    let t = Target::preset("isaac").expect("invariant: the preset exists");
    let arrays = t.chip.arrays as f64;
    let tiles = arrays / t.core.arrays as f64;
    // An IMA is 8 arrays; a router serves 4 tiles, 8 ports of 4 bytes per cycle.
    let ima = 8.0;
    let f = full_rate(&t, 4.0, 32.0);
    let per_ima = |name: &str| part(&t, name, arrays / ima);
    let per_tile = |name: &str| part(&t, name, tiles);
    let adcs = ima * t.cost.adcs_per_array;
    let ima_rows = vec![
        Row {
            name: "ADC (8, 8 bits, 1.28 GS/s)",
            paper_mw: Some(16.0),
            model_mw: adcs * f.adc + per_ima("adc").1,
            paper_mm2: Some(0.0096),
            model_mm2: per_ima("adc").0,
        },
        Row {
            name: "DAC (8 × 128, 1 bit)",
            paper_mw: Some(4.0),
            model_mw: ima * f.dac,
            paper_mm2: Some(0.00017),
            model_mm2: per_ima("dac").0,
        },
        Row {
            name: "sample-and-hold (8 × 128)",
            paper_mw: Some(0.01),
            model_mw: 0.0,
            paper_mm2: Some(0.00004),
            model_mm2: per_ima("sample_hold").0,
        },
        Row {
            name: "memristor arrays (8, 128 × 128)",
            paper_mw: Some(2.4),
            model_mw: ima * f.xbar,
            paper_mm2: Some(0.0002),
            model_mm2: per_ima("xbar").0,
        },
        Row {
            name: "shift-and-add (4)",
            paper_mw: Some(0.2),
            model_mw: ima * f.shift_add,
            paper_mm2: Some(0.00024),
            model_mm2: per_ima("shift_add").0,
        },
        Row {
            name: "IR 2 KB + OR 256 B",
            paper_mw: Some(1.24 + 0.23),
            model_mw: ima * f.registers,
            paper_mm2: Some(0.0021 + 0.00077),
            model_mm2: per_ima("array_buffer").0,
        },
    ];
    let ima_mw: f64 = ima_rows.iter().map(|r| r.model_mw).sum();
    let ima_mm2: f64 = ima_rows.iter().map(|r| r.model_mm2).sum();
    let mut rows = ima_rows;
    rows.push(Row {
        name: "**IMA total**",
        paper_mw: Some(289.0 / 12.0),
        model_mw: ima_mw,
        paper_mm2: Some(0.157 / 12.0),
        model_mm2: ima_mm2,
    });
    table(
        out,
        "**ISAAC, one IMA** (Table I: 12 IMAs per tile, totals 289 mW and 0.157 mm²)",
        &rows,
    );

    let imas = t.core.arrays as f64 / ima;
    let tile_rows = vec![
        Row {
            name: "12 IMAs",
            paper_mw: Some(289.0),
            model_mw: imas * ima_mw,
            paper_mm2: Some(0.157),
            model_mm2: imas * ima_mm2,
        },
        Row {
            name: "eDRAM 64 KB + OR 3 KB",
            paper_mw: Some(20.7 + 1.68),
            model_mw: f.buffer + per_tile("core_buffer").1,
            paper_mm2: Some(0.083 + 0.0032),
            model_mm2: per_tile("core_buffer").0,
        },
        Row {
            name: "eDRAM-to-IMA bus",
            paper_mw: Some(7.0),
            model_mw: t.core.arrays as f64 * f.array_bus,
            paper_mm2: Some(0.09),
            model_mm2: per_tile("bus").0,
        },
        Row {
            name: "router (1/4 of one)",
            paper_mw: Some(42.0 / 4.0),
            model_mw: f.router,
            paper_mm2: Some(0.151 / 4.0),
            model_mm2: per_tile("router").0,
        },
        Row {
            name: "sigmoid (2) + S+A + max-pool",
            paper_mw: Some(0.52 + 0.05 + 0.4),
            model_mw: 2.0 * f.vector,
            paper_mm2: Some(0.0006 + 0.00006 + 0.00024),
            model_mm2: per_tile("digital").0,
        },
    ];
    let tile_mw: f64 = tile_rows.iter().map(|r| r.model_mw).sum();
    let tile_mm2: f64 = tile_rows.iter().map(|r| r.model_mm2).sum();
    let mut rows = tile_rows;
    rows.push(Row {
        name: "**tile total**",
        paper_mw: Some(330.0),
        model_mw: tile_mw,
        paper_mm2: Some(0.372),
        model_mm2: tile_mm2,
    });
    table(out, "**ISAAC, one tile** (Table I)", &rows);

    let link = (f.link, part(&t, "link", 1.0).0);
    let chip_mw = tiles * tile_mw + link.0;
    let chip_mm2 = tiles * tile_mm2 + link.1;
    let rows = vec![
        Row {
            name: "168 tiles",
            paper_mw: Some(168.0 * 330.0),
            model_mw: tiles * tile_mw,
            paper_mm2: Some(168.0 * 0.372),
            model_mm2: tiles * tile_mm2,
        },
        Row {
            name: "HyperTransport (4 links)",
            paper_mw: Some(10400.0),
            model_mw: link.0,
            paper_mm2: Some(22.88),
            model_mm2: link.1,
        },
        Row {
            name: "**chip total**",
            paper_mw: Some(65800.0),
            model_mw: chip_mw,
            paper_mm2: Some(85.4),
            model_mm2: chip_mm2,
        },
    ];
    table(out, "**ISAAC, the chip** (Table I)", &rows);
    let adc_share = arrays * t.cost.adcs_per_array * f.adc / chip_mw;
    let paper_share = 16.0 * 12.0 * 168.0 / 65800.0;
    let _ = writeln!(
        out,
        "\nADC share of the chip's power at full activity: model {:.1} %, Table I {:.1} %. \
         Chip area {:.2} mm² (Table I 85.4, {}); the cost model's own chip area \
         (`Target::chip_figures`) {:.2} mm².",
        100.0 * adc_share,
        100.0 * paper_share,
        chip_mm2,
        pct(chip_mm2, Some(85.4)),
        t.chip_figures(0).area_mm2
    );
}

/// PUMA's chip totals and the simulator's per-unit figures, against the preset.
fn puma(out: &mut String) {
    let t = Target::preset("puma").expect("invariant: the preset exists");
    let arrays = t.chip.arrays as f64;
    let cores = arrays / t.core.arrays as f64;
    // A 4-port router passes one 4-byte flit per cycle (the preset's derivation) and serves 4
    // tiles of 8 cores.
    let f = full_rate(&t, 32.0, 4.0);
    let figures = t.chip_figures(0);
    let leak = |name: &str| part(&t, name, 1.0).1;
    let area = |name: &str| part(&t, name, 1.0).0;
    let tiles = cores / 8.0;
    let adcs = arrays * t.cost.adcs_per_array;
    // The tile's 64 KB eDRAM: 17.2 pJ per 256-bit access over 2 cycles (constants.py), a core
    // sees 1/8 of it.
    let edram = t.cost.buffer_read_pj_per_byte * 32.0 / 2.0 * tiles;
    let rows = vec![
        Row {
            name: "crossbars with DACs and S+H (17664)",
            paper_mw: None,
            model_mw: arrays * (f.xbar + f.dac) + leak("xbar") + leak("dac") + leak("sample_hold"),
            paper_mm2: None,
            model_mm2: area("xbar") + area("dac") + area("sample_hold"),
        },
        Row {
            name: "ADCs",
            paper_mw: None,
            model_mw: adcs * f.adc + leak("adc"),
            paper_mm2: None,
            model_mm2: area("adc"),
        },
        Row {
            name: "shift-and-add + MVMU registers",
            paper_mw: None,
            model_mw: arrays * (f.shift_add + f.registers)
                + leak("shift_add")
                + leak("array_buffer"),
            paper_mm2: None,
            model_mm2: area("shift_add") + area("array_buffer"),
        },
        Row {
            name: "register files + eDRAM + bus",
            paper_mw: None,
            model_mw: edram + arrays * f.array_bus + leak("core_buffer") + leak("bus"),
            paper_mm2: None,
            model_mm2: area("core_buffer") + area("bus"),
        },
        Row {
            name: "VFU, SFU, control, instruction memories",
            paper_mw: None,
            model_mw: cores * f.vector + leak("digital"),
            paper_mm2: None,
            model_mm2: area("digital"),
        },
        Row {
            name: "routers",
            paper_mw: None,
            model_mw: cores * f.router + leak("router"),
            paper_mm2: None,
            model_mm2: area("router"),
        },
        Row {
            name: "HyperTransport",
            paper_mw: Some(10400.0),
            model_mw: f.link + leak("link"),
            paper_mm2: Some(22.88),
            model_mm2: area("link"),
        },
    ];
    let mw: f64 = rows.iter().map(|r| r.model_mw).sum();
    let mm2: f64 = rows.iter().map(|r| r.model_mm2).sum();
    let mut rows = rows;
    rows.push(Row {
        name: "**node total**",
        paper_mw: Some(26.2e3 / 0.42),
        model_mw: mw,
        paper_mm2: Some(26.2 / 0.29),
        model_mm2: mm2,
    });
    table(
        out,
        "**PUMA, the node** (totals: Aguirre et al. 2024, Table 3, row PUMA: 26.2 TOPS / 0.42 \
         TOPS/W and / 0.29 TOPS/mm²; per component the paper's Table 3 was not available)",
        &rows,
    );
    let _ = writeln!(
        out,
        "\nStatic power {:.2} W of the {:.2} W ({:.1} %); ADCs {:.1} % of the power. The cost \
         model's chip area (`Target::chip_figures`) {:.2} mm².",
        figures.static_mw / 1e3,
        mw / 1e3,
        100.0 * figures.static_mw / mw,
        100.0 * (adcs * f.adc + leak("adc")) / mw,
        figures.area_mm2
    );
    let peak = cimc_backends::stream::cost::array_peak(
        &t,
        16,
        16,
        cimc_backends::isa::WeightEncoding::Offset,
    );
    let _ = writeln!(
        out,
        "Peak at 16-bit weights and inputs: {:.1} TOPS (two operations per MAC), {:.3} TOPS/mm² \
         (paper abstract: 0.577) and {:.3} TOPS/W at the power above (abstract: 0.837).",
        peak.chip_tops,
        peak.chip_tops / mm2,
        peak.chip_tops / (mw / 1e3)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out_path: Option<PathBuf> = arg(&args, "--out");
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<!-- Generated by `cargo run --release -p cimc-examples --bin cost_breakdown -- --out \
         docs/cost-breakdown.md`; do not edit. -->\n\n# Per-component power and area of the \
         presets against the published breakdowns\n\nPower at full activity (every array \
         converting at full speed; see `docs/cost-model.md`), recomputed from `targets/*.toml`."
    );
    isaac(&mut out);
    puma(&mut out);
    print!("{out}");
    if let Some(p) = out_path {
        std::fs::write(&p, &out).expect("write the breakdown");
        eprintln!("wrote {}", p.display());
    }
}
