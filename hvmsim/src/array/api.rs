//! The array's HTTPS API (`lparmover::api::array` has the route table): parses requests into
//! calls on [`ArrayService`] and renders answers and [`ArrayError`]s as JSON.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lparmover::api::API_VERSION;
use lparmover::api::array::{
    ArrayError, ArrayErrorCode, AssignWwn, Credentials, FabricLoginRequest, FabricLogoutRequest,
    LuDigest, LuNumber, LuRange, Pair, RenameWwn, RestoreRequest, SESSION_HEADER, SetPair,
    SetSecurity,
};
use lparmover::model::{ArrayPort, HostGroupNumber, Wwpn};

use super::service::ArrayService;

/// An [`ArrayError`] as an HTTP answer.
struct Refusal(ArrayError);

impl From<ArrayError> for Refusal {
    fn from(e: ArrayError) -> Self {
        Self(e)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.entry().http_status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0)).into_response()
    }
}

/// A JSON body whose parse errors come back as catalogue errors naming the problem.
struct Body<T>(T);

impl<S, T> FromRequest<S> for Body<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = Refusal;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Ok(read) =
            tokio::time::timeout(crate::httpd::BODY_READ, Json::<T>::from_request(req, state))
                .await
        else {
            return Err(invalid(crate::api::body_too_slow()));
        };
        match read {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(Refusal(ArrayError::new(
                ArrayErrorCode::InvalidRequest,
                rejection.body_text(),
            ))),
        }
    }
}

type Svc = State<Arc<ArrayService>>;
type Answer<T> = Result<Json<T>, Refusal>;

fn invalid(e: impl std::fmt::Display) -> Refusal {
    Refusal(ArrayError::new(
        ArrayErrorCode::InvalidRequest,
        e.to_string(),
    ))
}

fn session(headers: &HeaderMap) -> Option<&str> {
    headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok())
}

/// Port, group number and (optionally) WWPN from the path.
fn group_of(port: &str, group: &str) -> Result<(ArrayPort, HostGroupNumber), Refusal> {
    Ok((
        port.parse().map_err(invalid)?,
        group.parse().map_err(invalid)?,
    ))
}

async fn require_token(State(token): State<Arc<String>>, request: Request, next: Next) -> Response {
    if crate::api::bearer_ok(request.headers(), &token) {
        next.run(request).await
    } else {
        Refusal(ArrayError::new(
            ArrayErrorCode::Unauthorized,
            "missing or wrong bearer token",
        ))
        .into_response()
    }
}

async fn info(State(s): Svc) -> Answer<lparmover::api::array::ArrayInfo> {
    Ok(Json(s.info()))
}

async fn login(
    State(s): Svc,
    Body(c): Body<Credentials>,
) -> Answer<lparmover::api::array::Session> {
    Ok(Json(s.login(&c)?))
}

async fn logout(State(s): Svc, headers: HeaderMap) -> StatusCode {
    s.logout(session(&headers));
    StatusCode::NO_CONTENT
}

async fn set_security(
    State(s): Svc,
    headers: HeaderMap,
    Body(r): Body<SetSecurity>,
) -> Answer<lparmover::api::array::ArrayInfo> {
    s.authorize(session(&headers))?;
    Ok(Json(s.set_security(&r)?))
}

async fn remove_security(
    State(s): Svc,
    headers: HeaderMap,
) -> Answer<lparmover::api::array::ArrayInfo> {
    s.authorize(session(&headers))?;
    Ok(Json(s.remove_security()?))
}

async fn host_groups(
    State(s): Svc,
    headers: HeaderMap,
) -> Answer<Vec<lparmover::api::array::HostGroup>> {
    s.authorize(session(&headers))?;
    Ok(Json(s.host_groups()))
}

async fn backup(
    State(s): Svc,
    headers: HeaderMap,
) -> Answer<lparmover::api::array::HostGroupBackup> {
    s.authorize(session(&headers))?;
    Ok(Json(s.backup()))
}

