//! The results of a sweep: the JSON Lines file (one row per point, appended one whole line per
//! write while the sweep runs, rewritten in point order when it ends), the CSV beside it, the
//! Pareto plot and the terminal table.

use super::spec::SweepSpec;
use crate::error::{Error, Result};
use crate::svg::{scatter, stack, ScatterSeries};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The files of a results stem: `STEM.jsonl`, `STEM.csv`, `STEM.svg`.
pub fn paths(stem: &Path) -> [PathBuf; 3] {
    let with = |ext: &str| {
        let mut s = stem.as_os_str().to_owned();
        s.push(ext);
        PathBuf::from(s)
    };
    [with(".jsonl"), with(".csv"), with(".svg")]
}

/// The rows of a JSON Lines file (none when it does not exist). A last line without its
/// newline is a row torn by a kill: it is dropped, and with `repair` cut from the file so that
/// the next append starts a line. Any other line that is not a JSON object is an error.
pub fn read_rows(path: &Path, repair: bool) -> Result<Vec<Value>> {
    Ok(read_lines(path, repair)?.into_iter().map(|(v, _)| v).collect())
}

/// As [`read_rows`], each row with its line as written. The results are rewritten from these
/// lines, not from the parsed values: serde_json reads a float to within an ulp, not always
/// exactly, and a row must keep the bytes its point was computed with.
pub fn read_lines(path: &Path, repair: bool) -> Result<Vec<(Value, String)>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if whole < bytes.len() && repair {
        let f =
            std::fs::OpenOptions::new().write(true).open(path).map_err(|e| Error::io(path, e))?;
        f.set_len(whole as u64).map_err(|e| Error::io(path, e))?;
    }
    let text = std::str::from_utf8(&bytes[..whole]).map_err(|_| Error::Npy {
        file: path.to_path_buf(),
        msg: "a results file is UTF-8 text".into(),
    })?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|e| Error::Npy {
            file: path.to_path_buf(),
            msg: format!("line {}: not a result row ({e})", i + 1),
        })?;
        if !v["hash"].is_string() {
            return Err(Error::Npy {
                file: path.to_path_buf(),
                msg: format!("line {}: a result row has a 'hash'", i + 1),
            });
        }
        rows.push((v, line.to_string()));
    }
    Ok(rows)
}

/// One row as one line: a single write of the whole line, then a flush, so that a kill leaves
/// at most the last line torn.
pub fn append(file: &mut std::fs::File, row: &Value) -> std::io::Result<()> {
    append_line(file, &serde_json::to_string(row).expect("invariant: rows serialize"))
}

/// A row's line as another process wrote it (no newline), appended as [`append`] does.
pub fn append_line(file: &mut std::fs::File, line: &str) -> std::io::Result<()> {
    let mut line = line.trim_end().to_string();
    line.push('\n');
    file.write_all(line.as_bytes())?;
    file.flush()
}

/// `rows` reduced to the points of the sweep (`hashes`), one row per hash (the first), in
/// point order.
pub fn canonical_rows(
    rows: Vec<(Value, String)>,
    hashes: &BTreeSet<String>,
) -> Vec<(Value, String)> {
    let mut seen = BTreeSet::new();
    let mut out: Vec<(Value, String)> = rows
        .into_iter()
        .filter(|(r, _)| {
            let h = r["hash"].as_str().unwrap_or_default().to_string();
            hashes.contains(&h) && seen.insert(h)
        })
        .collect();
    out.sort_by_key(|(r, _)| r["index"].as_u64().unwrap_or(u64::MAX));
    out
}

/// The accuracy figure of the rows: `top1` (higher is better) or `output_error` (lower).
fn accuracy_key(rows: &[Value]) -> &'static str {
    if rows.iter().any(|r| r.get("output_error").is_some()) {
        "output_error"
    } else {
        "top1"
    }
}

/// The columns of the CSV and the table: the point, the axes in the file's order, the figures.
fn columns(spec: &SweepSpec, rows: &[Value]) -> Vec<String> {
    let mut c: Vec<String> = vec!["index".into(), "hash".into(), "compile".into()];
    c.extend(spec.axes.iter().map(|a| a.name.clone()));
    c.push(accuracy_key(rows).into());
    for k in ["energy_pj", "latency_ns", "interval_ns", "arrays", "error"] {
        if rows.iter().any(|r| r.get(k).is_some()) {
            c.push(k.into());
        }
    }
    c
}

