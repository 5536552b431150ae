//! What a cascade program costs at each weight width (`docs/cost-model.md`, "The cascade's
//! digital residual"). Streams do not switch widths (`docs/cascade.md`, "Limits"), so this
//! prices what the program does at width `b`: the stream of the W8 program gives every group's
//! shape, numerics and input vectors; at `b`, each crossbar group drives only its top weight
//! slices and its residual `R` (from `cimc_sim::program::derive`) runs on the core's digital
//! matrix unit, one multiply-accumulate per non-zero residual weight per vector
//! (`cimc_backends::stream::cost::cascade_vector_cost`).
//!
//! `cargo run --release -p cimc-examples --bin cascade_cost -- [--models mnist_cnn,mnist_resnet]
//!  [--calib-samples N]`

use cimc_backends::isa::Instr;
use cimc_backends::program::Program;
use cimc_backends::stream::cost::{self, cascade_vector_cost, GroupShape, Numerics};
use cimc_backends::stream::emit::{emit, EmitOptions};
use cimc_backends::stream::Stream;
use cimc_backends::target::Target;
use cimc_examples::arg;
use cimc_passes::tile::Chip;
use cimc_passes::PassContext;
use std::collections::BTreeMap;

const WIDTHS: [u32; 7] = [8, 7, 6, 5, 4, 3, 2];

/// Per group: its numerics (from its `xbar_config`), its shape and the vectors of one inference.
fn groups(s: &Stream) -> Vec<(usize, Numerics, GroupShape, u64)> {
    let mut num: BTreeMap<u16, Numerics> = BTreeMap::new();
    let mut vectors: BTreeMap<u16, u64> = BTreeMap::new();
    for i in s.cores.iter().flat_map(|c| c.code.iter()) {
        if let (Some(n), Instr::XbarConfig { group, .. }) = (Numerics::of_config(i), i) {
            num.entry(*group).or_insert(n);
        }
        if let Instr::Mvm { group, count, .. } = i {
            *vectors.entry(*group).or_default() += *count as u64;
        }
    }
    s.groups
        .iter()
        .enumerate()
        .filter_map(|(gi, g)| {
            let id = u16::try_from(gi).ok()?;
            let shape = GroupShape {
                k: g.k as u64,
                n: g.n as u64,
                conv_groups: g.conv_groups as u64,
                arrays: g.arrays.len() as u64,
            };
            Some((g.layer as usize, *num.get(&id)?, shape, *vectors.get(&id).unwrap_or(&0)))
        })
        .collect()
}

/// Per width: the crossbar part's energy and conversions, the residual's MACs and energy, and
/// the time the residual adds (pJ, ns), for one inference.
fn per_width(p: &Program, s: &Stream, t: &Target, b: u32) -> (f64, u64, u64, f64, f64) {
    let (mut xbar_pj, mut conversions, mut macs, mut res_pj, mut res_ns) = (0.0, 0, 0, 0.0, 0.0);
    for (layer, num, shape, vectors) in groups(s) {
        let d = cimc_sim::program::derive(&p.steps[layer], b).expect("derive");
        let (shift, density) = match d.as_ref().and_then(|d| d.top.as_ref()) {
            Some(top) => {
                let nz = top.residual.iter().filter(|&&r| r != 0).count();
                (top.shift, nz as f64 / top.residual.len().max(1) as f64)
            }
            None => (0, 0.0),
        };
        // The group's share of its layer's residual: its k·n weights at the layer's density.
        let nonzero = (density * (shape.k * shape.n) as f64).round() as u64;
        let v = cascade_vector_cost(&num, &shape, shift, nonzero, &t.cost);
        let e = &v.crossbar.energy;
        xbar_pj += vectors as f64 * (e.crossbar + e.dac + e.adc + e.shift_add);
        conversions += vectors * v.crossbar.conversions;
        macs += vectors * v.residual_macs;
        res_pj += vectors as f64 * v.residual_pj;
        res_ns += vectors as f64 * v.residual_ns;
    }
    (xbar_pj, conversions, macs, res_pj, res_ns)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let models: String = arg(&args, "--models").unwrap_or_else(|| "mnist_cnn,mnist_resnet".into());
    let calib_n: usize = arg(&args, "--calib-samples").unwrap_or(200);
    let t = Target::preset("isaac").expect("the isaac preset exists");
    println!("| model | b | crossbar + converters (nJ) | conversions | residual MACs | residual (nJ) | residual share | residual time (µs, summed over cores) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, set) in cimc_examples::trained_cnns() {
        if !models.split(',').any(|m| m == name) {
            continue;
        }
        let g = cimc_examples::import_vendored(name, 1);
        let mut cx =
            PassContext { calib: Some(vec![set.calib_images(calib_n)]), ..Default::default() };
        cx.config.cascade_min_bits = Some(2);
        cx.chip = Some(Chip::from_target(&t, None));
        let p = cimc::compile::compile(g, &cx, &[]).expect("compile").0;
        let s = emit(&p, &t, &EmitOptions::default()).expect("emit");
        let whole = cost::estimate(&s, &t).expect("estimate");
        eprintln!("{name}: W8 stream {:.1} nJ per inference", whole.totals.energy_pj / 1e3);
        for b in WIDTHS {
            let (xbar, conv, macs, res, ns) = per_width(&p, &s, &t, b);
            println!(
                "| {} | {b} | {:.2} | {conv} | {macs} | {:.3} | {:.1} % | {:.2} |",
                if b == 8 { name } else { "" },
                xbar / 1e3,
                res / 1e3,
                100.0 * res / (xbar + res),
                ns / 1e3
            );
        }
    }
}
