//! The blade's side of the FC fabric: its vFCs log in at the arrays their FC ports are cabled to,
//! by WWPN, through the blade port and the array port (as real FC does; no password).
//!
//! The blade decides which WWPN each LPAR's vFCs use ([`BladeService::set_fc_logins`]); this
//! agent makes the arrays' fabric agree, in the background: it logs out what is no longer wanted
//! first, then logs in what is (again every second: a login of the same vFC is a no-op on the
//! array, and an array that lost its state learns it back). The array refuses a WWPN that is
//! active elsewhere, so at switch-over the destination's WWPN login waits until the source has
//! logged out; the array, not the blade, is the witness that no WWPN is active twice. While an
//! array cannot be reached, the vFCs cabled to it show the "WWN unknown" state (table 7-2).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use lparmover::api::array::{
    ArrayClient, ArrayClientError, ArrayErrorCode, FabricLoginRequest, FabricLogoutRequest,
};
use lparmover::api::{FabricLoginState, FabricState};
use lparmover::model::{ArrayName, FcPort, StorageCable, Wwpn};
use tokio::sync::Notify;

use crate::blade::{BladeService, lock};

/// How often the agent logs its wanted WWPNs in again when nothing wakes it.
const REFRESH: Duration = Duration::from_secs(1);
/// How soon it tries again while a login waits for another vFC to log out.
const RETRY_PENDING: Duration = Duration::from_millis(100);

/// Where one array's fabric is: its state directory, whose endpoint and certificate are read
/// again whenever the array is not answering (a restarted array may listen elsewhere).
#[derive(Debug)]
struct ArrayLink {
    dir: PathBuf,
    name: ArrayName,
    client: Option<ArrayClient>,
}

impl ArrayLink {
    fn client(&mut self) -> Result<ArrayClient, String> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        #[derive(serde::Deserialize)]
        struct Endpoint {
            url: String,
        }
        let read = |name: &str| {
            std::fs::read(self.dir.join(name))
                .map_err(|e| format!("array {} has not published {name}: {e}", self.name))
        };
        let endpoint: Endpoint = serde_json::from_slice(&read("endpoint.json")?)
            .map_err(|e| format!("array {}: endpoint.json: {e}", self.name))?;
        let cert = String::from_utf8_lossy(&read("identity/cert.pem")?).into_owned();
        let client = ArrayClient::fabric(self.name.as_str(), &endpoint.url, &cert)
            .map_err(|e| e.to_string())?;
        self.client = Some(client.clone());
        Ok(client)
    }
}

/// A WWPN the blade wants logged in, and through which ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// The blade's FC port.
    pub port: FcPort,
    /// Where its cable goes.
    pub cable: StorageCable,
}

/// The agent of one blade.
#[derive(Debug)]
pub struct FabricAgent {
    blade: String,
    /// The arrays it serves (fixed at start; `links` is locked while a round runs).
    served: Vec<ArrayName>,
    links: tokio::sync::Mutex<Vec<ArrayLink>>,
    /// What the arrays said about each wanted WWPN.
    states: Mutex<BTreeMap<Wwpn, FabricLoginState>>,
    /// WWPNs this blade logged in, and where.
    logged: Mutex<BTreeMap<Wwpn, ArrayName>>,
    wake: Notify,
}

impl FabricAgent {
    /// An agent for blade `blade` with the arrays whose state directories are `dirs`.
    pub fn new(blade: &str, dirs: &[PathBuf]) -> anyhow::Result<Arc<Self>> {
        let mut links = Vec::new();
        for dir in dirs {
            #[derive(serde::Deserialize)]
            struct Named {
                name: ArrayName,
            }
            let text = std::fs::read(dir.join("endpoint.json")).map_err(|e| {
                anyhow::anyhow!(
                    "{} is not the state directory of a started array (no endpoint.json: {e}); start the array first",
                    dir.display()
                )
            })?;
            let named: Named = serde_json::from_slice(&text)?;
            links.push(ArrayLink {
                dir: dir.clone(),
                name: named.name,
                client: None,
            });
        }
        Ok(Arc::new(Self {
            blade: blade.to_owned(),
            served: links.iter().map(|l| l.name.clone()).collect(),
            links: tokio::sync::Mutex::new(links),
            states: Mutex::new(BTreeMap::new()),
            logged: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
        }))
    }

    /// Whether the agent reaches array `name`.
    pub fn serves(&self, name: &ArrayName) -> bool {
        self.served.contains(name)
    }

    /// Reconciles soon.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// What the arrays said about `wwpns`.
    pub fn states_of(&self, wwpns: &[Wwpn]) -> Vec<FabricState> {
        let states = lock(&self.states);
        wwpns
            .iter()
            .filter_map(|w| {
                states.get(w).map(|s| FabricState {
                    wwpn: *w,
                    state: s.clone(),
                })
            })
            .collect()
    }

