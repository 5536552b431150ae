//! Memory-mapped model files whose large tensors give their pages back when dropped.
//!
//! The importer hands weights over as slices of the file's memory map (no copy, `stack.md` §A).
//! Pages of a file mapping count in the process's resident memory once read, for as long as the
//! mapping lives — and the mapping lives while any tensor still borrows it. After `fold-bn`
//! has replaced every folded weight with a new tensor, the original weights are no longer
//! needed, but a few small tensors (biases, the classifier) still keep the map alive, so the
//! model's weights would stay resident twice (`docs/compile-memory.md`).
//!
//! So every large tensor is its own owner of the bytes it borrows ([`MappedFile::tensor_bytes`]):
//! when its last reference is dropped, the whole pages strictly inside its byte range are
//! released with `madvise(MADV_DONTNEED)`. The mapping is a read-only shared mapping of a file:
//! releasing its pages only drops them from this process's page tables — the page cache keeps
//! them and a later read of the same bytes (another tensor on a shared boundary page, or the
//! same range imported twice) faults them in again with the file's contents, unchanged. No
//! byte anyone can read ever changes.

use bytes::Bytes;
use std::path::Path;
use std::sync::Arc;

/// Tensors smaller than this stay plain slices of the whole map (they span few whole pages).
pub const RELEASE_MIN_BYTES: usize = 64 * 1024;

/// The page size assumed when releasing (Linux x86-64 and most others). On a system with larger
/// pages an unaligned release is refused by the kernel, which only leaves the pages resident.
const PAGE: usize = 4096;

/// A read-only memory map of a whole file, shared by the tensors that borrow from it.
#[derive(Clone)]
pub struct MappedFile {
    map: Arc<memmap2::Mmap>,
}

/// The whole map as the owner of a [`Bytes`].
struct Whole(Arc<memmap2::Mmap>);

impl AsRef<[u8]> for Whole {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// One tensor's bytes of the map; releases its whole pages when dropped.
struct TensorPages {
    map: Arc<memmap2::Mmap>,
    offset: usize,
    len: usize,
}

impl AsRef<[u8]> for TensorPages {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.offset..self.offset + self.len]
    }
}

impl Drop for TensorPages {
    fn drop(&mut self) {
        let start = self.offset.div_ceil(PAGE) * PAGE;
        let end = (self.offset + self.len) / PAGE * PAGE;
        if end > start {
            // SAFETY: a read-only shared file mapping (`Mmap::map`): MADV_DONTNEED drops the
            // pages from the page tables and a later access reads the file again, so the bytes
            // any remaining borrower sees stay the file's (see the module doc). The range lies
            // inside the map (it is inside this tensor's range). A failure (an unexpected page
            // size) only leaves the pages resident, so it is ignored.
            let _ = unsafe {
                self.map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    start,
                    end - start,
                )
            };
        }
    }
}

/// What identifies one state of a file: a rewrite changes its modification or change time
/// (or its size); a replacement by rename changes its inode, but leaves the mapped one intact.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    #[cfg(unix)]
    changed: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            changed: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// Every file mapped by this process, with its stamp when it was mapped.
static MAPPED: std::sync::Mutex<Vec<(std::path::PathBuf, Stamp)>> =
    std::sync::Mutex::new(Vec::new());

/// Whether mapped files are remembered ([`track_changes`]).
static TRACKING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Remembers every file mapped from now on, for [`changed_files`]. The `cimc` binary calls it
/// first: one process, one command. A long-lived user of the library (which may map a file,
/// see it edited, and import it again) does not, and its outputs are never refused for it.
pub fn track_changes() {
    TRACKING.store(true, std::sync::atomic::Ordering::SeqCst);
}

