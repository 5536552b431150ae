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

/// Names `path` in the SIGBUS message: the first file mapped (the model; its external data
/// are mapped after it). The handler cannot lock or allocate, so the name is copied into a
/// fixed buffer here, once (longer names are cut).
pub fn name_mapped_file(path: &std::path::Path) {
    #[cfg(target_os = "linux")]
    linux::name_mapped_file(path);
    #[cfg(not(target_os = "linux"))]
    let _ = path;
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

    use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

    const SIGBUS_MESSAGE: &[u8] = b"an input file was truncated or rewritten while cimc \
        was reading it (SIGBUS); nothing was written in place of an output\n";

    /// The first mapped file's name (bytes), for the handler; written once, before it is read.
    static NAME: [AtomicU8; 1024] = [const { AtomicU8::new(0) }; 1024];
    static NAME_LEN: AtomicUsize = AtomicUsize::new(0);
    static NAMED: AtomicBool = AtomicBool::new(false);

    pub fn name_mapped_file(path: &std::path::Path) {
        if NAMED.swap(true, Ordering::SeqCst) {
            return;
        }
        let bytes = path.as_os_str().as_encoded_bytes();
        let n = bytes.len().min(NAME.len());
        for (slot, &b) in NAME.iter().zip(&bytes[..n]) {
            // Control characters would act on the terminal: shown as '?'.
            slot.store(if b < 0x20 || b == 0x7f { b'?' } else { b }, Ordering::Relaxed);
        }
        NAME_LEN.store(n, Ordering::SeqCst);
    }

    extern "C" fn on_sigbus(_signum: i32) {
        let mut line = [0u8; 1024 + 16];
        let mut at = 0;
        for &b in b"error: ".iter() {
            line[at] = b;
            at += 1;
        }
        let n = NAME_LEN.load(Ordering::SeqCst);
        for slot in &NAME[..n] {
            line[at] = slot.load(Ordering::Relaxed);
            at += 1;
        }
        if n > 0 {
            for &b in b": ".iter() {
                line[at] = b;
                at += 1;
            }
        }
        // SAFETY: write(2) and _exit(2) are async-signal-safe; both buffers are valid for the
        // lengths given (a stack array filled above, a static byte string). Nothing else runs
        // in the handler: atomics neither lock nor allocate.
        unsafe {
            write(2, line.as_ptr(), at);
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
