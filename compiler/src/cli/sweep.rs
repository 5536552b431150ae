//! `cimc sweep sweep.toml [-o STEM] [--json]`: a design-space sweep on this machine (the work
//! is `cimc::sweep`'s, `docs/sweeps.md`); `--list-points` and `--run-point` for other drivers
//! (the Ray driver `python/cimc/sweep.py`), `--emit-jobs DIR` / `--merge DIR` for a Slurm job
//! array, `--ray ADDRESS` to hand the sweep to the Ray driver.

use super::print_json;
use cimc::sweep::spec::{Point, SweepSpec};
use cimc::sweep::{self, jobs, results, Options};
use cimc::{Error, Result};
use clap::{ArgGroup, Args};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("mode").args(["list_points", "run_point", "emit_jobs", "merge", "ray"])))]
pub struct SweepArgs {
    /// The sweep file (TOML; docs/sweeps.md).
    #[arg(required_unless_present_any = ["run_point", "merge"])]
    sweep: Option<PathBuf>,
    /// The results stem: writes STEM.jsonl, STEM.csv and STEM.svg (default: the sweep file's
    /// path without .toml).
    #[arg(short, long, value_name = "STEM")]
    out: Option<PathBuf>,
    /// Print one JSON object (the summary) instead of the table; no progress bar.
    #[arg(long)]
    json: bool,
    /// Record each point's wall times in its row (the rows then differ from run to run).
    #[arg(long)]
    timings: bool,
    /// Threads (default: every core).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Print every point as one JSON line (for drivers of other machines) and stop.
    #[arg(long = "list-points")]
    list_points: bool,
    /// Compute one point (a line of --list-points, from this file or `-` for stdin) and print
    /// its row as one JSON line.
    #[arg(long = "run-point", value_name = "FILE")]
    run_point: Option<PathBuf>,
    /// With --run-point: write the row to this file (whole or not at all) instead of stdout;
    /// a row already there for the same point is kept and the point not run again.
    #[arg(long = "row-out", value_name = "FILE", requires = "run_point")]
    row_out: Option<PathBuf>,
    /// Write a Slurm job array for the sweep into DIR (one configuration per point and
    /// sweep.sbatch), and stop.
    #[arg(long = "emit-jobs", value_name = "DIR")]
    emit_jobs: Option<PathBuf>,
    /// Gather the rows of a job directory (--emit-jobs) into the sweep's results.
    #[arg(long, value_name = "DIR")]
    merge: Option<PathBuf>,
    /// Run the points as tasks on the Ray cluster at ADDRESS: runs the Ray driver
    /// python/cimc/sweep.py (python from $CIMC_PYTHON, default python3; docs/sweeps.md).
    #[arg(long, value_name = "ADDRESS")]
    ray: Option<String>,
}

pub fn run(a: SweepArgs) -> Result<()> {
    if let Some(n) = a.jobs {
        super::at_most("--jobs", n, 4096)?;
        if n == 0 {
            return Err(Error::Usage("--jobs must be at least 1".into()));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| Error::Internal(format!("thread pool: {e}")))?;
    }
    if let Some(p) = &a.run_point {
        return run_point(p, a.row_out.as_deref(), a.timings);
    }
    if let Some(dir) = &a.merge {
        let (summary, missing) = jobs::merge(dir)?;
        return report(&a, summary, missing);
    }
    let file = a.sweep.as_deref().expect("invariant: clap requires the sweep file here");
    let spec = SweepSpec::load(file)?;
    let out = a.out.clone().unwrap_or_else(|| sweep::default_stem(file));
    if a.list_points {
        let dir = std::path::absolute(&spec.dir).map_err(|e| Error::io(&spec.dir, e))?;
        for p in spec.points()? {
            println!("{}", serde_json::to_string(&p.to_json(&dir)).expect("invariant: JSON"));
        }
        return Ok(());
    }
    if let Some(dir) = &a.emit_jobs {
        let exe = std::env::current_exe().map_err(|e| Error::io(Path::new("cimc"), e))?;
        let n = jobs::emit_jobs(&spec, dir, &exe, &out)?;
        let sbatch = dir.join("sweep.sbatch");
        if a.json {
            print_json(&serde_json::json!({"points": n, "script": sbatch.display().to_string()}));
        } else {
            println!("{n} points: sbatch {}", sbatch.display());
            println!("then: cimc sweep --merge {}", dir.display());
        }
        return Ok(());
    }
    if let Some(address) = &a.ray {
        return ray(address, file, &out, a.json);
    }
    let pb = super::progress(0, a.json);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} points  {elapsed} (eta {eta})",
        )
        .expect("invariant: the template is valid"),
    );
    let opts = Options { out, timings: a.timings };
    let summary = sweep::run_local(&spec, &opts, &|done, total| {
        pb.set_length(total);
        pb.set_position(done);
    })?;
    pb.finish_and_clear();
    report(&a, summary, 0)
}

