//! Output files written whole or not at all.
//!
//! Every file a command writes goes first to a temporary file in the destination's folder and
//! is renamed over the destination only when the whole command has succeeded
//! ([`Outputs::commit`]). So a failure — a full disk, a killed process, a bad option found
//! late — never leaves a partial file where the previous good output was; two commands writing
//! one path leave one whole output (the last to finish), never a mixture; and outputs that
//! belong together (`.cir` and its `.data`) are both replaced or neither, up to a crash between
//! two renames at the very end.
//!
//! An output that is one of the command's inputs (the same file, through any path, link or
//! symbolic link) is refused before any work starts ([`Outputs::new`]): `cimc dump m.onnx -o
//! m.onnx` must not destroy the model it reads.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One output file staged for [`Outputs::commit`].
struct Staged {
    temp: PathBuf,
    dest: PathBuf,
}

/// The outputs of one command: checked against its inputs, written to temporary files, and
/// renamed into place together. Dropped without a commit, it removes its temporary files.
#[derive(Default)]
pub struct Outputs {
    /// Every destination this command will write (declared or written).
    dests: Vec<PathBuf>,
    staged: Vec<Staged>,
    /// Files to remove at commit (a stale `.data` beside a graph that no longer has one).
    stale: Vec<PathBuf>,
}

/// The identity of an existing file: (device, inode) where the platform has them, else its
/// canonical path.
#[derive(PartialEq)]
enum FileId {
    #[cfg(unix)]
    Inode(u64, u64),
    #[cfg_attr(unix, allow(dead_code))]
    Path(PathBuf),
}

fn file_id(path: &Path) -> Option<FileId> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileId::Inode(m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        path.canonicalize().ok().map(FileId::Path)
    }
}

impl Outputs {
    /// The outputs `dests` of a command reading `inputs` (absent options are `None`). Fails,
    /// before anything is read or written, when an output is one of the inputs or two outputs
    /// are the same file.
    pub fn new<'i, 'o>(
        inputs: impl IntoIterator<Item = &'i Path>,
        dests: impl IntoIterator<Item = &'o Path>,
    ) -> Result<Outputs> {
        let inputs: Vec<(&Path, FileId)> =
            inputs.into_iter().filter_map(|p| file_id(p).map(|id| (p, id))).collect();
        let mut out = Outputs::default();
        for dest in dests {
            if let Some(id) = file_id(dest) {
                if let Some((input, _)) = inputs.iter().find(|(_, i)| *i == id) {
                    return Err(Error::Usage(format!(
                        "the output '{}' is the input '{}': refusing to overwrite what cimc reads",
                        dest.display(),
                        input.display()
                    )));
                }
            }
            out.declare(dest)?;
        }
        Ok(out)
    }

    /// Adds `dest` to the outputs; fails when it is already one of them.
    pub fn declare(&mut self, dest: &Path) -> Result<()> {
        let clash = self.dests.iter().find(|d| {
            *d == dest || file_id(d).is_some_and(|i| file_id(dest).is_some_and(|j| i == j))
        });
        if let Some(d) = clash {
            return Err(Error::Usage(format!(
                "two outputs are the same file: '{}' and '{}'",
                d.display(),
                dest.display()
            )));
        }
        self.dests.push(dest.to_path_buf());
        Ok(())
    }

