//! The sweep file (`docs/sweeps.md`): the base configuration, the axes and the sampling, read
//! and checked before any work, and its expansion into points.
//!
//! Every axis gets a canonical name: `compile.KEY` (a compile option), `target` (the chip, a
//! preset or file), `target.TABLE.KEY` (a field of the target, by dotted path; a bare key that
//! names one field, such as `cell_bits`, is that field), `noise.KEY` (a key of `[noise]`),
//! `seed`, `drift_time` and `trials`. The last four and `noise.*` are evaluation settings:
//! points that differ only in them share one compilation.

use super::hash::fnv_hex;
use crate::error::{Error, Result};
use crate::noise_eval::parse_duration;
use cimc_backends::noise::NoiseSpec;
use cimc_backends::target::Target;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The compile options a sweep may set or sweep, with the kind of value each takes. They are
/// `cimc compile`'s flags (`--calib-method` is `calib_method`), and mean the same.
pub const COMPILE_KEYS: &[(&str, Kind)] = &[
    ("wbits", Kind::Int),
    ("abits", Kind::Int),
    ("calib_method", Kind::Str),
    ("weight_method", Kind::Str),
    ("calib_samples", Kind::Int),
    ("act_signed", Kind::Bool),
    ("bn_calibrate", Kind::Bool),
    ("cascade", Kind::Int),
    ("arrays", Kind::Int),
    ("adc_range", Kind::Str),
    ("adc_bits", Kind::Int),
    ("array_rows", Kind::Int),
    ("budget", Kind::Str),
    ("bits_candidates", Kind::Str),
    ("schedule", Kind::Str),
];

/// The keys of the `[sweep]` table.
const SWEEP_KEYS: &[&str] = &[
    "model",
    "data",
    "labels",
    "calib",
    "limit",
    "batch",
    "trials",
    "target",
    "seed",
    "drift_time",
    "sampling",
    "points",
    "sampling_seed",
    "plot_axis",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int,
    Str,
    Bool,
}

/// One axis: its canonical name and its values, in the file's order.
#[derive(Clone, Debug)]
pub struct Axis {
    pub name: String,
    pub values: Vec<Value>,
}

impl Axis {
    /// Whether the axis changes only how a compiled program is evaluated.
    pub fn is_eval(&self) -> bool {
        is_eval_setting(&self.name)
    }
}

/// Whether an axis of this canonical name is an evaluation setting.
pub fn is_eval_setting(name: &str) -> bool {
    matches!(name, "seed" | "drift_time" | "trials") || name.starts_with("noise.")
}

/// A parsed sweep file.
#[derive(Clone, Debug)]
pub struct SweepSpec {
    /// The sweep file, and the directory its paths are relative to.
    pub file: PathBuf,
    pub dir: PathBuf,
    /// The base configuration of every point (see [`SweepSpec::config`]).
    pub base: Value,
    pub axes: Vec<Axis>,
    /// `None`: the whole grid; `Some((n, seed))`: `n` distinct points drawn from it.
    pub random: Option<(usize, u64)>,
    /// The axis of the second plot (canonical name).
    pub plot_axis: Option<String>,
}

/// One point of the sweep: its position in the expansion, the axes' values, its whole
/// configuration and the two hashes (the point's, and its compilation's).
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub index: usize,
    pub hash: String,
    pub compile_key: String,
    pub axes: Map<String, Value>,
    pub config: Value,
}

impl Point {
    /// The JSON form of `cimc sweep --list-points` (one line per point), self-contained: the
    /// directory the configuration's paths are relative to travels with it.
    pub fn to_json(&self, dir: &Path) -> Value {
        json!({
            "index": self.index,
            "hash": self.hash,
            "compile": self.compile_key,
            "dir": dir.display().to_string(),
            "axes": self.axes,
            "config": self.config,
        })
    }

