//! Design-space sweeps (`cimc sweep`, `docs/sweeps.md`): a sweep file's points compiled,
//! evaluated and costed in this process, points in parallel, compilations shared between the
//! points that differ only in evaluation settings, each row appended to the results as it
//! comes so an interrupted sweep resumes where it stopped.
//!
//! `spec.rs` reads the sweep file and expands its points; `point.rs` compiles, evaluates and
//! costs one configuration; `results.rs` is the results file, its CSV, plot and table;
//! `jobs.rs` the Slurm job array (`--emit-jobs`, `--merge`). The Ray driver is
//! `python/cimc/sweep.py`, which runs `cimc sweep --run-point` on the workers.

pub mod hash;
pub mod jobs;
pub mod point;
pub mod results;
pub mod spec;

use crate::error::{Error, Result};
use point::Dataset;
use rayon::prelude::*;
use serde_json::{json, Map, Value};
use spec::{Point, SweepSpec};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// How a sweep runs on this machine.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The results stem: `STEM.jsonl`, `STEM.csv`, `STEM.svg`.
    pub out: PathBuf,
    /// Add each point's wall times to its row (`compile_seconds`, `eval_seconds`): the rows
    /// are then no longer the same from run to run.
    pub timings: bool,
}

/// What a sweep did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub points: usize,
    /// Points whose rows were already in the results file (skipped).
    pub finished_before: usize,
    pub run: usize,
    /// Rows that record an error (a configuration that does not compile, say).
    pub failed: usize,
    pub compilations: usize,
    pub results: PathBuf,
}

impl Summary {
    pub fn json(&self) -> Value {
        let [jsonl, csv, svg] = results::paths(&self.results);
        json!({
            "points": self.points,
            "finished_before": self.finished_before,
            "run": self.run,
            "failed": self.failed,
            "compilations": self.compilations,
            "results": jsonl.display().to_string(),
            "csv": csv.display().to_string(),
            "svg": svg.display().to_string(),
        })
    }
}

/// The results stem a sweep file gets by default: the file's path without `.toml`.
pub fn default_stem(file: &Path) -> PathBuf {
    file.with_extension("")
}

/// The row of a point: its identity and axes, then its figures, or the error that stopped it.
fn row(p: &Point, figures: std::result::Result<Map<String, Value>, String>) -> Value {
    let mut r = Map::new();
    r.insert("index".into(), json!(p.index));
    r.insert("hash".into(), json!(p.hash));
    r.insert("compile".into(), json!(p.compile_key));
    r.insert("axes".into(), Value::Object(p.axes.clone()));
    match figures {
        Ok(m) => r.extend(m),
        Err(e) => {
            r.insert("error".into(), json!(e));
        }
    }
    Value::Object(r)
}

/// A user error (exit code 1) becomes the point's row; any other stops the sweep.
fn as_row_error(e: Error) -> Result<String> {
    if e.exit_code() == 1 {
        Ok(e.to_string())
    } else {
        Err(e)
    }
}

/// Compiles the configuration the `points` share once, then evaluates each point (in
/// parallel), giving each row to `on_row`. Returns the compilations made.
pub fn run_group(
    points: &[&Point],
    dir: &Path,
    data: &Dataset,
    timings: bool,
    on_row: &(dyn Fn(Value) -> Result<()> + Sync),
) -> Result<usize> {
    let Some(first) = points.first() else { return Ok(0) };
    let t0 = Instant::now();
    let compiled = match point::compile(&first.config, dir) {
        Ok(c) => c,
        Err(e) => {
            let msg = as_row_error(e)?;
            for p in points {
                on_row(row(p, Err(msg.clone())))?;
            }
            return Ok(1);
        }
    };
    let compile_seconds = t0.elapsed().as_secs_f64();
    let runner = cimc_sim::program::ProgramRunner::new(&compiled.program)?;
    points.par_iter().try_for_each(|p| {
        let t = Instant::now();
        let figures = match point::evaluate(&runner, &compiled.program, &p.config, data) {
            Ok(mut m) => {
                m.extend(compiled.cost.clone().unwrap_or_default());
                if timings {
                    m.insert("compile_seconds".into(), json!(compile_seconds));
                    m.insert("eval_seconds".into(), json!(t.elapsed().as_secs_f64()));
                }
                Ok(m)
            }
            Err(e) => Err(as_row_error(e)?),
        };
        on_row(row(p, figures))
    })?;
    Ok(compiled.compilations)
}

