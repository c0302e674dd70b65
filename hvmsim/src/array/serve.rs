//! `hvmsim array --fleet FILE --array NAME --state-dir DIR`: one storage array as a process,
//! its API on its first controller's address.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use lparmover::model::Fleet;

use super::service::ArrayService;
use crate::store::{Endpoint, StateDir};

/// What `array` needs.
#[derive(Debug, Clone, clap::Args)]
pub struct ArrayArgs {
    /// Fleet file that defines the array.
    #[arg(long)]
    pub fleet: PathBuf,
    /// Name of the array in the fleet file.
    #[arg(long)]
    pub array: String,
    /// State directory of this array (created on first start, reused afterwards).
    #[arg(long)]
    pub state_dir: PathBuf,
}

/// Runs one array until SIGTERM or Ctrl-C.
pub async fn run(args: ArrayArgs) -> anyhow::Result<()> {
    let fleet = Fleet::load(&args.fleet)?;
    let Some(definition) = fleet.array(&args.array) else {
        bail!(
            "fleet file {} has no array named {:?}; arrays: {}",
            args.fleet.display(),
            args.array,
            match fleet.arrays.len() {
                0 => "none".to_owned(),
                _ => fleet
                    .arrays
                    .iter()
                    .map(|a| a.name.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        );
    };
    let store = StateDir::open(&args.state_dir)?;
    let _hold = store.lock()?;
    let span = tracing::info_span!("array", name = %definition.name);
    let _entered = span.enter();
    let (service, fresh) = ArrayService::open(store.clone(), || {
        super::seed::first_state(&fleet, definition)
    })?;
    let service = Arc::new(service);
    super::service::start_copy_engine(service.clone())
        .context("cannot start the array's copy engine")?;
    let info = service.info();
    let Some(ip) = info.controllers.first().map(|c| c.ip) else {
        bail!("array {} has no controller to listen on", info.name);
    };
    let addresses: Vec<IpAddr> = info.controllers.iter().map(|c| IpAddr::V4(c.ip)).collect();
    let (identity, token) = store.identity(&info.name.to_string(), &addresses)?;
    // Where it listened before, else the arrays' well-known port (what Add Storage tries for a
    // bare IP address); a port taken by another array on the same address falls back to any.
    let wanted_port = match store.endpoint()? {
        Some(previous) if previous.addr.ip() == IpAddr::V4(ip) => previous.addr.port(),
        _ => lparmover::ops::arrays::ARRAY_API_PORT,
    };
    let listener = crate::serve::bind(SocketAddr::new(IpAddr::V4(ip), wanted_port))
        .or_else(|_| crate::serve::bind(SocketAddr::new(IpAddr::V4(ip), 0)))
        .with_context(|| format!("cannot listen on {ip}"))?;
    let addr = listener.local_addr()?;
    let tls =
        axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(identity.server_config()?));
    let handle = axum_server::Handle::new();
    let app = super::api::router(service.clone(), token);
    let serving = crate::httpd::serve_https(
        listener,
        tls,
        handle.clone(),
        crate::httpd::HttpLimits::default(),
        app,
    )?;
    store.save_endpoint(&Endpoint {
        name: info.name.to_string(),
        chassis: String::new(),
        url: format!("https://{addr}"),
        addr,
        pid: std::process::id(),
    })?;
    tracing::info!(%addr, fresh, host_groups = service.host_groups().len(), "array API listening");
    crate::serve::until_stopped(serving, &handle, "array API").await
}
