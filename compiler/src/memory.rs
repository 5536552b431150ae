//! How the process gives freed memory back to the system, and how it maps large blocks.
//!
//! glibc's allocator serves a large allocation with its own mapping and unmaps it when freed —
//! but after the first such free it raises that threshold to the freed size (up to 32 MB), so
//! later blocks of a model's weight size come from the heap, and a heap rarely shrinks: a
//! compilation that frees the float weights after quantizing them would keep them resident to
//! the end (`docs/compile-memory.md`: 143 MB instead of 116 MB for ResNet-18).
//! Fixing the threshold keeps every block of at least [`MMAP_THRESHOLD`] bytes in a mapping of
//! its own, returned to the system as soon as it is freed. Smaller blocks are unaffected.
//!
//! Every such mapping is touched afresh, one page fault per 4 KiB: a compilation makes each
//! weight-sized block several times over (float, codes, program weights, bit planes, stream),
//! and the faults were a sixth of ResNet-18's compile time. [`Allocator`], the allocator of the
//! `cimc` binary and of the bench, therefore maps blocks of at least [`HUGE_BLOCK`] bytes
//! itself once [`release_freed_memory_promptly`] ran: aligned to 2 MiB and advised for
//! transparent huge pages (`MADV_HUGEPAGE`), so each whole 2 MiB of the block faults once, and
//! unmapped when freed as before (`docs/performance.md`, "Compile time").
//!
//! Fresh pages are zeroed by the kernel as they fault, and on this project's machines that
//! zeroing was a fifth of ResNet-18's compile: its passes map about 640 MB afresh over the
//! compile, mostly blocks of the same few sizes freed and made again layer after layer (the
//! calibration runners' packed weights, the bit planes, the codes). So [`Allocator`] maps
//! every block of at least [`MMAP_THRESHOLD`] bytes itself, and keeps a few freed blocks
//! mapped ([`SPARE_SLOTS`], at most [`SPARE_LIMIT`] bytes) to serve a later block of about
//! their size without faults. They add at most [`SPARE_LIMIT`] bytes to the peak, and while
//! large blocks are being made at most [`SPARE_AFTER_MISS`]: a block that no spare serves is
//! mapped only after the spares are cut down to that many bytes, and a spare serving a smaller
//! block gives its tail back first (ResNet-18's compile: a peak 1–3 MB higher).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

/// At most this many freed blocks are kept mapped for reuse.
pub const SPARE_SLOTS: usize = 32;

/// At most this many bytes of freed blocks are kept mapped for reuse.
pub const SPARE_LIMIT: usize = 32 << 20;

/// Before a block no spare serves is mapped afresh, the spares are cut down to this many bytes
/// (the oldest go first).
pub const SPARE_AFTER_MISS: usize = 8 << 20;

/// Blocks of at least this many bytes get a mapping of their own (glibc's initial default).
pub const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Blocks of at least [`MMAP_THRESHOLD`] bytes are mapped by [`Allocator`] on boundaries of
/// this many bytes (once [`release_freed_memory_promptly`] ran), and those of at least this
/// many advised for transparent huge pages: one huge page.
pub const HUGE_BLOCK: usize = 2 << 20;

/// Whether [`Allocator`] maps large blocks itself (set once, before other threads start).
static LARGE_MAPPINGS: AtomicBool = AtomicBool::new(false);

/// Makes the allocator return large freed blocks to the system at once (glibc; elsewhere a
/// no-op), and [`Allocator`] map blocks of [`MMAP_THRESHOLD`] bytes and more itself, those of
/// [`HUGE_BLOCK`] bytes and more on huge pages, with a few freed ones kept for reuse (Linux).
/// Call once, early in `main`, before other threads start; `cimc` does so for `compile` only,
/// since the interpreters would pay page faults for fresh mappings on every run.
pub fn release_freed_memory_promptly() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        /// glibc's `M_MMAP_THRESHOLD` (malloc.h).
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt is glibc's documented tuning call; it only changes allocator
        // parameters and is called before other threads allocate. A failure (0) leaves glibc's
        // defaults, which only costs memory.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
    }
    #[cfg(target_os = "linux")]
    LARGE_MAPPINGS.store(true, Ordering::SeqCst);
}

/// The system allocator, with blocks of at least [`MMAP_THRESHOLD`] bytes in mappings of their
/// own on 2 MiB boundaries (those of [`HUGE_BLOCK`] bytes and more advised for transparent huge
/// pages) and a few freed ones kept for reuse, once [`release_freed_memory_promptly`] ran
/// (Linux; elsewhere the system allocator alone).
pub struct Allocator;

