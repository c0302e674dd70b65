//! A client of one storage array, trusting only its pinned certificate.

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    ArrayError, ArrayInfo, AssignWwn, Credentials, FabricLogin, FabricLoginRequest,
    FabricLogoutRequest, HostGroup, HostGroupBackup, Lu, LuDigest, LuNumber, Pair, RenameWwn,
    RestoreRequest, SESSION_HEADER, Session, SetPair, SetSecurity,
};
use crate::api::API_VERSION;
use crate::api::client::{error_chain, pinned_http};
use crate::model::{ArrayPort, HostGroupNumber, Wwpn};
use crate::profile::ProfileArray;

/// A failed call to an array.
#[derive(Debug, thiserror::Error)]
pub enum ArrayClientError {
    /// The array refused, with a catalogue error.
    #[error("array {array}: {error}")]
    Refused {
        array: String,
        error: Box<ArrayError>,
    },
    /// The array could not be reached.
    #[error(
        "array {array} cannot be reached: {detail}; check that it runs (`hvmsim fleet` starts it) and that the profile has its current address"
    )]
    Unreachable { array: String, detail: String },
    /// The answer is not what this client understands.
    #[error("array {array} answered something this storagecli does not understand: {detail}")]
    Protocol { array: String, detail: String },
}

impl ArrayClientError {
    /// The catalogue error, when the array answered with one.
    pub fn refusal(&self) -> Option<&ArrayError> {
        match self {
            Self::Refused { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// A client bound to one array.
#[derive(Clone)]
pub struct ArrayClient {
    name: String,
    base: String,
    token: String,
    session: Option<String>,
    http: reqwest::Client,
}

// By hand, so that secrets (token, session) never reach a log or an error message through `{:?}`.
impl std::fmt::Debug for ArrayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArrayClient")
            .field("name", &self.name)
            .field("base", &self.base)
            .field("token", &"<redacted>")
            .field("session", &"<redacted>")
            .finish()
    }
}

impl ArrayClient {
    /// A client for the array of a profile entry.
    pub fn new(array: &ProfileArray) -> Result<Self, ArrayClientError> {
        Self::connect(&array.name, &array.url, &array.cert_pem, &array.token)
    }

    /// A client of the fabric plane only (blades: FC logins need no token).
    pub fn fabric(name: &str, url: &str, cert_pem: &str) -> Result<Self, ArrayClientError> {
        Self::connect(name, url, cert_pem, "")
    }

    fn connect(
        name: &str,
        url: &str,
        cert_pem: &str,
        token: &str,
    ) -> Result<Self, ArrayClientError> {
        let http = pinned_http(cert_pem).map_err(|detail| ArrayClientError::Protocol {
            array: name.to_owned(),
            detail,
        })?;
        Ok(Self {
            name: name.to_owned(),
            base: url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            session: None,
            http,
        })
    }

    /// The array's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Uses `session` (from [`Self::login`]) on later calls.
    pub fn with_session(mut self, session: Option<String>) -> Self {
        self.session = session;
        self
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ArrayClientError> {
        let (url, request) = self.request(method, path);
        let request = match body {
            Some(body) => request.json(body),
            None => request,
        };
        let (status, bytes) = self.send(&url, request).await?;
        let body: &[u8] = if status == StatusCode::NO_CONTENT || bytes.is_empty() {
            b"null"
        } else {
            &bytes
        };
        serde_json::from_slice(body).map_err(|e| ArrayClientError::Protocol {
            array: self.name.clone(),
            detail: format!("{url}: {e}"),
        })
    }

    fn request(&self, method: Method, path: &str) -> (String, reqwest::RequestBuilder) {
        let url = format!("{}/{API_VERSION}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if !self.token.is_empty() {
            request = request.bearer_auth(&self.token);
        }
        if let Some(session) = &self.session {
            request = request.header(SESSION_HEADER, session);
        }
        (url, request)
    }

    /// Sends `request`; a success's status and body, or the array's refusal.
    async fn send(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, bytes::Bytes), ArrayClientError> {
        let unreachable = |detail: String| ArrayClientError::Unreachable {
            array: self.name.clone(),
            detail,
        };
        let response = request
            .send()
            .await
            .map_err(|e| unreachable(format!("{url}: {}", error_chain(&e))))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| unreachable(format!("{url}: reading the answer: {}", error_chain(&e))))?;
        if status.is_success() {
            return Ok((status, bytes));
        }
        match serde_json::from_slice::<ArrayError>(&bytes) {
            Ok(error) => Err(ArrayClientError::Refused {
                array: self.name.clone(),
                error: Box::new(error),
            }),
            Err(_) => Err(ArrayClientError::Protocol {
                array: self.name.clone(),
                detail: format!(
                    "{url}: HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ),
            }),
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ArrayClientError> {
        self.call::<(), T>(Method::GET, path, None).await
    }

    /// What the array is (`auunitref`).
    pub async fn info(&self) -> Result<ArrayInfo, ArrayClientError> {
        self.get("/array").await
    }

    /// Logs in (`aulogin`); use the session with [`Self::with_session`].
    pub async fn login(&self, credentials: &Credentials) -> Result<Session, ArrayClientError> {
        self.call(Method::POST, "/session", Some(credentials)).await
    }

    /// Ends this client's session (`aulogout`).
    pub async fn logout(&self) -> Result<(), ArrayClientError> {
        self.call::<(), ()>(Method::DELETE, "/session", None).await
    }

    /// Sets password protection or account authentication (`auaccountenv -set`).
    pub async fn set_security(&self, request: &SetSecurity) -> Result<ArrayInfo, ArrayClientError> {
        self.call(Method::PUT, "/security", Some(request)).await
    }

    /// Removes the protection (`auaccountenv -rm`).
    pub async fn remove_security(&self) -> Result<ArrayInfo, ArrayClientError> {
        self.call::<(), ArrayInfo>(Method::DELETE, "/security", None)
            .await
    }

    /// Every host group with its WWPNs and LUNs (`auhgwwn -refer`).
    pub async fn host_groups(&self) -> Result<Vec<HostGroup>, ArrayClientError> {
        self.get("/host-groups").await
    }

    /// The host groups as a backup document (`auhgout`).
    pub async fn backup(&self) -> Result<HostGroupBackup, ArrayClientError> {
        self.get("/host-groups/backup").await
    }

    /// Registers a WWPN to a host group.
    pub async fn assign(
        &self,
        port: ArrayPort,
        group: HostGroupNumber,
        request: &AssignWwn,
    ) -> Result<HostGroup, ArrayClientError> {
        self.call(
            Method::POST,
            &format!("/host-groups/{port}/{group}/wwns"),
            Some(request),
        )
        .await
    }

    /// Removes a WWPN from a host group.
    pub async fn remove(
        &self,
        port: ArrayPort,
        group: HostGroupNumber,
        wwpn: Wwpn,
    ) -> Result<HostGroup, ArrayClientError> {
        self.call::<(), HostGroup>(
            Method::DELETE,
            &format!("/host-groups/{port}/{group}/wwns/{:016x}", wwpn.get()),
            None,
        )
        .await
    }

    /// Gives a WWPN of a host group a nickname.
    pub async fn rename(
        &self,
        port: ArrayPort,
        group: HostGroupNumber,
        wwpn: Wwpn,
        request: &RenameWwn,
    ) -> Result<HostGroup, ArrayClientError> {
        self.call(
            Method::PATCH,
            &format!("/host-groups/{port}/{group}/wwns/{:016x}", wwpn.get()),
            Some(request),
        )
        .await
    }

    /// The array's LUs.
    pub async fn lus(&self) -> Result<Vec<Lu>, ArrayClientError> {
        self.get("/lus").await
    }

    /// Who is logged in to the fabric.
    pub async fn fabric_logins(&self) -> Result<Vec<FabricLogin>, ArrayClientError> {
        self.get("/fabric/logins").await
    }

    /// Logs a vFC in.
    pub async fn fabric_login(
        &self,
        request: &FabricLoginRequest,
    ) -> Result<FabricLogin, ArrayClientError> {
        self.call(Method::POST, "/fabric/login", Some(request))
            .await
    }

    /// Logs a vFC out.
    pub async fn fabric_logout(
        &self,
        request: &FabricLogoutRequest,
    ) -> Result<(), ArrayClientError> {
        self.call(Method::POST, "/fabric/logout", Some(request))
            .await
    }

    /// Every pair.
    pub async fn pairs(&self) -> Result<Vec<Pair>, ArrayClientError> {
        self.get("/pairs").await
    }

    /// The pair whose MV is `mv` (`iSMrc_query`).
    pub async fn pair(&self, mv: LuNumber) -> Result<Pair, ArrayClientError> {
        self.get(&format!("/pairs/{mv}")).await
    }

    /// Sets two LUs as a pair (`iSMrc_pair -pair`).
    pub async fn set_pair(&self, request: &SetPair) -> Result<Pair, ArrayClientError> {
        self.call(Method::POST, "/pairs", Some(request)).await
    }

    /// Cancels a separated pair (`iSMrc_pair -unpair`).
    pub async fn unset_pair(&self, mv: LuNumber) -> Result<(), ArrayClientError> {
        self.call::<(), ()>(Method::DELETE, &format!("/pairs/{mv}"), None)
            .await
    }

    /// Starts Replicate (`iSMrc_replicate`).
    pub async fn replicate(&self, mv: LuNumber) -> Result<Pair, ArrayClientError> {
        self.call::<(), Pair>(Method::POST, &format!("/pairs/{mv}/replicate"), None)
            .await
    }

    /// Starts Separate (`iSMrc_separate`).
    pub async fn separate(&self, mv: LuNumber) -> Result<Pair, ArrayClientError> {
        self.call::<(), Pair>(Method::POST, &format!("/pairs/{mv}/separate"), None)
            .await
    }

    /// Starts Restore (`iSMrc_restore`).
    pub async fn restore(
        &self,
        mv: LuNumber,
        request: &RestoreRequest,
    ) -> Result<Pair, ArrayClientError> {
        self.call(Method::POST, &format!("/pairs/{mv}/restore"), Some(request))
            .await
    }

    /// The digest of an LU's content.
    pub async fn lu_digest(&self, lu: LuNumber) -> Result<LuDigest, ArrayClientError> {
        self.get(&format!("/lus/{lu}/digest")).await
    }

    /// Writes `data` to LU `lu` at byte `offset`.
    pub async fn lu_write(
        &self,
        lu: LuNumber,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<(), ArrayClientError> {
        let (url, request) = self.request(Method::PUT, &format!("/lus/{lu}/data?offset={offset}"));
        let request = request
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(data);
        self.send(&url, request).await.map(|_| ())
    }

    /// Reads `length` bytes of LU `lu` from byte `offset`.
    pub async fn lu_read(
        &self,
        lu: LuNumber,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, ArrayClientError> {
        let (url, request) = self.request(
            Method::GET,
            &format!("/lus/{lu}/data?offset={offset}&length={length}"),
        );
        self.send(&url, request).await.map(|(_, b)| b.to_vec())
    }
}
