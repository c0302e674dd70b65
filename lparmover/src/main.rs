//! The `lparmover` command line: what operators and scripts use to see and move LPARs.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