#[cfg(target_os = "linux")]
mod huge {
    use super::{HUGE_BLOCK, SPARE_AFTER_MISS, SPARE_LIMIT, SPARE_SLOTS};
    use std::sync::Mutex;

    extern "C" {
        fn mmap(addr: *mut u8, len: usize, prot: i32, flags: i32, fd: i32, off: i64) -> *mut u8;
        fn munmap(addr: *mut u8, len: usize) -> i32;
        fn madvise(addr: *mut u8, len: usize, advice: i32) -> i32;
    }
    // Linux's values (the same on every architecture Rust supports there).
    const PROT_READ: i32 = 1;
    const PROT_WRITE: i32 = 2;
    const MAP_PRIVATE: i32 = 2;
    const MAP_ANONYMOUS: i32 = 0x20;
    const MADV_HUGEPAGE: i32 = 14;
    const PAGE: usize = 4096;

    /// The bytes a block of `size` maps: whole pages.
    pub(super) fn mapped_len(size: usize) -> usize {
        size.div_ceil(PAGE) * PAGE
    }

    /// Freed blocks kept mapped (address, mapped length), oldest first, and their bytes.
    struct Spares {
        blocks: [(usize, usize); SPARE_SLOTS],
        count: usize,
        bytes: usize,
    }

    /// Blocks evicted from [`Spares`], unmapped once the lock is released.
    type Evicted = [(usize, usize); SPARE_SLOTS + 1];

    impl Spares {
        /// Removes and returns the block at `i`.
        fn remove(&mut self, i: usize) -> (usize, usize) {
            let b = self.blocks[i];
            self.blocks.copy_within(i + 1..self.count, i);
            self.count -= 1;
            self.bytes -= b.1;
            b
        }

        /// The smallest spare of `len` to `2·len` bytes, taken out.
        fn take(&mut self, len: usize) -> Option<(usize, usize)> {
            let fits = self.blocks[..self.count].iter().enumerate();
            let fits = fits.filter(|(_, b)| b.1 >= len && b.1 / 2 <= len);
            let best = fits.min_by_key(|(_, b)| b.1).map(|(i, _)| i)?;
            Some(self.remove(best))
        }

        /// Evicts the oldest spares into `out` until at most `keep` bytes remain; returns how
        /// many it evicted.
        fn cut_to(&mut self, keep: usize, out: &mut Evicted) -> usize {
            let mut n = 0;
            while self.bytes > keep && self.count > 0 {
                out[n] = self.remove(0);
                n += 1;
            }
            n
        }
    }

    static SPARES: Mutex<Spares> =
        Mutex::new(Spares { blocks: [(0, 0); SPARE_SLOTS], count: 0, bytes: 0 });

    /// The spares, whatever a panicking holder left (every update leaves them consistent).
    fn spares() -> std::sync::MutexGuard<'static, Spares> {
        SPARES.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Unmaps the first `n` blocks of `evicted`.
    ///
    /// # Safety
    /// Each is a whole mapping of [`fresh`] (or its head), used by nothing.
    unsafe fn unmap_all(evicted: &Evicted, n: usize) {
        for &(addr, len) in &evicted[..n] {
            // SAFETY: the caller's contract.
            unsafe {
                munmap(addr as *mut u8, len);
            }
        }
    }

    /// A block of `size` bytes starting on a [`HUGE_BLOCK`] boundary, or null: a spare of about
    /// its size (zeroed first when `zeroed`), else a fresh mapping (zeroed by the kernel).
    ///
    /// # Safety
    /// The caller gives the block back with [`unmap`] and the same `size`.
    pub(super) unsafe fn map(size: usize, zeroed: bool) -> *mut u8 {
        let len = mapped_len(size);
        let mut evicted: Evicted = [(0, 0); SPARE_SLOTS + 1];
        let (spare, n) = {
            let mut sp = spares();
            match sp.take(len) {
                Some(b) => (Some(b), 0),
                None => (None, sp.cut_to(SPARE_AFTER_MISS, &mut evicted)),
            }
        };
        // SAFETY: evicted spares are whole mappings nothing uses.
        unsafe { unmap_all(&evicted, n) };
        let Some((addr, spare_len)) = spare else {
            // SAFETY: a fresh mapping, given back by `unmap`.
            return unsafe { fresh(len) };
        };
        let block = addr as *mut u8;
        // SAFETY: the spare is a mapping of `spare_len ≥ len` bytes that nothing uses: its
        // tail beyond `len` (whole pages) is unmapped, the rest handed to the caller.
        unsafe {
            if spare_len > len {
                munmap(block.add(len), spare_len - len);
            }
            if zeroed {
                std::ptr::write_bytes(block, 0, size);
            }
        }
        block
    }

