//! `lparmover hvm list|add|remove`: the navigator's Profile window on the command line.
//! Parsing, asking and printing only; the workflow is `lparmover::ops::register`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use lparmover::ops::register::{self, Registration};
use lparmover::profile::Profile;

#[derive(Debug, Subcommand)]
pub enum HvmCommand {
    /// List the registered HVMs with the fingerprint of each pinned certificate.
    List,
    /// Register an HVM by address: fetch its certificate, show the fingerprint, pin it once
    /// confirmed (interactively, or by --fingerprint), and prove the token with the HVM.
    Add {
        /// Management address, e.g. https://127.0.1.1:40123.
        url: String,
        /// HVM name.
        #[arg(long)]
        name: String,
        /// Chassis (default: the one the blade reports).
        #[arg(long, default_value = "")]
        chassis: String,
        /// A file holding the HVM's token (kept out of the process list).
        #[arg(long, conflicts_with = "token_from")]
        token_file: Option<PathBuf>,
        /// A fleet profile to take the token from (`hvmsim fleet` writes one).
        #[arg(long)]
        token_from: Option<PathBuf>,
        /// The fingerprint you expect (`hvmsim fingerprint` on the blade): pins without asking
        /// when it matches, refuses when it does not.
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// Stop managing an HVM (its LPARs keep running where they are).
    Remove {
        /// HVM name.
        name: String,
    },
}

fn same_fingerprint(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.chars()
            .filter(char::is_ascii_hexdigit)
            .collect::<String>()
            .to_ascii_uppercase()
    };
    norm(a) == norm(b)
}

fn confirmed_interactively(url: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "not pinning the certificate of {url} unasked: compare the fingerprint above with `hvmsim fingerprint` on the blade and pass it as --fingerprint"
        );
    }
    print!("Pin this certificate for {url}? [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

pub async fn run(profile_path: &Path, command: HvmCommand) -> anyhow::Result<ExitCode> {
    match command {
        HvmCommand::List => {
            let profile = Profile::load(profile_path)?;
            println!(
                "{:<16} {:<8} {:<28} pinned certificate (SHA-256)",
                "HVM", "chassis", "address"
            );
            for h in &profile.hvms {
                let fp = register::pinned_fingerprint(h)
                    .unwrap_or_else(|| "unreadable: register it again".into());
                println!("{:<16} {:<8} {:<28} {fp}", h.name, h.chassis, h.url);
            }
            Ok(ExitCode::SUCCESS)
        }
        HvmCommand::Remove { name } => {
            register::unregister(profile_path, &name)?;
            println!(
                "removed {name} from {}; its LPARs keep running",
                profile_path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        HvmCommand::Add {
            url,
            name,
            chassis,
            token_file,
            token_from,
            fingerprint,
        } => {
            let token = match (&token_file, &token_from) {
                (Some(file), _) => std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read the token file {}", file.display()))?
                    .trim()
                    .to_owned(),
                (None, Some(fleet)) => register::import_token(fleet, &name, &url)?,
                (None, None) => {
                    bail!("give the HVM's token: --token-file FILE or --token-from FLEET_PROFILE")
                }
            };
            let seen = tokio::task::spawn_blocking({
                let url = url.clone();
                move || register::fetch_certificate(&url)
            })
            .await??;
            println!(
                "{} presents a certificate with SHA-256 fingerprint\n  {}",
                seen.url, seen.fingerprint
            );
            let pin = match &fingerprint {
                Some(expected) if same_fingerprint(expected, &seen.fingerprint) => true,
                Some(expected) => {
                    eprintln!(
                        "error: the certificate's fingerprint is not the one expected ({expected}); nothing was pinned. Check the address: something else may answer there"
                    );
                    return Ok(ExitCode::from(3));
                }
                None => confirmed_interactively(&seen.url)?,
            };
            if !pin {
                println!("not pinned; nothing written");
                return Ok(ExitCode::from(3));
            }
            let profile = register::register(
                profile_path,
                Registration {
                    name: name.clone(),
                    chassis,
                    certificate: seen,
                    token,
                },
            )
            .await?;
            println!(
                "registered {name} in {} ({} HVMs); the certificate is pinned",
                profile_path.display(),
                profile.hvms.len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_compare_without_caring_for_case_or_separators() {
        assert!(same_fingerprint("ab:cd:01", "AB:CD:01"));
        assert!(same_fingerprint("ABCD01", "AB:CD:01"));
        assert!(!same_fingerprint("AB:CD:02", "AB:CD:01"));
    }
}
