//! `hvmsim fingerprint`: the SHA-256 fingerprint of the certificate a blade presents, read
//! from its state directory on the blade itself, for the operator to compare with the one the
//! navigator's Profile window shows before pinning it.

use std::path::PathBuf;

use anyhow::Context;

/// Arguments of `hvmsim fingerprint`.
#[derive(clap::Args, Debug)]
pub struct FingerprintArgs {
    /// The blade's state directory (as given to `hvmsim serve --state-dir`).
    #[arg(long)]
    pub state_dir: PathBuf,
}

/// The fingerprint line, `SHA-256 AB:CD:…`; reads only, so it is safe next to a running blade.
pub fn describe(args: &FingerprintArgs) -> anyhow::Result<String> {
    let path = args.state_dir.join("identity/cert.pem");
    let pem = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: is {} a blade's state directory, started at least once?",
            path.display(),
            args.state_dir.display()
        )
    })?;
    let certs = lparmover::tls::parse_certs(&pem)
        .with_context(|| format!("{} holds no readable certificate", path.display()))?;
    let der = certs
        .first()
        .with_context(|| format!("{} holds no certificate", path.display()))?;
    Ok(format!(
        "SHA-256 {}",
        lparmover::ops::register::fingerprint(der.as_ref())
    ))
}
