//! Target descriptions: the presets, the defaults, the hash, and every rejected file of
//! `tests/data/bad_targets/` (data-driven: each file's first line is `# expect: <substring>`).

use cimc_backends::target::{AdcRange, Target, WeightEncoding};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn bad_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/bad_targets")
}

fn preset_text(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../targets/{name}.toml"));
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn every_preset_loads_and_validates() {
    assert_eq!(Target::PRESETS, ["isaac", "puma", "edge"]);
    for &name in Target::PRESETS {
        let t = Target::preset(name).unwrap_or_else(|| panic!("preset {name}"));
        assert_eq!(t.name, name);
        assert!(!t.description.is_empty(), "{name} has a description");
        t.validate(name).unwrap();
        // The file on disk is the embedded one.
        let from_file = Target::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../targets/{name}.toml")),
        )
        .unwrap();
        assert_eq!(from_file, t);
        assert_eq!(Target::resolve(name).unwrap(), t);
    }
    assert!(Target::preset("nope").is_none());
}

#[test]
fn preset_shapes() {
    let isaac = Target::preset("isaac").unwrap();
    let x = &isaac.chip.crossbar;
    assert_eq!((x.rows, x.cols, x.cell_bits), (128, 128, 2));
    assert_eq!((x.dac_bits, x.adc_bits), (1, 8));
    assert_eq!(isaac.chip.arrays, 168 * 12 * 8);
    assert_eq!(isaac.chip.adc_range, AdcRange::Calib);
    assert_eq!(x.encoding, WeightEncoding::Flipped);
    assert_eq!(
        isaac.summary(),
        "128x128 arrays, 2-bit cells, 1-bit DAC, 8-bit ADC (calib), flipped"
    );

    let puma = Target::preset("puma").unwrap();
    let x = &puma.chip.crossbar;
    assert_eq!((x.rows, x.cols, x.cell_bits), (128, 128, 2));
    assert_eq!((x.dac_bits, x.adc_bits), (1, 8));
    assert_eq!(puma.chip.arrays, 138 * 8 * 2 * 8);

    let edge = Target::preset("edge").unwrap();
    let x = &edge.chip.crossbar;
    assert_eq!((x.rows, x.cols, x.cell_bits), (64, 64, 1));
    assert_eq!(x.dac_bits, 1);
    assert!((4..=6).contains(&x.adc_bits));
    assert_eq!(
        edge.summary(),
        "64x64 arrays, 1-bit cells, 1-bit DAC, 4-bit ADC (calib), differential"
    );
}

#[test]
fn defaults_are_the_isaac_chip() {
    let d = Target::from_toml_str("", "empty.toml").unwrap();
    assert_eq!(d, Target::default());
    let isaac = Target::preset("isaac").unwrap();
    // Except the arrays' registers and bus, 0 unless stated (docs/targets.md), so that the
    // records of the targets that do not separate them stay the text they were.
    let (r, o, b) = (0.12109375, 0.0224609375, 0.405092593);
    let c = &isaac.cost;
    assert_eq!((c.input_register_pj, c.output_register_pj, c.array_bus_pj_per_byte), (r, o, b));
    assert_eq!(
        (d.cost.input_register_pj, d.cost.output_register_pj, d.cost.array_bus_pj_per_byte),
        (0.0, 0.0, 0.0)
    );
    let cost = cimc_backends::target::CostSpec {
        input_register_pj: r,
        output_register_pj: o,
        array_bus_pj_per_byte: b,
        ..d.cost.clone()
    };
    assert_eq!((&d.chip, &cost), (&isaac.chip, &isaac.cost));
    assert_eq!(d.chip.percentile, 99.99);
    assert!(!d.chip.per_column_group);
}

