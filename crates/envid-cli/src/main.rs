//! The `envid` command: what this host is, where each fact came from,
//! descriptor validation, hostname explanation, IP lookups, and the reference
//! environment service.

mod cli;
mod cmd;
mod output;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("envid: {e}");
            ExitCode::from(1)
        }
    }
}