    /// A zeroed mapping of `len` bytes (whole pages) on a [`HUGE_BLOCK`] boundary, or null.
    ///
    /// # Safety
    /// Plain system calls on a fresh mapping; the caller unmaps it.
    unsafe fn fresh(len: usize) -> *mut u8 {
        let Some(whole) = len.checked_add(HUGE_BLOCK) else { return std::ptr::null_mut() };
        // SAFETY: an anonymous private mapping at an address of the kernel's choice; the
        // slack before and after the aligned part is unmapped at once, inside the mapping.
        unsafe {
            let p = mmap(
                std::ptr::null_mut(),
                whole,
                PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS,
                -1,
                0,
            );
            if p as isize == -1 || p.is_null() {
                return std::ptr::null_mut();
            }
            let head = (HUGE_BLOCK - (p as usize) % HUGE_BLOCK) % HUGE_BLOCK;
            if head > 0 {
                munmap(p, head);
            }
            let tail = whole - head - len;
            if tail > 0 {
                munmap(p.add(head + len), tail);
            }
            let block = p.add(head);
            // Advice only: without transparent huge pages the block is an ordinary mapping.
            if len >= HUGE_BLOCK {
                madvise(block, len, MADV_HUGEPAGE);
            }
            block
        }
    }

    /// Gives back a block [`map`] made for `size` bytes: kept as a spare when there is room
    /// ([`SPARE_LIMIT`], [`SPARE_SLOTS`]; the oldest spares make way), else unmapped.
    ///
    /// # Safety
    /// `block` came from [`map`] with the same `size` and is not used after.
    pub(super) unsafe fn unmap(block: *mut u8, size: usize) {
        let len = mapped_len(size);
        let mut evicted: Evicted = [(0, 0); SPARE_SLOTS + 1];
        let n = if len > SPARE_LIMIT {
            evicted[0] = (block as usize, len);
            1
        } else {
            let mut sp = spares();
            let mut n = sp.cut_to(SPARE_LIMIT - len, &mut evicted);
            if sp.count == SPARE_SLOTS {
                evicted[n] = sp.remove(0);
                n += 1;
            }
            let i = sp.count;
            sp.blocks[i] = (block as usize, len);
            sp.count += 1;
            sp.bytes += len;
            n
        };
        // SAFETY: the caller's contract for `block`; evicted spares are whole mappings
        // nothing uses.
        unsafe { unmap_all(&evicted, n) };
    }
}

impl Allocator {
    /// Whether a block of `size` bytes and alignment `align` is mapped here now.
    fn maps(size: usize, align: usize) -> bool {
        cfg!(target_os = "linux")
            && size >= MMAP_THRESHOLD as usize
            && align <= HUGE_BLOCK
            && LARGE_MAPPINGS.load(Ordering::Relaxed)
    }

    /// Whether the block at `ptr` of `size` bytes was mapped here: large enough, mapped since
    /// the switch, and on a huge-page boundary (the system allocator's large blocks never are:
    /// glibc puts a header before them; the switch is set before any such block exists).
    fn mapped(ptr: *mut u8, layout: Layout) -> bool {
        Self::maps(layout.size(), layout.align()) && (ptr as usize).is_multiple_of(HUGE_BLOCK)
    }
}

// SAFETY: blocks are either the system allocator's (every call forwarded to it) or mappings
// of their own, sized and aligned for their layout (2 MiB boundaries satisfy every alignment
// up to 2 MiB), zeroed for `alloc_zeroed`, and unmapped or kept as spares only by `dealloc`
// of the same block (a spare is handed out again only after it left every caller).
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        #[cfg(target_os = "linux")]
        if Self::maps(layout.size(), layout.align()) {
            // SAFETY: a block of its own, given back by `dealloc`.
            return unsafe { huge::map(layout.size(), false) };
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        #[cfg(target_os = "linux")]
        if Self::maps(layout.size(), layout.align()) {
            // SAFETY: a block of its own, zeroed, given back by `dealloc`.
            return unsafe { huge::map(layout.size(), true) };
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        #[cfg(target_os = "linux")]
        if Self::mapped(ptr, layout) {
            // SAFETY: `alloc` mapped this block for this layout's size.
            return unsafe { huge::unmap(ptr, layout.size()) };
        }
        // SAFETY: the system allocator made this block for this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !Self::mapped(ptr, layout) && !Self::maps(new_size, layout.align()) {
            // SAFETY: the system allocator's block, staying with it.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the new layout is valid (the caller guarantees `new_size` rounded up to the
        // alignment does not overflow); the old block is copied then freed by its allocator.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}
