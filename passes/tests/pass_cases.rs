//! Pass tests as data: every `cases/<pass>/<case>.cir` is parsed, run through the pass named
//! by its folder, verified, and printed; the output (the pass's counters, then the IR) is an
//! insta snapshot (`snapshots/`). Adding a case is dropping a file and reviewing its snapshot
//! (`INSTA_UPDATE=always cargo test -p cimc-passes --test pass_cases`, or `cargo insta review`).
//!
//! Header comments set what the pass sees:
//! - `// wbits: N`, `// abits: N`, `// calib-method: minmax|percentile|mse`, `// weight-method: minmax|mse`
//! - `// cascade: MIN` (the `cascade` pass's lowest width)
//! - `// target: PRESET` (a chip for `tile`), adjusted by `// rows:`, `// cols:`, `// cell-bits:`,
//!   `// adc-bits:`, `// encoding: differential|offset`, `// adc-range: worst|calib|lossless`,
//!   `// arrays: BUDGET`
//! - `// budget: weight-bits=X|arrays=N|energy=E` (runs `mixed-precision`), `// bits-candidates: 2,4,8`
//! - `// bn-calibrate: on` — run `bn-calibrate` (and `reference-stats`)
//! - `// calib: SAMPLES` — calibration data: SAMPLES inputs drawn uniformly from [-1, 1) (or
//!   [0, 1) with `// calib-range: 0 1`) by a fixed-seed generator written here.

use cimc_interp::Tensor;
use cimc_passes::config::{CalibMethod, WeightMethod};
use cimc_passes::{pass_by_name, PassContext};
use std::path::Path;

/// A small deterministic generator (xorshift64*), so calibration data needs no crate. Not the
/// shared `cimc_sim::noise::SplitMix64`: the cases' calibration data, and so their
/// snapshots, are this generator's numbers.
struct Rng(u64);

impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545F4914F6CDD1D) >> 40) as f32) / (1u64 << 24) as f32
    }
}

fn header<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("//"))
        .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

fn run_case(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let pass_name = path.parent().unwrap().file_name().unwrap().to_str().unwrap();
    let pass = pass_by_name(pass_name)
        .unwrap_or_else(|| panic!("no pass named '{pass_name}' (folder of {})", path.display()));
    let mut g = cimc_ir::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    cimc_ir::verify::verify(&g)
        .unwrap_or_else(|e| panic!("{}: input does not verify: {e}", path.display()));
    let mut cx = PassContext::default();
    if let Some(b) = header(&text, "wbits") {
        cx.config.wbits = b.parse().unwrap();
    }
    if let Some(b) = header(&text, "abits") {
        cx.config.abits = b.parse().unwrap();
    }
    if let Some(m) = header(&text, "calib-method") {
        cx.config.calib_method = CalibMethod::parse(m).unwrap();
    }
    if let Some(m) = header(&text, "weight-method") {
        cx.config.weight_method = WeightMethod::parse(m).unwrap();
    }
    if let Some(b) = header(&text, "cascade") {
        cx.config.cascade_min_bits = Some(b.parse().unwrap());
    }
    if let Some(b) = header(&text, "budget") {
        cx.config.auto_bits = Some(cimc_passes::config::Budget::parse(b).unwrap());
    }
    if let Some(b) = header(&text, "bits-candidates") {
        cx.config.candidate_bits = cimc_passes::config::parse_bit_list(b).unwrap();
    }
    if let Some(n) = header(&text, "calib") {
        let n: usize = n.parse().unwrap();
        let (lo, hi) = header(&text, "calib-range")
            .map(|r| {
                let v: Vec<f32> = r.split_whitespace().map(|x| x.parse().unwrap()).collect();
                (v[0], v[1])
            })
            .unwrap_or((-1.0, 1.0));
        let mut rng = Rng(0x9E3779B97F4A7C15);
        let calib = g
            .inputs()
            .iter()
            .map(|&v| {
                let mut shape = g.ty(v).shape.clone();
                shape[0] = n;
                Tensor::F32(ndarray::ArrayD::from_shape_simple_fn(ndarray::IxDyn(&shape), || {
                    lo + (hi - lo) * rng.next_f32()
                }))
            })
            .collect();
        cx.calib = Some(calib);
    }
    if header(&text, "bn-calibrate").is_some() {
        cx.config.bn_calibrate = true;
    }
    if let Some(name) = header(&text, "target") {
        use cimc_backends::target::{AdcRange, Target, WeightEncoding};
        let mut t = Target::resolve(name).unwrap();
        let num = |k: &str| header(&text, k).map(|v| v.parse::<usize>().unwrap());
        if let Some(v) = num("rows") {
            t.chip.crossbar.rows = v;
        }
        if let Some(v) = num("cols") {
            t.chip.crossbar.cols = v;
        }
        if let Some(v) = num("cell-bits") {
            t.chip.crossbar.cell_bits = v as u32;
        }
        if let Some(v) = num("adc-bits") {
            t.chip.crossbar.adc_bits = v as u32;
        }
        if let Some(v) = header(&text, "encoding") {
            t.chip.crossbar.encoding = WeightEncoding::from_name(v).unwrap_or_else(|| {
                panic!("{}: encoding: {}", path.display(), WeightEncoding::expected())
            });
        }
        if let Some(v) = header(&text, "adc-range") {
            t.chip.adc_range = AdcRange::from_name(v).unwrap_or_else(|| {
                panic!("{}: adc-range: {}", path.display(), AdcRange::expected())
            });
        }
        t.validate(&path.display().to_string()).unwrap();
        cx.chip = Some(cimc_passes::tile::Chip::from_target(&t, num("arrays")));
    }
    let stats = pass.run(&mut g, &cx).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    g.compact().unwrap();
    cimc_ir::verify::verify(&g)
        .unwrap_or_else(|e| panic!("{}: output does not verify: {e}\n{g}", path.display()));
    let mut out = String::new();
    for (k, v) in &stats {
        out.push_str(&format!("// {k}: {v}\n"));
    }
    out.push_str(&g.to_string());
    insta::with_settings!({prepend_module_to_snapshot => false, omit_expression => true}, {
        insta::assert_snapshot!(out);
    });
}

#[test]
fn pass_cases() {
    insta::glob!("cases/*/*.cir", run_case);
}
