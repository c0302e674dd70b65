//! The manager's client of one HVM's management API.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::{
    API_VERSION, HvmConfigDoc, Inventory, LEASE_HEADER, Lease, LoadFigures, LockRequest, LogEntry,
    LparView, MigrationPaths, PortStates, SetMigrationPaths, WorkloadUpdate,
};
use crate::emg::{Emg, EmgError};
use crate::model::{LparNumber, LparRequest, Workload};
use crate::profile::ProfileHvm;
use crate::tls::{TlsError, pinned_client_config};

/// How long connecting to an HVM may take before it counts as unreachable. Short on purpose: a
/// fleet view must stay quick when blades are down.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an idle connection stays in the pool: shorter than the 30 s after which a blade or
/// an array closes a connection with no request under way (`hvmsim::httpd::HttpLimits::idle`),
/// so a request never goes out on a connection the server is closing.
pub const POOL_IDLE: Duration = Duration::from_secs(20);

/// A failed call to an HVM.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The HVM answered with an error from the catalogue.
    #[error("{hvm}: {error}")]
    Api { hvm: String, error: EmgError },
    /// The HVM could not be reached.
    #[error("{hvm}: {}", EmgError::new(Emg::ConnectionRefusedMms, .detail.clone()))]
    Unreachable { hvm: String, detail: String },
    /// The HVM answered something this client does not understand.
    #[error("{hvm}: {}", EmgError::new(Emg::VersionMismatch, .detail.clone()))]
    Protocol { hvm: String, detail: String },
    /// The pinned certificate in the profile is unusable.
    #[error("{hvm}: {source}")]
    Tls {
        hvm: String,
        #[source]
        source: TlsError,
    },
}

impl ClientError {
    /// The catalogue error behind this failure.
    pub fn emg(&self) -> EmgError {
        match self {
            Self::Api { error, .. } => error.clone(),
            Self::Unreachable { detail, .. } => {
                EmgError::new(Emg::ConnectionRefusedMms, detail.clone())
            }
            Self::Protocol { detail, .. } => EmgError::new(Emg::VersionMismatch, detail.clone()),
            Self::Tls { source, .. } => {
                EmgError::new(Emg::ConnectionRefusedMms, source.to_string())
            }
        }
    }

    /// The catalogue kind, if the HVM answered with one.
    pub fn kind(&self) -> Emg {
        self.emg().kind
    }
}

/// A client bound to one HVM, trusting only its pinned certificate.
#[derive(Clone)]
pub struct HvmClient {
    name: String,
    base: String,
    token: String,
    http: reqwest::Client,
}