    /// Reads a point back (`--run-point`), checking that its hash is its configuration's.
    pub fn from_json(v: &Value, origin: &str) -> Result<(Point, PathBuf)> {
        let bad = |what: &str| Error::Usage(format!("{origin}: not a sweep point: {what}"));
        let index = v["index"].as_u64().ok_or_else(|| bad("no 'index'"))? as usize;
        let axes = v["axes"].as_object().ok_or_else(|| bad("no 'axes' object"))?.clone();
        let config = v.get("config").filter(|c| c.is_object()).ok_or_else(|| bad("no 'config'"))?;
        let dir = PathBuf::from(v["dir"].as_str().ok_or_else(|| bad("no 'dir'"))?);
        let p = point_of(index, axes, config.clone());
        if v["hash"].as_str() != Some(p.hash.as_str()) {
            return Err(bad("its 'hash' is not the hash of its 'config' (edited?)"));
        }
        Ok((p, dir))
    }
}

fn point_of(index: usize, axes: Map<String, Value>, config: Value) -> Point {
    let hash = fnv_hex(&config);
    let compile_key = fnv_hex(&compile_part(&config));
    Point { index, hash, compile_key, axes, config }
}

/// The part of a configuration that decides the compiled program (and its cost).
pub fn compile_part(config: &Value) -> Value {
    let keys = ["model", "calib", "batch", "compile", "target"];
    Value::Object(keys.iter().map(|k| (k.to_string(), config[*k].clone())).collect())
}

fn usage(file: &Path, msg: String) -> Error {
    Error::Usage(format!("{}: {msg}", file.display()))
}

/// TOML to JSON (a sweep file holds no dates).
fn to_json(v: &toml::Value, file: &Path, key: &str) -> Result<Value> {
    Ok(match v {
        toml::Value::String(s) => json!(s),
        toml::Value::Integer(i) => json!(i),
        toml::Value::Float(f) => json!(f),
        toml::Value::Boolean(b) => json!(b),
        toml::Value::Array(a) => {
            Value::Array(a.iter().map(|x| to_json(x, file, key)).collect::<Result<_>>()?)
        }
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, x)| Ok((k.clone(), to_json(x, file, key)?)))
                .collect::<Result<_>>()?,
        ),
        toml::Value::Datetime(_) => {
            return Err(usage(file, format!("'{key}': a date is no value of a sweep")))
        }
    })
}

/// A table's entries with nested tables flattened to dotted keys (`[axes.adc] bits = [..]` and
/// `"adc.bits" = [..]` are the same axis).
fn flatten(t: &toml::Table, prefix: &str, out: &mut Vec<(String, toml::Value)>) {
    for (k, v) in t {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Table(inner) => flatten(inner, &key, out),
            other => out.push((key, other.clone())),
        }
    }
}

impl SweepSpec {
    /// Reads and checks a sweep file: every key known, every value of the right kind, every
    /// target field and noise key applied once to the base (so a misspelt key is refused here,
    /// naming it, not at the first point).
    pub fn load(file: &Path) -> Result<SweepSpec> {
        let text = cimc_ir::files::read_text(file).map_err(|e| Error::io(file, e))?;
        SweepSpec::parse(&text, file)
    }