    /// Writes `dest` through a buffer with `write`, into a temporary file until the commit.
    pub fn write_with(
        &mut self,
        dest: &Path,
        write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
    ) -> Result<()> {
        if !self.dests.iter().any(|d| d == dest) {
            self.declare(dest)?;
        }
        // A device or FIFO (`-o /dev/null`, `/dev/stdout`) is written as it is: renaming a
        // file over it would replace the device itself.
        if std::fs::metadata(dest).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(dest)
                .map_err(|e| Error::io(dest, e))?;
            let mut w = std::io::BufWriter::new(file);
            return write(&mut w).and_then(|()| w.flush()).map_err(|e| Error::io(dest, e));
        }
        let temp = temp_path(dest, self.staged.len());
        // Staged before the file exists, so a failure below still removes whatever was made.
        self.staged.push(Staged { temp: temp.clone(), dest: dest.to_path_buf() });
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| Error::io(dest, e))?;
        let mut w = std::io::BufWriter::new(file);
        // No fsync: the renames guard against cimc failing, not against power loss, and a
        // sync per output would cost more than many commands' whole work.
        write(&mut w).and_then(|()| w.flush()).map_err(|e| Error::io(dest, e))
    }

    /// Writes `bytes` to `dest` (see [`Outputs::write_with`]).
    pub fn write(&mut self, dest: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
        self.write_with(dest, |w| w.write_all(bytes.as_ref()))
    }

    /// Removes `path` at the commit, if it exists (an output of an earlier run that this one
    /// replaces with nothing).
    pub fn remove_at_commit(&mut self, path: &Path) {
        self.stale.push(path.to_path_buf());
    }

    /// Renames every staged file into place, in the order they were written, then removes the
    /// stale files.
    pub fn commit(mut self) -> Result<()> {
        // A model rewritten while it was read may have given a mix of two versions.
        crate::onnx::check_unchanged()?;
        for s in std::mem::take(&mut self.staged) {
            if let Err(e) = std::fs::rename(&s.temp, &s.dest) {
                let _ = std::fs::remove_file(&s.temp);
                return Err(Error::io(&s.dest, e));
            }
        }
        for p in std::mem::take(&mut self.stale) {
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&p, e)),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Writes one file whole or not at all (an [`Outputs`] of one file, committed at once).
pub fn write_whole(dest: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    let mut outs = Outputs::default();
    outs.write(dest, bytes)?;
    outs.commit()
}

impl Drop for Outputs {
    fn drop(&mut self) {
        for s in &self.staged {
            let _ = std::fs::remove_file(&s.temp);
        }
    }
}

/// `.<name>.<pid>-<n>.cimc-tmp` beside `dest`: the same folder (so the rename is atomic, on
/// one file system), hidden, and unique per process and output.
fn temp_path(dest: &Path, n: usize) -> PathBuf {
    let name = dest.file_name().map_or_else(|| "out".into(), |n| n.to_string_lossy());
    let temp = format!(".{name}.{}-{n}.cimc-tmp", std::process::id());
    match dest.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(temp),
        _ => PathBuf::from(temp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cimc_out_{tag}_{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("invariant: the temp dir is writable");
        dir
    }

    #[test]
    fn outputs_appear_only_at_the_commit_and_a_failure_leaves_the_old_file() {
        let dir = temp_dir("commit");
        let a = dir.join("a.txt");
        std::fs::write(&a, "old").expect("invariant: writable");
        let mut out = Outputs::new([], [a.as_path()]).expect("no clash");
        out.write(&a, "new").expect("written");
        assert_eq!(std::fs::read_to_string(&a).expect("readable"), "old");
        out.commit().expect("committed");
        assert_eq!(std::fs::read_to_string(&a).expect("readable"), "new");

        let mut out = Outputs::new([], [a.as_path()]).expect("no clash");
        let e = out
            .write_with(&a, |w| {
                w.write_all(b"half")?;
                Err(std::io::Error::other("disk full"))
            })
            .expect_err("the write fails");
        assert!(e.to_string().contains("a.txt") && e.to_string().contains("disk full"), "{e}");
        drop(out);
        assert_eq!(std::fs::read_to_string(&a).expect("readable"), "new");
        let left: Vec<_> = std::fs::read_dir(&dir).expect("listable").collect();
        assert_eq!(left.len(), 1, "the temporary file is gone");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn an_output_that_is_an_input_is_refused_through_any_path() {
        let dir = temp_dir("same");
        let m = dir.join("m.onnx");
        std::fs::write(&m, "model").expect("invariant: writable");
        let e = Outputs::new([m.as_path()], [m.as_path()]).err().expect("refused");
        assert!(e.to_string().contains("is the input"), "{e}");
        let other = dir.join(".").join("m.onnx");
        assert!(Outputs::new([m.as_path()], [other.as_path()]).is_err(), "another spelling");
        #[cfg(unix)]
        {
            let link = dir.join("link.onnx");
            std::os::unix::fs::symlink(&m, &link).expect("invariant: symlinks work here");
            assert!(Outputs::new([m.as_path()], [link.as_path()]).is_err(), "a symbolic link");
        }
        let x = dir.join("x");
        let e = Outputs::new([], [x.as_path(), x.as_path()]).err().expect("twice");
        assert!(e.to_string().contains("same file"), "{e}");
        assert_eq!(std::fs::read_to_string(&m).expect("readable"), "model");
        std::fs::remove_dir_all(&dir).ok();
    }
}
