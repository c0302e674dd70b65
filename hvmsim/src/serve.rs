//! `hvmsim serve`: one blade as a process, its management API on its management address.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use lparmover::model::{Fleet, GuestBackend};

use crate::blade::BladeService;
use crate::store::{Endpoint, StateDir};

/// What `serve` needs.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Fleet file that defines the blade.
    #[arg(long)]
    pub fleet: PathBuf,
    /// Name of the blade in the fleet file.
    #[arg(long)]
    pub blade: String,
    /// State directory of this blade (created on first start, reused afterwards).
    #[arg(long)]
    pub state_dir: PathBuf,
    /// Guest implementation for activated LPARs.
    #[arg(long, value_enum, default_value = "auto")]
    pub guest: GuestChoice,
    /// State directory of a storage array this blade's FC ports are cabled to (repeat for
    /// each); its vFCs log in at that array's fabric.
    #[arg(long = "array", value_name = "DIR")]
    pub arrays: Vec<PathBuf>,
    /// Moves (outgoing, incoming and rehearsals) this blade runs at once; one more is refused
    /// "blade busy" before anything changes.
    #[arg(long, env = "HVMSIM_MAX_MIGRATIONS", default_value_t = crate::migration::DEFAULT_MAX_RUNNING_JOBS,
          value_parser = max_migrations)]
    pub max_migrations: usize,
}

fn max_migrations(text: &str) -> Result<usize, String> {
    let limit = crate::migration::MAX_RUNNING_JOBS_LIMIT;
    match text.parse::<usize>() {
        Ok(n) if (1..=limit).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?} is not a number of moves from 1 to {limit}; give how many moves this blade may run at once (default {})",
            crate::migration::DEFAULT_MAX_RUNNING_JOBS
        )),
    }
}

/// Guest implementation on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum GuestChoice {
    /// KVM when /dev/kvm opens, else software.
    Auto,
    /// KVM only.
    Kvm,
    /// Software only.
    Soft,
}

impl From<GuestChoice> for GuestBackend {
    fn from(c: GuestChoice) -> Self {
        match c {
            GuestChoice::Auto => GuestBackend::Auto,
            GuestChoice::Kvm => GuestBackend::Kvm,
            GuestChoice::Soft => GuestBackend::Soft,
        }
    }
}

pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    // A restarted blade takes back the port it had, even with connections of its previous life
    // still in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)?.into_std()
}

/// Waits for SIGTERM or Ctrl-C (or for the server `serving` to end, an error), then lets the
/// server finish the requests under way.
pub(crate) async fn until_stopped(
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
    handle: &axum_server::Handle<std::net::SocketAddr>,
    what: &str,
) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        result = serving => {
            result??;
            bail!("{what} stopped unexpectedly");
        }
    }
    tracing::info!("shutting down");
    handle.graceful_shutdown(Some(std::time::Duration::from_secs(2)));
    Ok(())
}

/// Runs one blade until SIGTERM or Ctrl-C.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let fleet = Fleet::load(&args.fleet)?;
    let Some(definition) = fleet.blade(&args.blade) else {
        bail!(
            "fleet file {} has no blade named {:?}; blades: {}",
            args.fleet.display(),
            args.blade,
            fleet
                .blades
                .iter()
                .map(|b| b.blade.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let store = StateDir::open(&args.state_dir)?;
    // Before anything reads or writes the directory (state, VM sockets, logs): a second blade
    // on it would adopt the same VMs and overwrite the first one's state.
    let _hold = store.lock()?;
    let span = tracing::info_span!("blade", name = %definition.blade.name);
    let _entered = span.enter();
    crate::guest::memory::allow_shared_huge_pages();
    let (service, fresh) =
        BladeService::open(store.clone(), definition, args.guest.into(), fleet.network)?;
    let ip = {
        let inv = service.inventory();
        inv.blade.hvm.management.ip
    };
    // The certificate names the addresses of the first start; the mover pins certificates and
    // does not check names, so a changed migration path needs no new certificate.
    let mut addresses = vec![IpAddr::V4(ip)];
    addresses.extend(
        service
            .inventory()
            .blade
            .hvm
            .migration_paths
            .iter()
            .map(|p| IpAddr::V4(p.ip)),
    );
    let (identity, token) = store.identity(service.name(), &addresses)?;
    service.migrations.set_identity(&identity);
    service.migrations.set_max_running_jobs(args.max_migrations);
    let wanted_port = match store.endpoint()? {
        Some(previous) if previous.addr.ip() == IpAddr::V4(ip) => previous.addr.port(),
        _ => definition.blade.hvm.management.port,
    };
    let listener = bind(SocketAddr::new(IpAddr::V4(ip), wanted_port))
        .or_else(|e| {
            if wanted_port != 0 && wanted_port != definition.blade.hvm.management.port {
                tracing::warn!(port = wanted_port, error = %e, "previous port is taken; binding the configured one");
                bind(SocketAddr::new(IpAddr::V4(ip), definition.blade.hvm.management.port))
            } else {
                Err(e)
            }
        })
        .with_context(|| format!("cannot listen on {ip}:{wanted_port}"))?;
    let addr = listener.local_addr()?;
    let tls =
        axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(identity.server_config()?));
    let handle = axum_server::Handle::new();
    let app = crate::api::router(service.clone(), token);
    let serving = crate::httpd::serve_https(
        listener,
        tls,
        handle.clone(),
        crate::httpd::HttpLimits::default(),
        app,
    )?;

    service.attach_fabric(&args.arrays)?;
    service
        .boot(definition, fresh)
        .await
        .map_err(|e| anyhow::anyhow!("blade {} did not come up: {e}", service.name()))?;
    // Written last: whoever waits for the endpoint file finds a blade ready to answer.
    store.save_endpoint(&Endpoint {
        name: service.name().to_owned(),
        chassis: definition.blade.chassis.clone(),
        url: format!("https://{addr}"),
        addr,
        pid: std::process::id(),
    })?;
    tracing::info!(%addr, fresh, "management API listening");

    until_stopped(serving, &handle, "management API").await?;
    let svc = service.clone();
    tokio::task::spawn_blocking(move || svc.shutdown()).await?;
    Ok(())
}

/// Logs a request handler's panic under a fresh id and returns the id, for the 500 answer
/// (the blade's and the array's `CatchPanicLayer`). A blade passes its system log, so the
/// operator finds the panic where every other event of the HVM is, not only on stderr.
pub(crate) fn log_panic(
    detail: &(dyn std::any::Any + Send),
    system_log: Option<&crate::syslog::SystemLog>,
) -> String {
    let what = detail
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| detail.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "unknown panic".to_owned());
    let id = format!("panic-{:016x}", rand::random::<u64>());
    tracing::error!(%id, panic = %what, "a request handler panicked");
    if let Some(log) = system_log {
        log.record(
            lparmover::api::LogLevel::Error,
            "api",
            format!("a request handler panicked ({id}): {what}; this is a bug, please report it"),
        );
    }
    id
}