    pub fn parse(text: &str, file: &Path) -> Result<SweepSpec> {
        let doc: toml::Table = toml::from_str(text).map_err(|e| {
            let span = e.span().map(|s| {
                let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                format!("line {line}: ")
            });
            usage(file, format!("{}{}", span.unwrap_or_default(), e.message()))
        })?;
        for k in doc.keys() {
            if !["sweep", "compile", "target", "noise", "axes"].contains(&k.as_str()) {
                return Err(usage(
                    file,
                    format!("unknown table '[{k}]' (expected [sweep], [compile], [target], [noise], [axes])"),
                ));
            }
        }
        let table = |name: &str| -> Result<toml::Table> {
            match doc.get(name) {
                None => Ok(toml::Table::new()),
                Some(toml::Value::Table(t)) => Ok(t.clone()),
                Some(_) => Err(usage(file, format!("'{name}' must be a table ([{name}])"))),
            }
        };
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
        let sweep = table("sweep")?;
        let mut base = Map::new();
        for (k, v) in &sweep {
            if !SWEEP_KEYS.contains(&k.as_str()) {
                return Err(usage(
                    file,
                    format!(
                        "[sweep] unknown key '{k}' (expected one of {})",
                        SWEEP_KEYS.join(", ")
                    ),
                ));
            }
            base.insert(k.clone(), to_json(v, file, k)?);
        }
        let cx = Checker { file, dir: &dir, check_target: true };
        let config = cx.base_config(&base, &table("compile")?, &table("target")?, &doc)?;
        let mut axes = Vec::new();
        let mut entries = Vec::new();
        flatten(&table("axes")?, "", &mut entries);
        // The target axis first: the fields of the target are checked against its first value.
        entries.sort_by_key(|(k, _)| k != "target");
        let mut config = config;
        for (k, v) in entries {
            let name = cx.canonical(&k, &config)?;
            let toml::Value::Array(vals) = &v else {
                return Err(usage(file, format!("[axes] '{k}': expected a list of values")));
            };
            if vals.is_empty() {
                return Err(usage(file, format!("[axes] '{k}': the list is empty")));
            }
            let values = vals.iter().map(|x| to_json(x, file, &k)).collect::<Result<Vec<_>>>()?;
            for x in &values {
                let mut c = config.clone();
                cx.set(&mut c, &name, x, &format!("[axes] '{k}'"))?;
            }
            if name == "target" {
                cx.set(&mut config, &name, &values[0], &format!("[axes] '{k}'"))?;
            }
            if axes.iter().any(|a: &Axis| a.name == name) {
                return Err(usage(file, format!("[axes] '{k}': the axis '{name}' is given twice")));
            }
            axes.push(Axis { name, values });
        }
        let random = match base.get("sampling").map(|v| v.as_str()) {
            None | Some(Some("grid")) => None,
            Some(Some("random")) => {
                let n = base.get("points").and_then(Value::as_u64).ok_or_else(|| {
                    usage(file, "[sweep] sampling = \"random\" needs 'points' (a count)".into())
                })?;
                let seed = base.get("sampling_seed").and_then(Value::as_u64).unwrap_or(0);
                Some((n as usize, seed))
            }
            Some(_) => {
                return Err(usage(
                    file,
                    "[sweep] 'sampling': expected \"grid\" or \"random\"".into(),
                ))
            }
        };
        let plot_axis = match base.get("plot_axis") {
            None => None,
            Some(Value::String(s)) => Some(cx.canonical(s, &config)?),
            Some(_) => {
                return Err(usage(file, "[sweep] 'plot_axis': expected an axis name".into()))
            }
        };
        Ok(SweepSpec { file: file.to_path_buf(), dir, base: config, axes, random, plot_axis })
    }

    /// Every point: the grid in row-major order of the axes (the first axis varies slowest),
    /// or `n` distinct points drawn from it with the sampling seed, in the order drawn.
    pub fn points(&self) -> Result<Vec<Point>> {
        let sizes: Vec<usize> = self.axes.iter().map(|a| a.values.len()).collect();
        let total = sizes.iter().try_fold(1usize, |acc, &s| acc.checked_mul(s));
        let total = total
            .filter(|&t| t <= 1 << 24)
            .ok_or_else(|| usage(&self.file, "the grid has more than 16,777,216 points".into()))?;
        let combos: Vec<usize> = match self.random {
            None => (0..total).collect(),
            Some((n, seed)) => {
                let mut rng = super::hash::SplitMix(seed);
                let mut seen = BTreeSet::new();
                let mut out = Vec::new();
                while out.len() < n.min(total) {
                    let k = (rng.next_u64() % total as u64) as usize;
                    if seen.insert(k) {
                        out.push(k);
                    }
                }
                out
            }
        };
        let cx = Checker { file: &self.file, dir: &self.dir, check_target: false };
        let mut points = Vec::with_capacity(combos.len());
        for (index, mut k) in combos.into_iter().enumerate() {
            let mut picks = vec![0; sizes.len()];
            for (i, &s) in sizes.iter().enumerate().rev() {
                picks[i] = k % s;
                k /= s;
            }
            let mut config = self.base.clone();
            let mut axes = Map::new();
            for (a, &i) in self.axes.iter().zip(&picks) {
                cx.set(&mut config, &a.name, &a.values[i], &a.name)?;
                axes.insert(a.name.clone(), a.values[i].clone());
            }
            points.push(point_of(index, axes, config));
        }
        Ok(points)
    }
}