fn remember(path: &Path, meta: &std::fs::Metadata) {
    if !TRACKING.load(std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    crate::guard::name_mapped_file(path);
    if let Ok(mut m) = MAPPED.lock() {
        m.push((path.to_path_buf(), Stamp::of(meta)));
    }
}

/// The files mapped by this process that changed since they were mapped (rewritten, truncated
/// or gone): the bytes read from them may be a mix of two versions.
pub fn changed_files() -> Vec<std::path::PathBuf> {
    let Ok(m) = MAPPED.lock() else { return Vec::new() };
    m.iter()
        .filter(|(p, stamp)| !std::fs::metadata(p).is_ok_and(|now| Stamp::of(&now) == *stamp))
        .map(|(p, _)| p.clone())
        .collect()
}

/// An error naming the first file of [`changed_files`], if any changed.
pub fn check_unchanged() -> crate::Result<()> {
    match changed_files().first() {
        Some(p) => Err(crate::Error::Usage(format!(
            "{}: the file changed while cimc was reading it; nothing was written (run again)",
            p.display()
        ))),
        None => Ok(()),
    }
}

impl MappedFile {
    /// Maps `path` read-only; `None` for an empty file (which cannot be mapped).
    pub fn open(path: &Path) -> std::io::Result<Option<MappedFile>> {
        // Examined before it is opened: opening a FIFO would block (`cimc_ir::files`).
        cimc_ir::files::regular_file_len(path)?;
        let file = std::fs::File::open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        if meta.len() == 0 {
            return Ok(None);
        }
        // SAFETY: the mapping is read-only. A file truncated or rewritten by another process
        // while the graph borrows its bytes raises SIGBUS on the next read of a lost page: the
        // `cimc` binary turns that signal into a one-line error and exit 1 (`cimc::guard`), and
        // refuses an output that is one of its inputs, so cimc itself never rewrites a mapped
        // model. A file rewritten in place to as many bytes or more changes the bytes under
        // the graph instead: the file is remembered ([`changed_files`]) and checked before any
        // output is committed and before an internal error is reported, which then become
        // one exit-1 error naming it. Mapping instead of reading keeps import at well under a millisecond for
        // ResNet-18 (a read and copy of its 47 MB costs ~45 ms of CPU, measured).
        let map = unsafe { memmap2::Mmap::map(&file)? };
        remember(path, &meta);
        Ok(Some(MappedFile { map: Arc::new(map) }))
    }

    /// The whole file.
    pub fn bytes(&self) -> Bytes {
        Bytes::from_owner(Whole(self.map.clone()))
    }

    /// `slice` (a part of [`MappedFile::bytes`]) as bytes of its own, whose whole pages leave
    /// the resident memory when the last reference to them is dropped. `None` when `slice` is
    /// smaller than [`RELEASE_MIN_BYTES`] or does not lie in this map (then use it as it is).
    pub fn tensor_bytes(&self, slice: &Bytes) -> Option<Bytes> {
        if slice.len() < RELEASE_MIN_BYTES {
            return None;
        }
        let base = self.map.as_ptr() as usize;
        let offset = (slice.as_ptr() as usize).checked_sub(base)?;
        let end = offset.checked_add(slice.len())?;
        if end > self.map.len() {
            return None;
        }
        Some(Bytes::from_owner(TensorPages { map: self.map.clone(), offset, len: slice.len() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_bytes_are_the_same_bytes_and_survive_release() {
        let dir = std::env::temp_dir().join(format!("cimc_mapped_{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("the temp dir is writable");
        let path = dir.join("f.bin");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).expect("the temp dir is writable");
        let m = MappedFile::open(&path).expect("mapped").expect("not empty");
        let whole = m.bytes();
        let a = whole.slice(1000..150_000);
        let b = whole.slice(150_000..299_999);
        let ta = m.tensor_bytes(&a).expect("large and inside");
        let tb = m.tensor_bytes(&b).expect("large and inside");
        assert_eq!(&ta[..], &data[1000..150_000]);
        drop(ta);
        // The released pages read back from the file, unchanged.
        assert_eq!(&a[..], &data[1000..150_000]);
        assert_eq!(&tb[..], &data[150_000..299_999]);
        assert!(m.tensor_bytes(&whole.slice(0..10)).is_none(), "small slices stay as they are");
        assert!(m.tensor_bytes(&Bytes::from(vec![0u8; 100_000])).is_none(), "not in the map");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// The resident KiB of the mapping that starts at `addr` (`/proc/self/smaps`): the pages of
    /// this one map, whatever other threads of the test process allocate.
    #[cfg(target_os = "linux")]
    fn mapping_rss_kib(addr: usize) -> Option<u64> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut lines = smaps.lines();
        while let Some(l) = lines.next() {
            let start = l.split('-').next().and_then(|h| usize::from_str_radix(h, 16).ok());
            if start == Some(addr) && l.contains('-') {
                for l in lines.by_ref() {
                    if let Some(rest) = l.strip_prefix("Rss:") {
                        return rest.trim().trim_end_matches("kB").trim().parse().ok();
                    }
                }
            }
        }
        None
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn dropping_a_tensor_releases_its_pages() {
        let dir = std::env::temp_dir().join(format!("cimc_mapped_rss_{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("the temp dir is writable");
        let path = dir.join("f.bin");
        let data: Vec<u8> = (0..4_000_000u32).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &data).expect("the temp dir is writable");
        let m = MappedFile::open(&path).expect("mapped").expect("not empty");
        let addr = m.map.as_ptr() as usize;
        let whole = m.bytes();
        let a = m.tensor_bytes(&whole.slice(100..2_000_000)).expect("large");
        let b = m.tensor_bytes(&whole.slice(2_000_000..4_000_000)).expect("large");
        drop(whole);
        let sum: u64 = a.iter().chain(b.iter()).map(|&v| v as u64).sum();
        assert!(sum > 0);
        let read = mapping_rss_kib(addr).expect("the mapping is listed");
        drop(a);
        let after = mapping_rss_kib(addr).expect("the mapping is listed");
        // a's interior pages (~1,950 KiB) left; b's (as many) stayed. Margins for pages the
        // kernel maps around a fault or leaves out.
        assert!(read.saturating_sub(after) >= 1500, "{read} KiB read, {after} KiB after");
        assert!(after >= 1000, "b's pages are still resident: {after} KiB");
        assert_eq!(&b[..], &data[2_000_000..]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