fn cell(row: &Value, col: &str) -> String {
    let v = row.get(col).or_else(|| row["axes"].get(col));
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// The CSV text of the rows.
pub fn csv(spec: &SweepSpec, rows: &[Value]) -> String {
    let cols = columns(spec, rows);
    let quote = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut out = cols.iter().map(|c| quote(c)).collect::<Vec<_>>().join(",") + "\n";
    for r in rows {
        out += &(cols.iter().map(|c| quote(&cell(r, c))).collect::<Vec<_>>().join(",") + "\n");
    }
    out
}

/// The indexes (into `rows`) of the Pareto-optimal rows: no other row is at least as accurate
/// with at most the energy and better in one of the two.
pub fn pareto(rows: &[Value]) -> Vec<usize> {
    let key = accuracy_key(rows);
    let sign = if key == "top1" { 1.0 } else { -1.0 };
    let pts: Vec<Option<(f64, f64)>> =
        rows.iter().map(|r| Some((r["energy_pj"].as_f64()?, sign * r[key].as_f64()?))).collect();
    (0..rows.len())
        .filter(|&i| {
            let Some((e, a)) = pts[i] else { return false };
            !pts.iter().flatten().any(|&(e2, a2)| e2 <= e && a2 >= a && (e2 < e || a2 > a))
        })
        .collect()
}

/// The terminal table: one line per row, the Pareto-optimal ones marked `*`.
pub fn table(spec: &SweepSpec, rows: &[Value]) -> String {
    let mut cols = columns(spec, rows);
    cols.retain(|c| c != "hash" && c != "compile" && c != "error");
    let front: BTreeSet<usize> = pareto(rows).into_iter().collect();
    let mut cells: Vec<Vec<String>> = vec![cols.iter().map(|c| c.replace("target.", "")).collect()];
    for r in rows {
        cells.push(
            cols.iter()
                .map(|c| match r.get(c).and_then(Value::as_f64) {
                    Some(v) if c != "index" && c != "arrays" => {
                        format!("{v:.4}").trim_end_matches('0').trim_end_matches('.').to_string()
                    }
                    _ => cell(r, c),
                })
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..cols.len())
        .map(|j| cells.iter().map(|l| l[j].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, line) in cells.iter().enumerate() {
        let mark = if i > 0 && front.contains(&(i - 1)) { "*" } else { " " };
        let parts: Vec<String> =
            line.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}")).collect();
        out += &format!("{mark} {}", parts.join("  "));
        if i > 0 {
            if let Some(e) = rows[i - 1]["error"].as_str() {
                out += &format!("  error: {}", e.lines().next().unwrap_or_default());
            }
        }
        out += "\n";
    }
    out += "* Pareto-optimal (accuracy against energy per inference)\n";
    out
}

/// The plot: accuracy against energy per inference (coloured by the `target` axis, or the
/// first axis, with the Pareto front), and accuracy against the chosen axis.
pub fn svg(spec: &SweepSpec, rows: &[Value]) -> String {
    let key = accuracy_key(rows);
    let y_label = if key == "top1" { "top-1 (%)" } else { "output error (relative RMS)" };
    let colour_axis = spec
        .axes
        .iter()
        .find(|a| a.name == "target")
        .or_else(|| spec.axes.iter().find(|a| !a.is_eval()))
        .or(spec.axes.first());
    let group = |r: &Value| colour_axis.map_or(String::new(), |a| cell(r, &a.name));
    let mut names: Vec<String> = Vec::new();
    for r in rows {
        if !names.contains(&group(r)) {
            names.push(group(r));
        }
    }
    let energy: Vec<Option<(f64, f64)>> =
        rows.iter().map(|r| Some((r["energy_pj"].as_f64()? / 1e6, r[key].as_f64()?))).collect();
    let series_of = |xy: &dyn Fn(usize) -> Option<(f64, f64)>| -> Vec<ScatterSeries> {
        names
            .iter()
            .map(|n| ScatterSeries {
                name: match colour_axis {
                    Some(a) => format!("{}={n}", a.name.replace("target.", "")),
                    None => "points".into(),
                },
                points: (0..rows.len()).filter(|&i| &group(&rows[i]) == n).filter_map(xy).collect(),
            })
            .collect()
    };
    let mut parts = Vec::new();
    if energy.iter().any(Option::is_some) {
        let front: Vec<(f64, f64)> = pareto(rows).into_iter().filter_map(|i| energy[i]).collect();
        parts.push(scatter(
            &format!("{y_label} against energy per inference: {}", spec.file.display()),
            "energy per inference (µJ)",
            y_label,
            &series_of(&|i| energy[i]),
            &front,
            None,
        ));
    }
    let axis = spec
        .plot_axis
        .as_ref()
        .and_then(|p| spec.axes.iter().find(|a| &a.name == p))
        .or_else(|| spec.axes.iter().find(|a| !a.is_eval() && a.name != "target"))
        .or(spec.axes.first());
    if let Some(a) = axis {
        let numeric = a.values.iter().all(Value::is_number);
        let x_of = |r: &Value| -> Option<f64> {
            let v = r["axes"].get(&a.name)?;
            if numeric {
                v.as_f64()
            } else {
                a.values.iter().position(|x| x == v).map(|p| p as f64)
            }
        };
        let ticks: Option<Vec<(f64, String)>> = (!numeric).then(|| {
            a.values
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64, v.as_str().map_or(v.to_string(), String::from)))
                .collect()
        });
        parts.push(scatter(
            &format!("{y_label} against {}", a.name),
            &a.name,
            y_label,
            &series_of(&|i| Some((x_of(&rows[i])?, rows[i][key].as_f64()?))),
            &[],
            ticks.as_deref(),
        ));
    }
    stack(&parts)
}