/// Checks keys and values against the sweep file they come from.
struct Checker<'a> {
    file: &'a Path,
    dir: &'a Path,
    /// Whether a target with fields set is resolved (checked) at each setting: while the file
    /// is read; not while points are expanded, where a combination of values the target
    /// refuses becomes that point's error row.
    check_target: bool,
}

impl Checker<'_> {
    fn err(&self, msg: String) -> Error {
        usage(self.file, msg)
    }

    /// The configuration every point starts from.
    fn base_config(
        &self,
        sweep: &Map<String, Value>,
        compile: &toml::Table,
        target: &toml::Table,
        doc: &toml::Table,
    ) -> Result<Value> {
        let path = |k: &str, required: bool| -> Result<Value> {
            match sweep.get(k) {
                Some(Value::String(s)) => Ok(json!(s)),
                None if !required => Ok(Value::Null),
                None => Err(self.err(format!("[sweep] '{k}' is required (a path)"))),
                Some(_) => Err(self.err(format!("[sweep] '{k}': expected a path (a string)"))),
            }
        };
        let count = |k: &str, default: Option<u64>| -> Result<Value> {
            match sweep.get(k) {
                None => Ok(default.map_or(Value::Null, |d| json!(d))),
                Some(v) => match v.as_u64() {
                    Some(n) if n >= 1 => Ok(json!(n)),
                    _ => Err(self.err(format!("[sweep] '{k}': expected a count of at least 1"))),
                },
            }
        };
        let mut config = json!({
            "model": path("model", true)?,
            "data": path("data", true)?,
            "labels": path("labels", false)?,
            "calib": path("calib", false)?,
            "limit": count("limit", None)?,
            "batch": count("batch", Some(1))?,
            "compile": {},
            "target": Value::Null,
            "eval": {"noise": Value::Null, "seed": 0, "drift_time": Value::Null,
                     "trials": count("trials", Some(1))?},
        });
        for (name, v) in ["model", "data", "labels", "calib"].map(|k| (k, config[k].clone())) {
            if let Some(p) = v.as_str() {
                if !self.dir.join(p).is_file() {
                    return Err(self.err(format!(
                        "[sweep] '{name}': no such file {}",
                        self.dir.join(p).display()
                    )));
                }
            }
        }
        if let Some(t) = sweep.get("target") {
            self.set(&mut config, "target", t, "[sweep] 'target'")?;
        }
        for (k, v) in compile {
            let v = to_json(v, self.file, k)?;
            self.set(&mut config, &format!("compile.{k}"), &v, &format!("[compile] '{k}'"))?;
        }
        let mut fields = Vec::new();
        flatten(target, "", &mut fields);
        if !fields.is_empty() && config["target"].is_null() {
            return Err(self.err("[target] sets fields of a target: give [sweep] target".into()));
        }
        for (k, v) in fields {
            let name = self.canonical(&format!("target.{k}"), &config)?;
            let v = to_json(&v, self.file, &k)?;
            self.set(&mut config, &name, &v, &format!("[target] '{k}'"))?;
        }
        if let Some(noise) = doc.get("noise") {
            let mut keys = Vec::new();
            if let toml::Value::Table(t) = noise {
                flatten(t, "", &mut keys);
            }
            config["eval"]["noise"] = json!({});
            for (k, v) in keys {
                let v = to_json(&v, self.file, &k)?;
                self.set(&mut config, &format!("noise.{k}"), &v, &format!("[noise] '{k}'"))?;
            }
        }
        for k in ["seed", "drift_time"] {
            if let Some(v) = sweep.get(k) {
                self.set(&mut config, k, v, &format!("[sweep] '{k}'"))?;
            }
        }
        Ok(config)
    }

    /// The canonical name of an axis written `key`.
    fn canonical(&self, key: &str, config: &Value) -> Result<String> {
        if matches!(key, "target" | "seed" | "drift_time" | "trials") {
            return Ok(key.to_string());
        }
        let compile = |k: &str| COMPILE_KEYS.iter().any(|(c, _)| *c == k);
        let noise_keys = noise_keys();
        if let Some(k) = key.strip_prefix("compile.") {
            if compile(k) {
                return Ok(key.to_string());
            }
            return Err(self.err(format!(
                "'{key}': '{k}' is not a compile option (one of {})",
                COMPILE_KEYS.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")
            )));
        }
        if let Some(k) = key.strip_prefix("noise.") {
            if noise_keys.contains(&k.to_string()) {
                return Ok(key.to_string());
            }
            return Err(self.err(format!(
                "'{key}': '{k}' is not a key of [noise] (one of {})",
                noise_keys.join(", ")
            )));
        }
        let fields = target_fields();
        let short = key.strip_prefix("target.").unwrap_or(key);
        let matches: Vec<&String> =
            fields.iter().filter(|f| *f == short || f.ends_with(&format!(".{short}"))).collect();
        let explicit = key.starts_with("target.");
        match matches.as_slice() {
            [one] if explicit || (!compile(key) && !noise_keys.contains(&key.to_string())) => {
                if config["target"].is_null() {
                    return Err(self.err(format!(
                        "'{key}' is a field of the target: give [sweep] target or a 'target' axis"
                    )));
                }
                return Ok(format!("target.{one}"));
            }
            [] | [_] => {}
            many => {
                return Err(self.err(format!(
                    "'{key}' names several target fields ({}): write the whole path",
                    many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )))
            }
        }
        if compile(key) {
            return Ok(format!("compile.{key}"));
        }
        if noise_keys.contains(&key.to_string()) {
            return Ok(format!("noise.{key}"));
        }
        Err(self.err(format!(
            "'{key}' is not an axis: expected a compile option (compile.KEY), 'target', a target \
             field (target.TABLE.KEY, e.g. target.adc.bits), a noise key (noise.KEY), 'seed', \
             'drift_time' or 'trials'"
        )))
    }

    /// Sets the setting of canonical name `name` to `v` in `config`, checking the value.
    fn set(&self, config: &mut Value, name: &str, v: &Value, origin: &str) -> Result<()> {
        let bad = |what: &str| self.err(format!("{origin} = {v}: {what}"));
        if let Some(k) = name.strip_prefix("compile.") {
            let kind = COMPILE_KEYS.iter().find(|(c, _)| *c == k).map(|c| c.1);
            let ok = match kind {
                Some(Kind::Int) => v.as_u64().is_some(),
                Some(Kind::Str) => v.is_string(),
                Some(Kind::Bool) => v.is_boolean(),
                None => return Err(self.err(format!("{origin}: '{k}' is not a compile option"))),
            };
            if !ok {
                return Err(bad(&format!("expected {:?}", kind.expect("invariant: known key"))));
            }
            config["compile"][k] = v.clone();
            return Ok(());
        }
        if let Some(k) = name.strip_prefix("noise.") {
            if config["eval"]["noise"].is_null() {
                config["eval"]["noise"] = json!({});
            }
            config["eval"]["noise"][k] = v.clone();
            noise_spec(&config["eval"]["noise"], origin).map_err(|e| bad(&e))?;
            return Ok(());
        }
        match name {
            "seed" => {
                v.as_u64().ok_or_else(|| bad("expected a seed (an integer >= 0)"))?;
                config["eval"]["seed"] = v.clone();
            }
            "trials" => {
                v.as_u64()
                    .filter(|&n| (1..=1_000_000).contains(&n))
                    .ok_or_else(|| bad("expected a number of trials (1..1,000,000)"))?;
                config["eval"]["trials"] = v.clone();
            }
            "drift_time" => {
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => {
                        return Err(bad(
                            "expected a duration such as \"1d\" or a number of seconds",
                        ))
                    }
                };
                parse_duration(&s).map_err(|e| bad(&e.to_string()))?;
                config["eval"]["drift_time"] = json!(s);
            }
            "target" => {
                let s = v.as_str().ok_or_else(|| bad("expected a preset or a target file"))?;
                let set = config["target"].get("set").cloned().unwrap_or(json!({}));
                config["target"] = json!({"name": s, "set": set});
            }
            _ => {
                let Some(field) = name.strip_prefix("target.") else {
                    return Err(self.err(format!("{origin}: '{name}' is not a setting")));
                };
                if config["target"].is_null() {
                    return Err(self.err(format!("{origin}: a target field needs a target")));
                }
                config["target"]["set"][field] = v.clone();
            }
        }
        if self.check_target && (name == "target" || name.starts_with("target.")) {
            resolve_target(&config["target"], self.dir).map_err(|e| bad(&e.to_string()))?;
        }
        Ok(())
    }
}

