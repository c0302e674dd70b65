//! The HVM's half of a Connectivity Test (`/v1/probe/…`): binds a QUIC endpoint on this blade's
//! migration path with the blade's own certificate and runs lparmover's probe
//! ([`lparmover::connectivity`]). Like the rest of hvmsim it decides nothing: the manager issues
//! the ticket and pins both certificates.
//!
//! | method | route | body → answer |
//! | --- | --- | --- |
//! | POST | `/v1/probe/listen` | [`ProbeListen`] → [`ProbeListening`] (destination) |
//! | POST | `/v1/probe/run` | [`ProbeRun`] → [`ProbeReport`] (source) |

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use lparmover::api::LogLevel;
use lparmover::connectivity::{
    self, LISTEN_TIMEOUT, ProbeListen, ProbeListening, ProbeReport, ProbeRun,
};
use lparmover::emg::{Emg, EmgError};

use crate::api::{ApiError, ApiJson};
use crate::blade::{BladeService, lock};

/// The probe routes, merged into the `/v1` router.
pub fn routes() -> Router<Arc<BladeService>> {
    Router::new()
        .route("/probe/listen", post(listen))
        .route("/probe/run", post(run))
}

impl BladeService {
    /// This blade's migration-path identity (certificate + key) and certificate PEM, read from the
    /// state directory where `serve` created them.
    fn probe_identity(&self) -> Result<lparmover::tls::Identity, EmgError> {
        let (identity, _token) = self
            .store
            .identity(&self.name, &[])
            .map_err(|e| EmgError::new(Emg::Internal, format!("HVM identity: {e}")))?;
        Ok(identity)
    }

    /// The primary migration path's address, or the catalogue's "Specified NIC was not found".
    fn probe_path(&self, missing: Emg) -> Result<IpAddr, EmgError> {
        lock(&self.state)
            .blade
            .hvm
            .primary_migration_path()
            .map(|p| IpAddr::V4(p.ip))
            .ok_or_else(|| {
                EmgError::new(missing, format!("HVM {} has no migration path", self.name))
            })
    }
}

async fn listen(
    State(s): State<Arc<BladeService>>,
    ApiJson(req): ApiJson<ProbeListen>,
) -> Result<Json<ProbeListening>, ApiError> {
    crate::api::checked(req.validate())?;
    let ip = s.probe_path(Emg::DestinationPathMissing)?;
    let ticket = connectivity::parse_ticket(&req.ticket).map_err(|e| e.emg())?;
    let source_cert = connectivity::parse_cert(&req.source_cert_pem).map_err(|e| e.emg())?;
    let identity = s.probe_identity()?;
    let cert_pem = identity.cert_pem().to_owned();
    let timeout = req
        .timeout_s
        .map_or(LISTEN_TIMEOUT, Duration::from_secs)
        .min(connectivity::MAX_LISTEN);
    let (addr, serve) = connectivity::listen_probe(
        SocketAddr::new(ip, 0),
        &identity,
        &source_cert,
        ticket,
        timeout,
    )
    .map_err(|e| {
        let mut err = e.emg();
        if err.kind == Emg::InvalidMigrationPathSrc {
            err.kind = Emg::InvalidMigrationPathDst;
        }
        err
    })?;
    s.log.record(
        LogLevel::Info,
        "migration",
        format!("connectivity test: listening on {addr}"),
    );
    let svc = Arc::clone(&s);
    tokio::spawn(async move {
        match serve.await {
            Ok(bytes) => svc.log.record(
                LogLevel::Info,
                "migration",
                format!("connectivity test: received {bytes} bytes on {addr}"),
            ),
            Err(e) => svc.log.record(
                LogLevel::Warning,
                "migration",
                format!("connectivity test on {addr} failed: {e}"),
            ),
        }
    });
    Ok(Json(ProbeListening { addr, cert_pem }))
}

async fn run(
    State(s): State<Arc<BladeService>>,
    ApiJson(req): ApiJson<ProbeRun>,
) -> Result<Json<ProbeReport>, ApiError> {
    crate::api::checked(req.validate())?;
    let ip = s.probe_path(Emg::SourcePathMissing)?;
    let identity = s.probe_identity()?;
    let report = connectivity::run_probe(SocketAddr::new(ip, 0), &identity, &req)
        .await
        .map_err(|e| {
            s.log.record(
                LogLevel::Warning,
                "migration",
                format!("connectivity test to {} failed: {e}", req.dest_addr),
            );
            e.emg()
        })?;
    s.log.record(
        LogLevel::Info,
        "migration",
        format!(
            "connectivity test to {}: {:.0} Mbit/s, RTT median {:.3} ms, MTU {}",
            req.dest_addr, report.throughput_mbps, report.rtt.median_ms, report.path_mtu
        ),
    );
    Ok(Json(report))
}