    /// Runs until the blade is gone.
    pub fn spawn(self: &Arc<Self>, blade: Weak<BladeService>) {
        let agent = self.clone();
        tokio::spawn(async move {
            loop {
                let Some(service) = blade.upgrade() else {
                    return;
                };
                let wanted = service.wanted_fabric();
                drop(service);
                let pending = agent.reconcile(&wanted).await;
                let pause = if pending { RETRY_PENDING } else { REFRESH };
                tokio::select! {
                    () = agent.wake.notified() => {}
                    () = tokio::time::sleep(pause) => {}
                }
            }
        });
    }

    /// Logs out what is not wanted, then logs in what is; returns whether a login waits for
    /// another vFC.
    async fn reconcile(&self, wanted: &BTreeMap<Wwpn, Wanted>) -> bool {
        let mut links = self.links.lock().await;
        let stale: Vec<(Wwpn, ArrayName)> = lock(&self.logged)
            .iter()
            .filter(|(w, a)| wanted.get(w).is_none_or(|x| &x.cable.array != *a))
            .map(|(w, a)| (*w, a.clone()))
            .collect();
        for (wwpn, array) in stale {
            let Some(link) = links.iter_mut().find(|l| l.name == array) else {
                lock(&self.logged).remove(&wwpn);
                continue;
            };
            let outcome = match link.client() {
                Ok(c) => c
                    .fabric_logout(&FabricLogoutRequest {
                        wwpn,
                        blade: self.blade.clone(),
                    })
                    .await
                    .map_err(Some),
                Err(_) => Err(None),
            };
            match outcome {
                Ok(()) => {
                    tracing::info!(%wwpn, %array, "FC logout");
                    lock(&self.logged).remove(&wwpn);
                }
                Err(Some(ArrayClientError::Refused { error, .. }))
                    if error.code == ArrayErrorCode::NotLoggedIn =>
                {
                    lock(&self.logged).remove(&wwpn);
                }
                Err(e) => {
                    // Kept: tried again on the next round.
                    if let Some(e) = e {
                        link.client = None;
                        tracing::debug!(%wwpn, %array, error = %e, "FC logout failed");
                    }
                }
            }
        }
        let mut pending = false;
        let mut states = BTreeMap::new();
        for (wwpn, want) in wanted {
            let Some(link) = links.iter_mut().find(|l| l.name == want.cable.array) else {
                continue;
            };
            let state = match link.client() {
                Err(reason) => FabricLoginState::Unknown { reason },
                Ok(c) => match c
                    .fabric_login(&FabricLoginRequest {
                        wwpn: *wwpn,
                        blade: self.blade.clone(),
                        blade_port: want.port,
                        array_port: want.cable.port,
                    })
                    .await
                {
                    Ok(_) => {
                        let fresh = lock(&self.logged)
                            .insert(*wwpn, want.cable.array.clone())
                            .is_none();
                        if fresh {
                            tracing::info!(%wwpn, array = %want.cable.array, port = %want.port, "FC login");
                        }
                        FabricLoginState::LoggedIn
                    }
                    Err(ArrayClientError::Refused { error, .. }) => match error.code {
                        ArrayErrorCode::WwpnAlreadyLoggedIn => {
                            pending = true;
                            FabricLoginState::Waiting {
                                reason: error.detail.clone(),
                            }
                        }
                        _ => FabricLoginState::Refused {
                            reason: error.to_string(),
                        },
                    },
                    Err(e) => {
                        link.client = None;
                        FabricLoginState::Unknown {
                            reason: e.to_string(),
                        }
                    }
                },
            };
            states.insert(*wwpn, state);
        }
        *lock(&self.states) = states;
        pending
    }

    /// Waits until every one of `wwpns` (each cabled to an array this agent serves) is logged
    /// in; `Err` names the first that the array refused or could not confirm within `timeout`.
    pub async fn confirm(&self, wwpns: &[Wwpn], timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            self.wake();
            tokio::time::sleep(Duration::from_millis(20)).await;
            let states = self.states_of(wwpns);
            let unsettled = states
                .iter()
                .find(|s| s.state != FabricLoginState::LoggedIn);
            match unsettled {
                // Every one answered (a WWPN the agent has not tried yet has no state).
                None if states.len() == wwpns.len() => return Ok(()),
                None if Instant::now() >= deadline => {
                    return Err("the array did not answer the FC login in time".to_owned());
                }
                None => {}
                Some(FabricState {
                    wwpn,
                    state: FabricLoginState::Refused { reason },
                }) => return Err(format!("{wwpn}: {reason}")),
                Some(s) if Instant::now() >= deadline => {
                    return Err(format!("{}: {}", s.wwpn, s.state.label()));
                }
                Some(_) => {}
            }
        }
    }
}