// By hand, so that secrets (token) never reach a log or an error message through `{:?}`.
impl std::fmt::Debug for HvmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HvmClient")
            .field("name", &self.name)
            .field("base", &self.base)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl HvmClient {
    /// A client for the HVM described by a profile entry.
    pub fn new(hvm: &ProfileHvm) -> Result<Self, ClientError> {
        let tls = pinned_client_config(&hvm.cert_pem).map_err(|source| ClientError::Tls {
            hvm: hvm.name.clone(),
            source,
        })?;
        let http = pinned_http_with(tls).map_err(|detail| ClientError::Protocol {
            hvm: hvm.name.clone(),
            detail,
        })?;
        Ok(Self {
            name: hvm.name.clone(),
            base: hvm.url.trim_end_matches('/').to_owned(),
            token: hvm.token.clone(),
            http,
        })
    }

    /// The HVM's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        lease: Option<&str>,
    ) -> Result<T, ClientError> {
        let url = format!("{}/{API_VERSION}{path}", self.base);
        let request = || {
            let mut request = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(&self.token);
            if let Some(body) = body {
                request = request.json(body);
            }
            if let Some(lease) = lease {
                request = request.header(LEASE_HEADER, lease);
            }
            request
        };
        let unreachable = |e: reqwest::Error| ClientError::Unreachable {
            hvm: self.name.clone(),
            detail: format!("{url}: {}", error_chain(&e)),
        };
        let response = match request().send().await {
            // A connection that timed out while being set up (TCP or TLS, before any request
            // went out) is tried once more: a blade whose runtime is busy for a moment on a
            // loaded host is not down. A refused connection (a blade that is down) fails at once.
            Err(e) if e.is_connect() && e.is_timeout() => {
                tracing::debug!(hvm = %self.name, error = %error_chain(&e), "connecting timed out; trying once more");
                request().send().await.map_err(unreachable)?
            }
            other => other.map_err(unreachable)?,
        };
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ClientError::Unreachable {
                hvm: self.name.clone(),
                detail: format!("{url}: reading the answer failed: {}", error_chain(&e)),
            })?;
        if status.is_success() {
            let body: &[u8] = if status == StatusCode::NO_CONTENT || bytes.is_empty() {
                b"null"
            } else {
                &bytes
            };
            return serde_json::from_slice(body).map_err(|e| ClientError::Protocol {
                hvm: self.name.clone(),
                detail: format!("{url}: unexpected answer: {e}"),
            });
        }
        match serde_json::from_slice::<EmgError>(&bytes) {
            Ok(error) => Err(ClientError::Api {
                hvm: self.name.clone(),
                error,
            }),
            Err(_) => Err(ClientError::Protocol {
                hvm: self.name.clone(),
                detail: format!(
                    "{url}: HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ),
            }),
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call::<(), T>(Method::GET, path, None, None).await
    }

    /// Blade, HVM, resources and LPARs.
    pub async fn inventory(&self) -> Result<Inventory, ClientError> {
        self.get("/inventory").await
    }

    /// The HVM's migration paths (Migration Path Setting).
    pub async fn migration_paths(&self) -> Result<MigrationPaths, ClientError> {
        self.get("/migration-paths").await
    }

    /// Replaces the HVM's migration paths as a whole; refused with nothing changed when a path is
    /// not valid ([`crate::emg::Emg::InvalidMigrationPathSetting`],
    /// [`crate::emg::Emg::PathCollidesWithManagement`]) or while a migration runs on the HVM.
    /// `lease`: a blade lease the caller holds, if any ([`crate::paths`] takes one).
    pub async fn set_migration_paths(
        &self,
        request: &SetMigrationPaths,
        lease: Option<&str>,
    ) -> Result<MigrationPaths, ClientError> {
        self.call(Method::PUT, "/migration-paths", Some(request), lease)
            .await
    }

    /// Every LPAR.
    pub async fn lpars(&self) -> Result<Vec<LparView>, ClientError> {
        self.get("/lpars").await
    }

    /// One LPAR.
    pub async fn lpar(&self, number: LparNumber) -> Result<LparView, ClientError> {
        self.get(&format!("/lpars/{number}")).await
    }

    /// The digest of an activated LPAR's memory outside its working set.
    pub async fn memory_digest(
        &self,
        number: LparNumber,
    ) -> Result<super::MemoryDigestView, ClientError> {
        self.get(&format!("/lpars/{number}/memory-digest")).await
    }

    /// Defines an LPAR (and activates it if asked).
    pub async fn define(
        &self,
        request: &LparRequest,
        lease: Option<&str>,
    ) -> Result<LparView, ClientError> {
        self.call(Method::POST, "/lpars", Some(request), lease)
            .await
    }

    /// Activates an LPAR: its guest starts.
    pub async fn activate(
        &self,
        number: LparNumber,
        lease: Option<&str>,
    ) -> Result<LparView, ClientError> {
        self.call::<(), _>(
            Method::POST,
            &format!("/lpars/{number}/activate"),
            None,
            lease,
        )
        .await
    }

    /// Deactivates an LPAR at once (power off).
    pub async fn deactivate(
        &self,
        number: LparNumber,
        lease: Option<&str>,
    ) -> Result<LparView, ClientError> {
        self.call::<(), _>(
            Method::POST,
            &format!("/lpars/{number}/deactivate"),
            None,
            lease,
        )
        .await
    }

    /// Deletes a deactivated LPAR.
    pub async fn delete(&self, number: LparNumber, lease: Option<&str>) -> Result<(), ClientError> {
        self.call::<(), ()>(Method::DELETE, &format!("/lpars/{number}"), None, lease)
            .await
    }

    /// Changes an LPAR's workload (a running guest takes the new dirty rate at once).
    pub async fn set_workload(
        &self,
        number: LparNumber,
        workload: &Workload,
    ) -> Result<LparView, ClientError> {
        let body = WorkloadUpdate {
            workload: workload.clone().into(),
        };
        self.call(
            Method::PUT,
            &format!("/lpars/{number}/workload"),
            Some(&body),
            None,
        )
        .await
    }

    /// "Save HVM configuration": persists the running configuration as the saved one.
    pub async fn save_config(&self) -> Result<HvmConfigDoc, ClientError> {
        self.call::<(), _>(Method::POST, "/config/save", None, None)
            .await
    }

    /// Exports the running configuration (the caller writes it to a file).
    pub async fn backup_config(&self) -> Result<HvmConfigDoc, ClientError> {
        self.get("/config/backup").await
    }

    /// Loads a configuration taken by [`Self::backup_config`]; every LPAR must be deactivated.
    pub async fn restore_config(
        &self,
        doc: &HvmConfigDoc,
        lease: Option<&str>,
    ) -> Result<HvmConfigDoc, ClientError> {
        self.call(Method::POST, "/config/restore", Some(doc), lease)
            .await
    }

    /// System log entries after sequence number `after`.
    pub async fn logs(&self, after: u64) -> Result<Vec<LogEntry>, ClientError> {
        self.get(&format!("/logs?after={after}")).await
    }

    /// CPU and NIC load.
    pub async fn load(&self) -> Result<LoadFigures, ClientError> {
        self.get("/load").await
    }

    /// Link states of every NIC and FC HBA port, with the time of their last change.
    pub async fn ports(&self) -> Result<PortStates, ClientError> {
        self.get("/ports").await
    }

    /// Takes a lock lease; a held target answers "busy".
    pub async fn lock(&self, request: &LockRequest) -> Result<Lease, ClientError> {
        self.call(Method::POST, "/locks", Some(request), None).await
    }

    /// Extends a lease by its TTL.
    pub async fn renew(&self, lease_id: &str) -> Result<Lease, ClientError> {
        self.call::<(), _>(
            Method::POST,
            &format!("/locks/{lease_id}/renew"),
            None,
            None,
        )
        .await
    }

    /// Releases a lease.
    pub async fn unlock(&self, lease_id: &str) -> Result<(), ClientError> {
        self.call::<(), ()>(Method::DELETE, &format!("/locks/{lease_id}"), None, None)
            .await
    }

    /// Destination: prepare for an incoming LPAR.
    pub async fn prepare_incoming(
        &self,
        request: &super::PrepareIncoming,
        lease: Option<&str>,
    ) -> Result<super::IncomingPrepared, ClientError> {
        self.call(Method::POST, "/migrations/incoming", Some(request), lease)
            .await
    }

    /// Source: start sending.
    pub async fn start_send(
        &self,
        request: &super::StartSend,
        lease: Option<&str>,
    ) -> Result<super::MigrationStatus, ClientError> {
        self.call(
            Method::POST,
            &format!("/migrations/{}/send", request.job),
            Some(request),
            lease,
        )
        .await
    }

    /// A move as this HVM sees it.
    pub async fn migration_status(&self, job: &str) -> Result<super::MigrationStatus, ClientError> {
        self.get(&format!("/migrations/{job}")).await
    }

    /// Source: cancel while memory moves.
    pub async fn cancel_migration(&self, job: &str) -> Result<super::MigrationStatus, ClientError> {
        self.call::<(), _>(
            Method::POST,
            &format!("/migrations/{job}/cancel"),
            None,
            None,
        )
        .await
    }

    /// Source: extend the timeout while memory moves.
    pub async fn extend_migration(
        &self,
        job: &str,
        seconds: u64,
    ) -> Result<super::MigrationStatus, ClientError> {
        let body = super::ExtendTimeout { seconds };
        self.call(
            Method::POST,
            &format!("/migrations/{job}/extend"),
            Some(&body),
            None,
        )
        .await
    }

    /// Changes the bandwidth cap of a move this HVM sends (while memory moves); `None` lifts it.
    pub async fn set_migration_bandwidth(
        &self,
        job: &str,
        bandwidth_limit: Option<u64>,
    ) -> Result<super::MigrationStatus, ClientError> {
        let body = super::SetBandwidth { bandwidth_limit };
        self.call(
            Method::POST,
            &format!("/migrations/{job}/bandwidth"),
            Some(&body),
            None,
        )
        .await
    }

    /// A move as this HVM sees it, waiting up to `wait` (at most 5 s) for its phase to leave
    /// `phase` (long poll: the manager learns of the switch-over at once, not at its next poll).
    pub async fn migration_status_wait(
        &self,
        job: &str,
        phase: super::Phase,
        wait: std::time::Duration,
    ) -> Result<super::MigrationStatus, ClientError> {
        let wait_ms = wait.as_millis().min(5_000);
        self.get(&format!(
            "/migrations/{job}?phase={}&wait_ms={wait_ms}",
            phase.as_str()
        ))
        .await
    }

    /// Every move this HVM knows of: running ones and durable records left by a restart.
    pub async fn migrations(&self) -> Result<Vec<super::MigrationStatus>, ClientError> {
        self.get("/migrations").await
    }

    /// Source, after the destination resumed: log the vFCs out, keep the names to adopt, tell the
    /// destination over the migration path.
    pub async fn commit_migration(
        &self,
        job: &str,
        exchange: &super::NameExchange,
    ) -> Result<super::MigrationStatus, ClientError> {
        let body = super::CommitRequest {
            exchange: exchange.clone(),
        };
        self.call(
            Method::POST,
            &format!("/migrations/{job}/commit"),
            Some(&body),
            None,
        )
        .await
    }

    /// Destination, the commit point passed: commit locally and resume the LPAR (its vFCs stay on
    /// the migration WWPNs until [`Self::swap_migration`]).
    pub async fn resume_migration(&self, job: &str) -> Result<LparView, ClientError> {
        self.call::<(), _>(
            Method::POST,
            &format!("/migrations/{job}/resume"),
            None,
            None,
        )
        .await
    }

    /// Source, while it is paused at switch-over: the manager is still there (renewed every
    /// [`super::SWITCHOVER_LEASE_RENEWAL`]). Refused once the lease lapsed and the blades
    /// settle the job between themselves.
    pub async fn renew_switchover_lease(
        &self,
        job: &str,
    ) -> Result<super::MigrationStatus, ClientError> {
        self.call::<(), _>(
            Method::POST,
            &format!("/migrations/{job}/lease"),
            None,
            None,
        )
        .await
    }

    /// Destination, once the source logged out: the vFCs log in with the WWPNs.
    pub async fn swap_migration(&self, job: &str) -> Result<super::MigrationStatus, ClientError> {
        self.call::<(), _>(Method::POST, &format!("/migrations/{job}/swap"), None, None)
            .await
    }

    /// Clears "requires recovery" on an LPAR nothing else holds (it becomes Deactivated).
    pub async fn recover_lpar(&self, number: LparNumber) -> Result<LparView, ClientError> {
        self.call::<(), _>(
            Method::POST,
            &format!("/lpars/{number}/recover"),
            None,
            None,
        )
        .await
    }

    /// Source: let go of the LPAR after the commit.
    pub async fn release_migration(
        &self,
        job: &str,
        exchange: &super::NameExchange,
    ) -> Result<super::MigrationStatus, ClientError> {
        let body = super::Release {
            exchange: exchange.clone(),
        };
        self.call(
            Method::POST,
            &format!("/migrations/{job}/release"),
            Some(&body),
            None,
        )
        .await
    }

    /// Either side: do not commit; source resumes, destination scrubs.
    pub async fn abort_migration(&self, job: &str) -> Result<super::MigrationStatus, ClientError> {
        self.call::<(), _>(
            Method::POST,
            &format!("/migrations/{job}/abort"),
            None,
            None,
        )
        .await
    }

    /// Asks the guest OS of an LPAR to shut down (remote shutdown).
    pub async fn request_shutdown(
        &self,
        number: LparNumber,
        lease: Option<&str>,
    ) -> Result<LparView, ClientError> {
        self.call::<(), _>(
            Method::POST,
            &format!("/lpars/{number}/shutdown"),
            None,
            lease,
        )
        .await
    }

    /// Shutdown mode, destination: define the moved LPAR.
    pub async fn cold_define(
        &self,
        request: &super::ColdDefine,
        lease: Option<&str>,
    ) -> Result<super::ColdDefined, ClientError> {
        self.call(Method::POST, "/migrations/cold", Some(request), lease)
            .await
    }

    /// Shutdown mode, destination: what it defined for `job` (an `InvalidRequest` error when
    /// it defined nothing for it).
    pub async fn cold_move(&self, job: &str) -> Result<super::ColdDefined, ClientError> {
        self.get(&format!("/migrations/cold/{job}")).await
    }

    /// Shutdown mode, source: delete the moved LPAR and adopt the exchanged names.
    pub async fn release_lpar(
        &self,
        number: LparNumber,
        exchange: &super::NameExchange,
        lease: Option<&str>,
    ) -> Result<(), ClientError> {
        let body = super::Release {
            exchange: exchange.clone(),
        };
        self.call::<_, ()>(
            Method::POST,
            &format!("/lpars/{number}/release"),
            Some(&body),
            lease,
        )
        .await
    }

    /// Every lease currently held.
    pub async fn locks(&self) -> Result<Vec<Lease>, ClientError> {
        self.get("/locks").await
    }

    /// The HVM's WWN rollback marks.
    pub async fn wwn_rollbacks(&self) -> Result<Vec<super::WwnRollback>, ClientError> {
        self.get("/wwn-rollbacks").await
    }

    /// Marks an LPAR of the HVM: WWNs to roll back (idempotent for the same LPAR).
    pub async fn mark_wwn_rollback(
        &self,
        request: &super::MarkWwnRollback,
    ) -> Result<super::WwnRollback, ClientError> {
        self.call(Method::POST, "/wwn-rollbacks", Some(request), None)
            .await
    }

    /// Executes the mark of LPAR `number`: its vFCs log in with its own WWPNs, the mark is cleared.
    pub async fn execute_wwn_rollback(
        &self,
        number: LparNumber,
    ) -> Result<super::WwnRolledBack, ClientError> {
        self.call::<(), _>(
            Method::POST,
            &format!("/wwn-rollbacks/{number}/execute"),
            None,
            None,
        )
        .await
    }
}

/// An HTTP client that trusts only `tls`'s pinned certificate, with this module's timeouts and
/// no proxy (management traffic stays on the management network).
fn pinned_http_with(tls: rustls::ClientConfig) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .pool_idle_timeout(POOL_IDLE)
        .no_proxy()
        .build()
        .map_err(|e| format!("cannot build HTTP client: {e}"))
}

/// An HTTP client that trusts only the certificate `cert_pem`.
pub(crate) fn pinned_http(cert_pem: &str) -> Result<reqwest::Client, String> {
    let tls = pinned_client_config(cert_pem).map_err(|e| e.to_string())?;
    pinned_http_with(tls)
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
