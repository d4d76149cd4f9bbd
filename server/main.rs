//! The `gatehouse` command: parses arguments, loads configuration, runs one command and exits
//! with 0 (ok), 1 (runtime failure) or 2 (usage or configuration error).

use std::process::ExitCode;

use clap::Parser;
use gatehouse::cli::Cli;

fn main() -> ExitCode {
    gatehouse::tls::install_crypto_provider();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version on stdout (exit 0) and usage errors on stderr (exit 2).
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match gatehouse::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.message());
            ExitCode::from(e.exit_code())
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