/// The keys of the `[noise]` table.
fn noise_keys() -> Vec<String> {
    let j = serde_json::to_value(NoiseSpec::default()).expect("invariant: a spec serializes");
    j.as_object().expect("invariant: a spec is an object").keys().cloned().collect()
}

/// The dotted path of every field of a target file (`adc.bits`, `array.rows`...).
fn target_fields() -> Vec<String> {
    let t: toml::Table = toml::from_str(&Target::default().to_toml_explicit())
        .expect("invariant: a target's TOML reads");
    let mut out = Vec::new();
    flatten(&t, "", &mut out);
    out.into_iter().map(|(k, _)| k).collect()
}

/// The noise spec of a configuration's `noise` object (unset keys at their defaults).
pub fn noise_spec(noise: &Value, origin: &str) -> std::result::Result<NoiseSpec, String> {
    let mut j = serde_json::to_value(NoiseSpec::default()).expect("invariant: a spec serializes");
    let obj = j.as_object_mut().expect("invariant: a spec is an object");
    for (k, v) in noise.as_object().into_iter().flatten() {
        if !obj.contains_key(k) {
            return Err(format!(
                "'{k}' is not a key of [noise] (one of {})",
                noise_keys().join(", ")
            ));
        }
        obj.insert(k.clone(), v.clone());
    }
    let s: NoiseSpec = serde_json::from_value(j).map_err(|e| e.to_string())?;
    s.validate(origin).map_err(|e| e.to_string())?;
    Ok(s)
}

