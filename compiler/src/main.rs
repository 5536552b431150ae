//! The `cimc` command line. Every command reports an error as one line on stderr and exits with
//! 1 for a user error, 2 for an internal one (a panic is an internal error).

mod cli;

/// The system allocator, with a compilation's large blocks on huge pages
/// (`compiler/src/memory.rs`).
#[global_allocator]
static ALLOCATOR: cimc::memory::Allocator = cimc::memory::Allocator;

use clap::Parser;
use std::process::ExitCode;

/// Set by the panic hook when the panic is `print!` failing to write standard output (a full
/// disk, a closed descriptor) or follows a model changed under cimc: the environment's
/// failure, reported as a user error (exit 1).
static STDOUT_FAILED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn main() -> ExitCode {
    cimc::guard::install();
    cimc::onnx::track_changes();
    let args = match cli::Cli::try_parse() {
        Ok(a) => a,
        Err(e) => {
            use clap::error::ErrorKind;
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => ExitCode::from(1),
                _ => ExitCode::from(1),
            };
        }
    };
    // Only compilation frees model-sized blocks it must give back at once; the interpreters
    // reuse their activation buffers, and mapping each one afresh would cost page faults on
    // every run (`compiler/src/memory.rs`). Before any thread starts.
    if args.is_compile() {
        cimc::memory::release_freed_memory_promptly();
    }
    std::panic::set_hook(Box::new(|info| {
        let payload = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        // `print!` panics when standard output cannot be written; std words it this way.
        if let Some(reason) = payload.strip_prefix("failed printing to stdout: ") {
            STDOUT_FAILED.store(true, std::sync::atomic::Ordering::SeqCst);
            eprintln!("error: cannot write to standard output: {reason}");
        } else if let Err(e) = cimc::onnx::check_unchanged() {
            // Not a bug: the user's model changed under cimc (`onnx/mapped.rs`).
            STDOUT_FAILED.store(true, std::sync::atomic::Ordering::SeqCst);
            eprintln!("error: {}", printable(&e.to_string()));
        } else {
            eprintln!("error: internal error (a bug in cimc, please report it): {info}");
        }
    }));
    let outcome = std::panic::catch_unwind(|| cli::run(args));
    // Whatever stdout still buffers must reach it, or the failure be reported.
    let flushed = std::io::Write::flush(&mut std::io::stdout());
    match outcome {
        Ok(Ok(())) => match flushed {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot write to standard output: {e}");
                ExitCode::from(1)
            }
        },
        Ok(Err(e)) => {
            // An internal error after a model changed under cimc is that change's doing.
            let e = match cimc::onnx::check_unchanged() {
                Err(changed) if e.exit_code() == 2 => changed,
                _ => e,
            };
            eprintln!("error: {}", printable(&e.to_string()));
            ExitCode::from(e.exit_code() as u8)
        }
        Err(_) if STDOUT_FAILED.load(std::sync::atomic::Ordering::SeqCst) => ExitCode::from(1),
        Err(_) => ExitCode::from(2),
    }
}

/// `message` on one line with nothing a terminal would act on: names taken from model files
/// may hold escape sequences, carriage returns or bidirectional overrides, which are shown
/// escaped (`\u{1b}`); a newline becomes a space.
fn printable(message: &str) -> String {
    message
        .chars()
        .map(|c| match c {
            '\n' => " ".to_string(),
            c if c.is_control() || is_bidi_control(c) => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// The Unicode bidirectional formatting characters (embeddings, overrides, isolates, marks).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}
