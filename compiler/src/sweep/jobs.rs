//! A sweep as a Slurm job array: `cimc sweep --emit-jobs DIR` writes one configuration per
//! point (`DIR/points/I.json`, the line `--list-points` prints for it) and the array script
//! (`DIR/sweep.sbatch`, `#SBATCH --array=0-N`, element I running
//! `cimc sweep --run-point DIR/points/I.json --row-out DIR/rows/I.json`); `cimc sweep --merge
//! DIR` gathers the rows into the sweep's results file, CSV and plot, as a local run would.

use super::spec::{Point, SweepSpec};
use super::{finish, results, Summary};
use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| Error::io(p, e))
}

/// Writes the job directory of `spec`'s points; `cimc` is the binary the array runs, `out` the
/// results stem `--merge` writes. Returns the number of points.
pub fn emit_jobs(spec: &SweepSpec, dir: &Path, cimc: &Path, out: &Path) -> Result<usize> {
    let points = spec.points()?;
    if points.is_empty() {
        return Err(Error::Usage(format!("{}: the sweep has no points", spec.file.display())));
    }
    let dir = absolute(dir)?;
    for sub in ["points", "rows", "logs"] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    }
    let sweep_dir = absolute(&spec.dir)?;
    let mut outs = crate::output::Outputs::default();
    for (i, p) in points.iter().enumerate() {
        let line = serde_json::to_string(&p.to_json(&sweep_dir)).expect("invariant: JSON");
        outs.write(&dir.join("points").join(format!("{i}.json")), line + "\n")?;
    }
    let job = json!({
        "sweep": absolute(&spec.file)?.display().to_string(),
        "out": absolute(out)?.display().to_string(),
        "points": points.len(),
    });
    outs.write(&dir.join("job.json"), serde_json::to_string_pretty(&job).expect("JSON") + "\n")?;
    let q = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
    let script = format!(
        "#!/bin/bash\n\
         # A cimc sweep as a job array: {sweep}, {n} points (docs/sweeps.md).\n\
         # Submit: sbatch {script}     Then: cimc sweep --merge {dir}\n\
         #SBATCH --job-name=cimc-sweep\n\
         #SBATCH --array=0-{last}\n\
         #SBATCH --output={logs}/%a.out\n\
         set -euo pipefail\n\
         CIMC=\"${{CIMC:-{cimc}}}\"\n\
         I=\"${{SLURM_ARRAY_TASK_ID:?run this script with sbatch, or set SLURM_ARRAY_TASK_ID}}\"\n\
         exec \"$CIMC\" sweep --run-point {dir_q}/points/\"$I\".json --row-out {dir_q}/rows/\"$I\".json\n",
        sweep = spec.file.display(),
        n = points.len(),
        script = dir.join("sweep.sbatch").display(),
        dir = dir.display(),
        last = points.len() - 1,
        logs = dir.join("logs").display(),
        cimc = q(cimc),
        dir_q = q(&dir),
    );
    let sbatch = dir.join("sweep.sbatch");
    outs.write(&sbatch, script)?;
    outs.commit()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&sbatch, std::fs::Permissions::from_mode(0o755));
    }
    Ok(points.len())
}

/// Gathers the rows of a job directory into the results of its sweep (those already there
/// are kept; a row is recorded once), then writes them as a local run does. Returns the
/// summary and the number of points that have no row yet.
pub fn merge(dir: &Path) -> Result<(Summary, usize)> {
    let job_file = dir.join("job.json");
    let text = cimc_ir::files::read_text(&job_file).map_err(|e| Error::io(&job_file, e))?;
    let job: Value = serde_json::from_str(&text)
        .map_err(|e| Error::Usage(format!("{}: {e}", job_file.display())))?;
    let field = |k: &str| {
        job[k].as_str().map(PathBuf::from).ok_or_else(|| {
            Error::Usage(format!("{}: no '{k}' (not written by --emit-jobs?)", job_file.display()))
        })
    };
    let spec = SweepSpec::load(&field("sweep")?)?;
    let out = field("out")?;
    let points = spec.points()?;
    let [jsonl, ..] = results::paths(&out);
    let before = results::read_rows(&jsonl, true)?;
    let mut have: std::collections::BTreeSet<String> =
        before.iter().filter_map(|r| r["hash"].as_str().map(String::from)).collect();
    let finished_before = points.iter().filter(|p| have.contains(&p.hash)).count();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&jsonl)
        .map_err(|e| Error::io(&jsonl, e))?;
    let mut run = 0;
    for (i, p) in points.iter().enumerate() {
        let row_file = dir.join("rows").join(format!("{i}.json"));
        let Some(line) = read_row(&row_file, p)? else { continue };
        if have.insert(p.hash.clone()) {
            results::append_line(&mut file, &line).map_err(|e| Error::io(&jsonl, e))?;
            run += 1;
        }
    }
    drop(file);
    let rows = finish(&spec, &points, &out)?;
    let missing = points.len() - rows.len();
    let summary = Summary {
        points: points.len(),
        finished_before,
        run,
        failed: rows.iter().filter(|r| r.get("error").is_some()).count(),
        compilations: 0,
        results: out,
    };
    Ok((summary, missing))
}

/// The row an array element wrote for `p`, as its line (`None` when it has not run yet).
fn read_row(path: &Path, p: &Point) -> Result<Option<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let r: Value = serde_json::from_str(text.trim())
        .map_err(|e| Error::Usage(format!("{}: not a result row: {e}", path.display())))?;
    if r["hash"].as_str() != Some(p.hash.as_str()) {
        return Err(Error::Usage(format!(
            "{}: the row of point {} has hash {}, the point's is {} (the sweep file changed \
             since --emit-jobs?)",
            path.display(),
            p.index,
            r["hash"],
            p.hash
        )));
    }
    Ok(Some(text.trim().to_string()))
}