/// The points in groups that share a compilation, each group in point order, the groups in
/// the order of their first point.
pub fn groups<'a>(points: &[&'a Point]) -> Vec<Vec<&'a Point>> {
    let mut keys: Vec<&str> = Vec::new();
    let mut out: Vec<Vec<&Point>> = Vec::new();
    for p in points {
        match keys.iter().position(|k| *k == p.compile_key) {
            Some(i) => out[i].push(p),
            None => {
                keys.push(&p.compile_key);
                out.push(vec![p]);
            }
        }
    }
    out
}

/// Runs a sweep on this machine: the points not yet in the results file, in parallel over
/// rayon's pool, each row appended as it comes; then the results rewritten in point order with
/// their CSV and plot. `progress(done, total)` is told of every finished point.
pub fn run_local(
    spec: &SweepSpec,
    opts: &Options,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Summary> {
    let points = spec.points()?;
    let [jsonl, ..] = results::paths(&opts.out);
    if let Some(d) = jsonl.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let done: BTreeSet<String> = results::read_rows(&jsonl, true)?
        .iter()
        .filter_map(|r| r["hash"].as_str().map(String::from))
        .collect();
    let pending: Vec<&Point> = points.iter().filter(|p| !done.contains(&p.hash)).collect();
    let finished_before = points.len() - pending.len();
    let compilations = AtomicUsize::new(0);
    if !pending.is_empty() {
        let data = Dataset::load(&spec.base, &spec.dir)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&jsonl)
            .map_err(|e| Error::io(&jsonl, e))?;
        let file = Mutex::new(file);
        let total = points.len() as u64;
        let finished = AtomicU64::new(finished_before as u64);
        progress(finished_before as u64, total);
        let on_row = |r: Value| -> Result<()> {
            let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
            results::append(&mut f, &r).map_err(|e| Error::io(&jsonl, e))?;
            drop(f);
            progress(finished.fetch_add(1, Ordering::Relaxed) + 1, total);
            Ok(())
        };
        groups(&pending).par_iter().try_for_each(|g| {
            let n = run_group(g, &spec.dir, &data, opts.timings, &on_row)?;
            compilations.fetch_add(n, Ordering::Relaxed);
            Ok::<_, Error>(())
        })?;
    }
    let rows = finish(spec, &points, &opts.out)?;
    Ok(Summary {
        points: points.len(),
        finished_before,
        run: pending.len(),
        failed: rows.iter().filter(|r| r.get("error").is_some()).count(),
        compilations: compilations.into_inner(),
        results: opts.out.clone(),
    })
}

/// Rewrites the results file in point order (one row per point of the sweep; rows of points
/// the sweep no longer has are left out, with a note), and writes its CSV and plot. Returns
/// the rows.
pub fn finish(spec: &SweepSpec, points: &[Point], stem: &Path) -> Result<Vec<Value>> {
    let [jsonl, csv, svg] = results::paths(stem);
    let all = results::read_lines(&jsonl, false)?;
    let hashes: BTreeSet<String> = points.iter().map(|p| p.hash.clone()).collect();
    let n_all = all.len();
    let (rows, lines): (Vec<Value>, Vec<String>) =
        results::canonical_rows(all, &hashes).into_iter().unzip();
    if rows.len() < n_all {
        eprintln!(
            "note: {}: {} row(s) of points this sweep no longer has (or repeated) left out",
            jsonl.display(),
            n_all - rows.len()
        );
    }
    let mut text = String::new();
    for l in &lines {
        text += l;
        text.push('\n');
    }
    let mut outs = crate::output::Outputs::default();
    outs.write(&jsonl, text)?;
    outs.write(&csv, results::csv(spec, &rows))?;
    outs.write(&svg, results::svg(spec, &rows))?;
    outs.commit()?;
    Ok(rows)
}

/// One point's row, computed alone (`cimc sweep --run-point`: a Ray task, a Slurm array
/// element): the same row the local sweep writes for it.
pub fn run_point(point: &Point, dir: &Path, timings: bool) -> Result<Value> {
    let data = Dataset::load(&point.config, dir)?;
    let out = Mutex::new(None);
    run_group(&[point], dir, &data, timings, &|r| {
        *out.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        Ok(())
    })?;
    out.into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .ok_or_else(|| Error::Internal("a point gave no row".into()))
}
