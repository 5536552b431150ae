//! The `cimc` command line. Every command reports an error as one line on stderr and exits with
//! 1 for a user error, 2 for an internal one (a panic is an internal error).

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
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
        eprintln!("error: internal error (a bug in cimc, please report it): {info}");
    }));
    match std::panic::catch_unwind(|| cli::run(args)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {}", e.to_string().replace('\n', " "));
            ExitCode::from(e.exit_code() as u8)
        }
        Err(_) => ExitCode::from(2),
    }
}