/// The target of a configuration's `target` object: the preset or file (relative to `dir`)
/// with the fields of `set` replaced, validated as a target file is.
pub fn resolve_target(t: &Value, dir: &Path) -> Result<Target> {
    let name =
        t["name"].as_str().ok_or_else(|| Error::Internal("a target without a name".into()))?;
    let base = if Target::PRESETS.contains(&name) {
        Target::resolve(name)
    } else {
        Target::resolve(&dir.join(name).display().to_string())
    }
    .map_err(|e| Error::Usage(e.to_string()))?;
    let Some(set) = t["set"].as_object().filter(|s| !s.is_empty()) else { return Ok(base) };
    let mut table: toml::Table =
        toml::from_str(&base.to_toml_explicit()).expect("invariant: a target's TOML reads");
    let mut sorted: BTreeMap<&String, &Value> = BTreeMap::new();
    sorted.extend(set.iter());
    for (path, v) in sorted {
        let mut cur = &mut table;
        let parts: Vec<&str> = path.split('.').collect();
        for p in &parts[..parts.len() - 1] {
            let entry =
                cur.entry(p.to_string()).or_insert_with(|| toml::Value::Table(Default::default()));
            cur = entry.as_table_mut().ok_or_else(|| {
                Error::Usage(format!("target field '{path}': '{p}' is not a table"))
            })?;
        }
        let leaf = match v {
            Value::Bool(b) => toml::Value::Boolean(*b),
            Value::Number(n) if n.is_i64() => toml::Value::Integer(n.as_i64().unwrap_or(0)),
            Value::Number(n) => toml::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => toml::Value::String(s.clone()),
            _ => return Err(Error::Usage(format!("target field '{path}': expected a scalar"))),
        };
        cur.insert(parts[parts.len() - 1].to_string(), leaf);
    }
    let text = toml::to_string(&table).expect("invariant: a TOML table serializes");
    Target::from_toml_str(&text, &format!("target '{name}' with {}", Value::Object(set.clone())))
        .map_err(|e| Error::Usage(e.to_string()))
}
