//! The `cimc` binary's signal dispositions: how it ends when the system, not cimc, fails.
//!
//! - **SIGBUS**: model files are memory-mapped (`onnx/mapped.rs`); when another process
//!   truncates one while cimc reads it, the next read of a lost page raises SIGBUS, which would
//!   kill cimc with no message. The handler prints one line and exits with 1 — the user's file
//!   changed, not a bug — and, since outputs are renamed into place only at the end
//!   (`output.rs`), no output is left half-written (a temporary file may remain).
//! - **SIGPIPE** back to its default: `cimc eval ... | head -1` ends quietly when the reader
//!   goes, with the status a shell reports for it (141), as other Unix tools do. Rust ignores
//!   the signal by default, which turns a closed pipe into a panic in `println!`.
//! - **SIGXFSZ** ignored: a write past the file-size limit then fails with `EFBIG`, which is
//!   reported with the file's name, instead of killing cimc.
//!
//! Linux only (the signal numbers are Linux's); elsewhere this does nothing.

/// Installs the dispositions; call once at the start of `main`, before other threads start.
pub fn install() {
    #[cfg(target_os = "linux")]
    linux::install();
}

#[cfg(target_os = "linux")]
mod linux {
    extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
        fn write(fd: i32, buf: *const u8, count: usize) -> isize;
        fn _exit(status: i32) -> !;
    }
    const SIGBUS: i32 = 7;
    const SIGPIPE: i32 = 13;
    const SIGXFSZ: i32 = 25;
    const SIG_DFL: usize = 0;
    const SIG_IGN: usize = 1;

    const SIGBUS_MESSAGE: &[u8] = b"error: an input file was truncated or rewritten while cimc \
        was reading it (SIGBUS); nothing was written in place of an output\n";

    extern "C" fn on_sigbus(_signum: i32) {
        // SAFETY: write(2) and _exit(2) are async-signal-safe; the buffer is a static byte
        // string of the given length. Nothing else runs in the handler.
        unsafe {
            write(2, SIGBUS_MESSAGE.as_ptr(), SIGBUS_MESSAGE.len());
            _exit(1);
        }
    }

    pub fn install() {
        // SAFETY: signal(2) with valid signal numbers and either a disposition constant or an
        // `extern "C" fn(i32)` that only calls async-signal-safe functions; called before other
        // threads start. A failure leaves the default disposition, which only loses the message.
        unsafe {
            signal(SIGBUS, on_sigbus as extern "C" fn(i32) as usize);
            signal(SIGPIPE, SIG_DFL);
            signal(SIGXFSZ, SIG_IGN);
        }
    }
}