async fn host_group(
    State(s): Svc,
    headers: HeaderMap,
    Path((port, group)): Path<(String, String)>,
) -> Answer<lparmover::api::array::HostGroup> {
    s.authorize(session(&headers))?;
    let (port, group) = group_of(&port, &group)?;
    Ok(Json(s.host_group(port, group)?))
}

async fn assign(
    State(s): Svc,
    headers: HeaderMap,
    Path((port, group)): Path<(String, String)>,
    Body(r): Body<AssignWwn>,
) -> Answer<lparmover::api::array::HostGroup> {
    s.authorize(session(&headers))?;
    let (port, group) = group_of(&port, &group)?;
    Ok(Json(s.assign(port, group, &r)?))
}

async fn remove(
    State(s): Svc,
    headers: HeaderMap,
    Path((port, group, wwpn)): Path<(String, String, String)>,
) -> Answer<lparmover::api::array::HostGroup> {
    s.authorize(session(&headers))?;
    let (port, group) = group_of(&port, &group)?;
    let wwpn: Wwpn = wwpn.parse().map_err(invalid)?;
    Ok(Json(s.remove(port, group, wwpn)?))
}

async fn rename(
    State(s): Svc,
    headers: HeaderMap,
    Path((port, group, wwpn)): Path<(String, String, String)>,
    Body(r): Body<RenameWwn>,
) -> Answer<lparmover::api::array::HostGroup> {
    s.authorize(session(&headers))?;
    let (port, group) = group_of(&port, &group)?;
    let wwpn: Wwpn = wwpn.parse().map_err(invalid)?;
    Ok(Json(s.rename(port, group, wwpn, &r.nickname)?))
}

async fn lus(State(s): Svc, headers: HeaderMap) -> Answer<Vec<lparmover::api::array::Lu>> {
    s.authorize(session(&headers))?;
    Ok(Json(s.lus()))
}

fn lu_of(text: &str) -> Result<LuNumber, Refusal> {
    text.parse().map_err(invalid)
}

fn range(query: Result<Query<LuRange>, QueryRejection>) -> Result<LuRange, Refusal> {
    query
        .map(|Query(r)| r)
        .map_err(|e| invalid(format!("{e}; give ?offset=BYTES[&length=BYTES]")))
}

async fn lu_digest(State(s): Svc, headers: HeaderMap, Path(lu): Path<String>) -> Answer<LuDigest> {
    s.authorize(session(&headers))?;
    Ok(Json(s.lu_digest(lu_of(&lu)?)?))
}

async fn lu_read(
    State(s): Svc,
    headers: HeaderMap,
    Path(lu): Path<String>,
    query: Result<Query<LuRange>, QueryRejection>,
) -> Result<Vec<u8>, Refusal> {
    s.authorize(session(&headers))?;
    let r = range(query)?;
    let length = r
        .length
        .ok_or_else(|| invalid("a read needs &length=BYTES"))?;
    Ok(s.lu_read(lu_of(&lu)?, r.offset, length)?)
}

