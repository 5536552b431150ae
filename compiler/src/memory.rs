//! How the process gives freed memory back to the system.
//!
//! glibc's allocator serves a large allocation with its own mapping and unmaps it when freed —
//! but after the first such free it raises that threshold to the freed size (up to 32 MB), so
//! later blocks of a model's weight size come from the heap, and a heap rarely shrinks: a
//! compilation that frees the float weights after quantizing them would keep them resident to
//! the end (`docs/compile-memory.md`: 143 MB instead of 116 MB for ResNet-18).
//! Fixing the threshold keeps every block of at least [`MMAP_THRESHOLD`] bytes in a mapping of
//! its own, returned to the system as soon as it is freed. Smaller blocks are unaffected.

/// Blocks of at least this many bytes get a mapping of their own (glibc's initial default).
pub const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Makes the allocator return large freed blocks to the system at once (glibc; elsewhere a
/// no-op). Call once, early in `main`, before other threads start; `cimc` does so for
/// `compile` only, since the interpreters would pay page faults for fresh mappings on every run.
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
}