#[test]
fn hashes_are_distinct_and_stable() {
    let hashes: BTreeSet<String> =
        Target::PRESETS.iter().map(|n| Target::preset(n).unwrap().hash_hex()).collect();
    assert_eq!(hashes.len(), Target::PRESETS.len());
    // The defaults are the ISAAC chip under another name: the same mapping, the same hash.
    assert_eq!(Target::default().hash_hex(), Target::preset("isaac").unwrap().hash_hex());
    for h in &hashes {
        assert_eq!(h.len(), 16);
        assert!(h.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }
    // Same text, same hash; a key that decides the mapping changed, another hash.
    let text = preset_text("puma");
    let a = Target::from_toml_str(&text, "a.toml").unwrap();
    let b = Target::from_toml_str(&text, "b.toml").unwrap();
    assert_eq!(a.hash_hex(), b.hash_hex());
    let changed = text.replace("percentile = 99.99", "percentile = 99.9");
    assert_ne!(changed, text);
    let c = Target::from_toml_str(&changed, "c.toml").unwrap();
    assert_ne!(a.hash_hex(), c.hash_hex());
    // Cost figures, cores, noise, the name and the description do not decide the mapping, so
    // they do not change the hash (a new cost figure does not churn every stamp).
    let not_mapping = text
        .replace("adc_energy_pj = 0.8125", "adc_energy_pj = 0.8126")
        .replace("name = \"puma\"", "name = \"puma2\"")
        .replace("arrays = 16", "arrays = 8")
        + "[noise]\nsigma_read = 0.01\n";
    let e = Target::from_toml_str(&not_mapping, "e.toml").unwrap();
    assert_ne!((&e.name, &e.cost, &e.core, &e.noise), (&a.name, &a.cost, &a.core, &a.noise));
    assert_eq!(e.hash_hex(), a.hash_hex());
    // Comments and layout do not change a target, so they do not change its hash.
    let d = Target::from_toml_str(&toml::to_string(&a).unwrap(), "d.toml").unwrap();
    assert_eq!(d, a);
    assert_eq!(d.hash_hex(), a.hash_hex());
    // Pinned: the hash of the defaults must not drift between runs or platforms. (It changes,
    // on purpose, when a default or what decides the mapping changes: update it then.)
    assert_eq!(Target::default().hash_hex(), "6f3386c23a5d9377");
}

#[test]
fn resolve_takes_a_path_and_lists_presets_when_unknown() {
    let path = bad_dir().join("../../../targets/edge.toml");
    assert_eq!(Target::resolve(path.to_str().unwrap()).unwrap().name, "edge");
    let err = Target::resolve("no-such-target").unwrap_err().to_string();
    assert!(err.contains("no-such-target"), "{err}");
    for p in Target::PRESETS {
        assert!(err.contains(p), "{err}");
    }
    let err = Target::load(Path::new("/nonexistent/t.toml")).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/t.toml"), "{err}");
}

#[test]
fn lossless_that_fits_is_accepted() {
    // Differential: 128 rows x 1 x 3 = 384 <= 511.
    let t = Target::from_toml_str(
        "[adc]\nbits = 9\nrange = \"lossless\"\n[weights]\nencoding = \"differential\"\n",
        "ok.toml",
    )
    .unwrap();
    assert_eq!(t.max_partial_sum(), 384);
    // Offset with a range that never clips is fine.
    Target::from_toml_str(
        "[weights]\nencoding = \"offset\"\n[adc]\nrange = \"worst\"\n",
        "ok.toml",
    )
    .unwrap();
}

#[test]
fn flipped_encoding_loads_with_any_range() {
    // ISAAC's own encoding: flipped columns stay below 256, so isaac's 8-bit ADC is lossless
    // (unflipped it would need 384 <= 511, 9 bits), and a calibrated range is accepted.
    for range in ["lossless", "worst", "calib"] {
        let text = format!("[weights]\nencoding = \"flipped\"\n[adc]\nrange = \"{range}\"\n");
        let t = Target::from_toml_str(&text, "flipped.toml").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.chip.crossbar.encoding, WeightEncoding::Flipped);
        assert_eq!(t.max_partial_sum(), 255);
    }
    // The preset is flipped; its file with the differential encoding validates too (calibrated).
    let text =
        preset_text("isaac").replace("encoding = \"flipped\"", "encoding = \"differential\"");
    assert!(text.contains("encoding = \"differential\""));
    let t =
        Target::from_toml_str(&text, "isaac_differential.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (t.chip.adc_range, t.chip.crossbar.encoding, t.max_partial_sum()),
        (AdcRange::Calib, WeightEncoding::Differential, 384)
    );
    assert_ne!(t.hash_hex(), Target::preset("isaac").unwrap().hash_hex());
}

#[test]
fn bad_targets_are_refused_with_file_and_key() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(bad_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "bad_targets holds the cases ({} found)", files.len());
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: first line is not `# expect: ...`", path.display()))
            .trim();
        let err = match Target::load(path) {
            Ok(_) => panic!("{}: accepted", path.display()),
            Err(e) => e.to_string(),
        };
        let file_name = path.file_name().unwrap().to_str().unwrap();
        assert!(err.contains(file_name), "{file_name}: message lacks the file: {err}");
        assert!(err.contains(expect), "{file_name}: message lacks `{expect}`: {err}");
        assert!(!err.contains('\n'), "{file_name}: message is one line: {err}");
    }
}