async fn lu_write(
    State(s): Svc,
    headers: HeaderMap,
    Path(lu): Path<String>,
    query: Result<Query<LuRange>, QueryRejection>,
    body: axum::body::Bytes,
) -> Result<StatusCode, Refusal> {
    s.authorize(session(&headers))?;
    let r = range(query)?;
    if r.length.is_some_and(|l| l != body.len() as u64) {
        return Err(invalid(
            "length does not match the body; leave it out for writes",
        ));
    }
    s.lu_write(lu_of(&lu)?, r.offset, &body)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn pairs(State(s): Svc, headers: HeaderMap) -> Answer<Vec<Pair>> {
    s.authorize(session(&headers))?;
    Ok(Json(s.pairs()))
}

async fn set_pair(State(s): Svc, headers: HeaderMap, Body(r): Body<SetPair>) -> Answer<Pair> {
    s.authorize(session(&headers))?;
    Ok(Json(s.set_pair(&r)?))
}

async fn pair(State(s): Svc, headers: HeaderMap, Path(mv): Path<String>) -> Answer<Pair> {
    s.authorize(session(&headers))?;
    Ok(Json(s.pair(lu_of(&mv)?)?))
}

async fn unset_pair(
    State(s): Svc,
    headers: HeaderMap,
    Path(mv): Path<String>,
) -> Result<StatusCode, Refusal> {
    s.authorize(session(&headers))?;
    s.unset_pair(lu_of(&mv)?)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn replicate(State(s): Svc, headers: HeaderMap, Path(mv): Path<String>) -> Answer<Pair> {
    s.authorize(session(&headers))?;
    Ok(Json(s.replicate(lu_of(&mv)?)?))
}

async fn separate(State(s): Svc, headers: HeaderMap, Path(mv): Path<String>) -> Answer<Pair> {
    s.authorize(session(&headers))?;
    Ok(Json(s.separate(lu_of(&mv)?)?))
}

async fn restore(
    State(s): Svc,
    headers: HeaderMap,
    Path(mv): Path<String>,
    Body(r): Body<RestoreRequest>,
) -> Answer<Pair> {
    s.authorize(session(&headers))?;
    Ok(Json(s.restore(lu_of(&mv)?, r.mode)?))
}

async fn logins(State(s): Svc) -> Answer<Vec<lparmover::api::array::FabricLogin>> {
    Ok(Json(s.logins()))
}

async fn fabric_login(
    State(s): Svc,
    Body(r): Body<FabricLoginRequest>,
) -> Answer<lparmover::api::array::FabricLogin> {
    Ok(Json(s.fabric_login(&r)?))
}

async fn fabric_logout(
    State(s): Svc,
    Body(r): Body<FabricLogoutRequest>,
) -> Result<StatusCode, Refusal> {
    s.fabric_logout(&r)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn wrong_method(request: Request) -> Refusal {
    Refusal(ArrayError::new(
        ArrayErrorCode::MethodNotAllowed,
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    ))
}

/// A handler that panicked: 500 with an id the log carries too.
fn panicked(detail: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let id = crate::serve::log_panic(detail.as_ref(), None);
    Refusal(ArrayError::new(
        ArrayErrorCode::Internal,
        format!("the array failed while answering ({id})"),
    ))
    .into_response()
}

async fn no_route() -> Refusal {
    Refusal(ArrayError::new(
        ArrayErrorCode::NotFound,
        format!("routes live under /{API_VERSION}/"),
    ))
}

/// The whole API.
pub fn router(service: Arc<ArrayService>, token: String) -> Router {
    let managed = Router::new()
        .route("/array", get(info))
        .route("/session", post(login).delete(logout))
        .route(
            "/security",
            axum::routing::put(set_security).delete(remove_security),
        )
        .route("/host-groups", get(host_groups))
        .route("/host-groups/backup", get(backup))
        .route("/host-groups/{port}/{group}", get(host_group))
        .route("/host-groups/{port}/{group}/wwns", post(assign))
        .route(
            "/host-groups/{port}/{group}/wwns/{wwpn}",
            axum::routing::delete(remove).patch(rename),
        )
        .route("/lus", get(lus))
        .route("/lus/{lu}/digest", get(lu_digest))
        .route("/lus/{lu}/data", get(lu_read).put(lu_write))
        .route("/pairs", get(pairs).post(set_pair))
        .route("/pairs/{mv}", get(pair).delete(unset_pair))
        .route("/pairs/{mv}/replicate", post(replicate))
        .route("/pairs/{mv}/separate", post(separate))
        .route("/pairs/{mv}/restore", post(restore))
        .route_layer(middleware::from_fn_with_state(
            Arc::new(token),
            require_token,
        ));
    // FC has no password: any vFC may ask to log in; LUN security decides what it reaches.
    let fabric = Router::new()
        .route("/fabric/logins", get(logins))
        .route("/fabric/login", post(fabric_login))
        .route("/fabric/logout", post(fabric_logout));
    Router::new()
        .nest(
            &format!("/{API_VERSION}"),
            managed
                .merge(fabric)
                .method_not_allowed_fallback(wrong_method),
        )
        .fallback(no_route)
        .layer(axum::extract::DefaultBodyLimit::max(crate::api::MAX_BODY))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .with_state(service)
}