/// The summary (and unless `--json` the table).
fn report(a: &SweepArgs, summary: sweep::Summary, missing: usize) -> Result<()> {
    let mut j = summary.json();
    j["missing"] = serde_json::json!(missing);
    if a.json {
        print_json(&j);
    } else {
        let [jsonl, csv, svg] = results::paths(&summary.results);
        let spec_file = match &a.merge {
            Some(dir) => {
                let job = cimc_ir::files::read_text(&dir.join("job.json")).unwrap_or_default();
                let v: serde_json::Value = serde_json::from_str(&job).unwrap_or_default();
                v["sweep"].as_str().map(PathBuf::from)
            }
            None => a.sweep.clone(),
        };
        if let Some(f) = spec_file {
            let spec = SweepSpec::load(&f)?;
            print!("{}", results::table(&spec, &results::read_rows(&jsonl, false)?));
        }
        println!(
            "{} points: {} finished before, {} run ({} with an error), {} compilation(s){}",
            summary.points,
            summary.finished_before,
            summary.run,
            summary.failed,
            summary.compilations,
            if missing > 0 { format!(", {missing} missing") } else { String::new() }
        );
        println!("results: {}, {}, {}", jsonl.display(), csv.display(), svg.display());
    }
    if missing > 0 {
        return Err(Error::Usage(format!(
            "{missing} point(s) have no row yet: run their array elements again, then --merge"
        )));
    }
    Ok(())
}

/// `--run-point`: one point's row, on stdout or into `row_out`.
fn run_point(p: &Path, row_out: Option<&Path>, timings: bool) -> Result<()> {
    let text = if p == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).map_err(|e| Error::io(p, e))?
    } else {
        cimc_ir::files::read_text(p).map_err(|e| Error::io(p, e))?
    };
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .map_err(|e| Error::Usage(format!("{}: not a sweep point: {e}", p.display())))?;
    let (point, dir) = Point::from_json(&v, &p.display().to_string())?;
    if let Some(out) = row_out {
        if let Ok(old) = std::fs::read_to_string(out) {
            let old: serde_json::Value = serde_json::from_str(old.trim()).unwrap_or_default();
            if old["hash"].as_str() == Some(point.hash.as_str()) {
                return Ok(());
            }
        }
    }
    let row = sweep::run_point(&point, &dir, timings)?;
    let line = serde_json::to_string(&row).expect("invariant: rows serialize") + "\n";
    match row_out {
        Some(out) => cimc::output::write_whole(out, line),
        None => {
            print!("{line}");
            Ok(())
        }
    }
}

/// `--ray ADDRESS`: the Ray driver `python/cimc/sweep.py` with this binary for its tasks. The
/// script of the repository this binary was built in (`target/<profile>/cimc`) is run by path
/// (it imports no other cimc module, so the native package need not be built); elsewhere
/// `python -m cimc.sweep` from an installed package. Python is `$CIMC_PYTHON`, else python3.
fn ray(address: &str, file: &Path, out: &Path, json: bool) -> Result<()> {
    let exe = std::env::current_exe().map_err(|e| Error::io(Path::new("cimc"), e))?;
    let python = std::env::var("CIMC_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut cmd = std::process::Command::new(&python);
    let script = exe.ancestors().nth(3).map(|r| r.join("python").join("cimc").join("sweep.py"));
    match script.filter(|s| s.is_file()) {
        Some(s) => cmd.arg(s),
        None => cmd.args(["-m", "cimc.sweep"]),
    };
    cmd.args(["--address", address, "--cimc"]).arg(&exe).arg("--out").arg(out).arg(file);
    if json {
        cmd.arg("--json");
    }
    let status = cmd.status().map_err(|e| {
        Error::Usage(format!("--ray: cannot run the Ray driver with {python}: {e}"))
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Usage(format!("--ray: the Ray driver failed ({status})")))
    }
}
