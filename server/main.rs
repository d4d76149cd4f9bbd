//! The `gatehouse` command: parses arguments, loads configuration, runs one command and exits
//! with 0 (ok), 1 (runtime failure) or 2 (usage or configuration error).

use clap::Parser;
use gatehouse::cli::Cli;

/// mimalloc: the proxy path allocates and frees many small buffers per request across threads,
/// where glibc's allocator showed up as ~13% of the gateway's CPU in `perf`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ! {
    let code = run();
    // Leave without running C atexit handlers: libpq's OpenSSL registers a cleanup that frees
    // global state while an r2d2 or blocking-pool thread may still be inside PQconnectdb, which
    // crashed ~1 in 5 shutdowns. Everything Gatehouse must persist (audit events, usage) is
    // flushed before this point, and logs are written unbuffered to stderr.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    #[allow(unsafe_code)]
    // SAFETY: `_exit` takes no pointers and never returns; skipping atexit handlers is the point.
    unsafe {
        libc::_exit(i32::from(code))
    }
}

fn run() -> u8 {
    gatehouse::startup::tls::install_crypto_provider();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version on stdout (exit 0) and usage errors on stderr (exit 2).
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match gatehouse::cli::run(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {}", e.message());
            e.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        gatehouse::cli::Cli::command().debug_assert();
    }
}
