//! Reading the files a user names: regular files only, their size known before a byte is read.
//!
//! A FIFO blocks at `open` until a writer comes, and a device such as `/dev/zero` never ends:
//! either would hang cimc or exhaust its memory. So a path is first examined without opening it
//! (`stat`), refused unless it is a regular file, and read only up to its size and a cap.

use std::io::Read;
use std::path::Path;

/// Caps for text inputs (targets, noise files, per-layer bit widths, assembly): far above any
/// real one.
pub const MAX_TEXT_BYTES: u64 = 256 << 20;

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg)
}

/// The length of the regular file at `path`, examined without opening it; an error for
/// anything else (a directory, a FIFO, a device, a socket).
pub fn regular_file_len(path: &Path) -> std::io::Result<u64> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        let kind = if meta.is_dir() { "a directory" } else { "not a regular file" };
        return Err(invalid(format!("{kind}: only regular files are read")));
    }
    Ok(meta.len())
}

/// The bytes of the regular file `path`, refused above `max_bytes`; a file that grows while
/// it is read is refused too (it is read to its length at the start plus one byte).
pub fn read_regular(path: &Path, max_bytes: u64) -> std::io::Result<Vec<u8>> {
    let len = regular_file_len(path)?;
    if len > max_bytes {
        return Err(invalid(format!("{len} bytes, more than the limit of {max_bytes}")));
    }
    let mut buf = Vec::with_capacity(len as usize);
    std::fs::File::open(path)?.take(len + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 != len {
        return Err(invalid(format!(
            "the file changed while it was read ({len} bytes when examined, {} read)",
            buf.len()
        )));
    }
    Ok(buf)
}

/// [`read_regular`] of a UTF-8 text file of at most [`MAX_TEXT_BYTES`].
pub fn read_text(path: &Path) -> std::io::Result<String> {
    String::from_utf8(read_regular(path, MAX_TEXT_BYTES)?)
        .map_err(|_| invalid("not UTF-8 text".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_regular_files_and_refuses_everything_else() {
        let dir = std::env::temp_dir().join(format!("cimc_ir_files_{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("invariant: the temp dir is writable");
        let path = dir.join("f.txt");
        std::fs::write(&path, "hello").expect("invariant: the temp dir is writable");
        assert_eq!(read_text(&path).expect("a text file"), "hello");
        let cap = read_regular(&path, 4).expect_err("over the cap");
        assert!(cap.to_string().contains("limit of 4"), "{cap}");
        let d = read_regular(&dir, 1 << 20).expect_err("a directory");
        assert!(d.to_string().contains("a directory"), "{d}");
        #[cfg(unix)]
        {
            let z = read_regular(Path::new("/dev/zero"), u64::MAX).expect_err("a device");
            assert!(z.to_string().contains("not a regular file"), "{z}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A FIFO nobody writes to would block `open` forever: it is refused before opening.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = std::env::temp_dir().join(format!("cimc_ir_fifo_{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("invariant: the temp dir is writable");
        let fifo = dir.join("p");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let e = read_regular(&fifo, 1 << 20).expect_err("a FIFO");
            assert!(e.to_string().contains("not a regular file"), "{e}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
