//! Migration Path Setting on the blade (`/v1/migration-paths`).
//!
//! | method | route | body → answer |
//! | --- | --- | --- |
//! | GET | `/v1/migration-paths` | → [`MigrationPaths`] |
//! | PUT | `/v1/migration-paths` | [`SetMigrationPaths`] → [`MigrationPaths`] |
//!
//! A `PUT` replaces the whole list. It is refused, with nothing written, when another holder's
//! blade lease is in the way, while a migration runs on this HVM (the seed's "The specified
//! blade is busy"), or when a path is not valid ([`lparmover::paths::validate`], with this
//! blade's fleet network). The new list is applied to a copy of the state, persisted atomically
//! and only then made current, like every other change. When the primary path's address
//! changes, the migration listener (if one is bound) is bound anew on the new address before
//! the state is written and replaces the old one after: the next incoming move and Connectivity
//! Test use the new path without a restart of the HVM.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use lparmover::api::{LEASE_HEADER, LockTarget, LogLevel, MigrationPaths, SetMigrationPaths};
use lparmover::emg::{Emg, EmgError};

use crate::api::{ApiError, ApiJson};
use crate::blade::{BladeService, lock};

/// The routes, merged into the `/v1` router.
pub fn routes() -> Router<Arc<BladeService>> {
    Router::new().route("/migration-paths", get(list).put(set))
}

impl BladeService {
    fn paths_view(&self, listening: Option<SocketAddr>) -> MigrationPaths {
        let state = lock(&self.state);
        MigrationPaths {
            hvm: self.name.clone(),
            management: state.blade.hvm.management,
            paths: state.blade.hvm.migration_paths.clone(),
            listening,
        }
    }

    /// The migration paths and where the migration listener is bound.
    pub async fn migration_paths(&self) -> MigrationPaths {
        let listening = self
            .migrations
            .listener
            .lock()
            .await
            .as_ref()
            .and_then(|l| l.local_addr().ok());
        self.paths_view(listening)
    }

    /// Replaces the migration paths (see the module docs for what is refused).
    pub async fn set_migration_paths(
        &self,
        request: &SetMigrationPaths,
        lease: Option<&str>,
    ) -> Result<MigrationPaths, EmgError> {
        self.check_lock(LockTarget::Blade, lease)?;
        // Held to the end: no incoming move binds or uses the listener meanwhile.
        let mut listener = self.migrations.listener.lock().await;
        let busy = |detail: String| {
            EmgError::new(
                Emg::BladeBusyMigration,
                format!(
                    "HVM {}: cannot change the migration paths while {detail}",
                    self.name
                ),
            )
        };
        if self.migrations.any_running() {
            return Err(busy("a migration runs on it".to_owned()));
        }
        let new_primary = request
            .paths
            .iter()
            .find(|p| p.primary)
            .map(|p| IpAddr::V4(p.ip));
        // Validate against the current blade first, so a bad list never binds anything.
        {
            let state = lock(&self.state);
            if state.condition().migration_in_progress {
                return Err(busy("one of its LPARs is being migrated".to_owned()));
            }
            lparmover::paths::validate(&state.blade, &request.paths, self.network)
                .map_err(|e| e.emg())?;
        }
        let bound = listener.as_ref().and_then(|l| l.local_addr().ok());
        // Some(new listener or none) when the bound listener must go; None: keep what is there.
        let replacement = match (bound, new_primary) {
            (Some(addr), Some(ip)) if addr.ip() != ip => {
                Some(Some(self.migrations.bind_listener(ip).map_err(|e| {
                    EmgError::new(
                        Emg::InvalidMigrationPathSetting,
                        format!("cannot listen on the new primary path {ip}: {}", e.detail),
                    )
                })?))
            }
            (Some(_), None) => Some(None),
            (None, Some(ip)) => {
                // Nothing bound yet (it binds at the first incoming move): prove the address
                // is usable on this host now, not when a move needs it.
                std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).map_err(|e| {
                    EmgError::new(
                        Emg::InvalidMigrationPathSetting,
                        format!("cannot listen on the new primary path {ip}: {e}"),
                    )
                })?;
                None
            }
            _ => None,
        };
        let before = lock(&self.state).blade.hvm.migration_paths.clone();
        self.mutate(|s| {
            // Checked again under the state lock: the state may have changed since.
            if s.condition().migration_in_progress {
                return Err(busy("one of its LPARs is being migrated".to_owned()));
            }
            lparmover::paths::validate(&s.blade, &request.paths, self.network)
                .map_err(|e| e.emg())?;
            s.blade.hvm.migration_paths = request.paths.clone();
            Ok(())
        })?;
        if let Some(next) = replacement {
            *listener = next;
        }
        let listening = listener.as_ref().and_then(|l| l.local_addr().ok());
        if before != request.paths {
            let shown: Vec<String> = request
                .paths
                .iter()
                .map(|p| {
                    format!(
                        "{}{} {}/{} on {}{}",
                        p.name,
                        if p.primary { " (primary)" } else { "" },
                        p.ip,
                        p.prefix,
                        p.segment,
                        p.vlan.map_or(String::new(), |v| format!(" VLAN {v}"))
                    )
                })
                .collect();
            self.log.record(
                LogLevel::Info,
                "config",
                format!(
                    "migration paths set: {}{}",
                    if shown.is_empty() {
                        "none".to_owned()
                    } else {
                        shown.join("; ")
                    },
                    listening.map_or(String::new(), |a| format!("; migration listener on {a}"))
                ),
            );
        }
        Ok(self.paths_view(listening))
    }
}

async fn list(State(s): State<Arc<BladeService>>) -> Json<MigrationPaths> {
    Json(s.migration_paths().await)
}

async fn set(
    State(s): State<Arc<BladeService>>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<SetMigrationPaths>,
) -> Result<Json<MigrationPaths>, ApiError> {
    let lease = headers
        .get(LEASE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(Json(
        s.set_migration_paths(&request, lease.as_deref()).await?,
    ))
}
