//! The management API over HTTPS: parses requests into calls on [`BladeService`] and renders
//! answers and catalogue errors as JSON. No HVM logic lives here.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lparmover::api::{API_VERSION, LEASE_HEADER, LockRequest, WorkloadUpdate};
use lparmover::emg::{Emg, EmgError};
use lparmover::model::{LparName, LparNumber, LparRequest};
use serde::Deserialize;

use crate::blade::BladeService;

/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

/// A catalogue error as an HTTP answer.
pub struct ApiError(pub EmgError);

impl From<EmgError> for ApiError {
    fn from(e: EmgError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.kind.entry().http_status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0)).into_response()
    }
}

/// JSON body whose parse errors come back as catalogue errors naming the problem.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Ok(read) =
            tokio::time::timeout(crate::httpd::BODY_READ, Json::<T>::from_request(req, state))
                .await
        else {
            return Err(ApiError(EmgError::new(
                Emg::InvalidRequest,
                body_too_slow(),
            )));
        };
        match read {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    return Err(ApiError(EmgError::new(
                        Emg::RequestTooLarge,
                        format!("the body is larger than {MAX_BODY} bytes"),
                    )));
                }
                let text = rejection.body_text();
                // An LPAR named with the HVM's placeholder has its own catalogue row.
                let kind = if text.contains(LparName::PLACEHOLDER_REFUSED) {
                    Emg::LparNameNoName
                } else {
                    Emg::InvalidRequest
                };
                Err(ApiError(EmgError::new(kind, text)))
            }
        }
    }
}

/// Why a body that did not arrive in time was refused.
pub(crate) fn body_too_slow() -> String {
    format!(
        "the request body did not arrive whole within {} s; send it at once; nothing was changed",
        crate::httpd::BODY_READ.as_secs()
    )
}

/// Query string whose parse errors (a negative or non-numeric number, an unknown parameter)
/// come back as catalogue errors naming the problem, as body errors do.
pub struct ApiQuery<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError(EmgError::new(
                Emg::InvalidRequest,
                rejection.body_text(),
            ))),
        }
    }
}

/// A request field refused by its type's `check_fields` (length, charset): a 400 naming it.
pub(crate) fn checked(
    result: Result<(), lparmover::api::limits::InvalidField>,
) -> Result<(), ApiError> {
    result.map_err(|e| ApiError(EmgError::new(Emg::InvalidRequest, e.to_string())))
}

fn lpar_number(text: &str) -> Result<LparNumber, ApiError> {
    text.parse().map_err(|e: lparmover::model::InvalidId| {
        ApiError(EmgError::new(Emg::InvalidRequest, e.to_string()))
    })
}

fn lease(headers: &HeaderMap) -> Option<String> {
    headers
        .get(LEASE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

type Svc = State<Arc<BladeService>>;
type ApiResult<T> = Result<Json<T>, ApiError>;

/// Whether `headers` carry `Authorization: Bearer TOKEN` for this `token` (compared in
/// constant time).
pub(crate) fn bearer_ok(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes()))
}

async fn require_token(State(token): State<Arc<String>>, request: Request, next: Next) -> Response {
    if bearer_ok(request.headers(), &token) {
        next.run(request).await
    } else {
        ApiError(EmgError::new(
            Emg::Unauthorized,
            "missing or wrong bearer token",
        ))
        .into_response()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn inventory(State(s): Svc) -> ApiResult<lparmover::api::Inventory> {
    Ok(Json(s.inventory()))
}

async fn list_lpars(State(s): Svc) -> ApiResult<Vec<lparmover::api::LparView>> {
    Ok(Json(s.lpars()))
}

async fn show_lpar(State(s): Svc, Path(n): Path<String>) -> ApiResult<lparmover::api::LparView> {
    Ok(Json(s.lpar(lpar_number(&n)?)?))
}

async fn define(
    State(s): Svc,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LparRequest>,
) -> ApiResult<lparmover::api::LparView> {
    Ok(Json(s.define(&req, lease(&headers).as_deref()).await?))
}

async fn activate(
    State(s): Svc,
    headers: HeaderMap,
    Path(n): Path<String>,
) -> ApiResult<lparmover::api::LparView> {
    Ok(Json(
        s.activate(lpar_number(&n)?, lease(&headers).as_deref())
            .await?,
    ))
}

async fn deactivate(
    State(s): Svc,
    headers: HeaderMap,
    Path(n): Path<String>,
) -> ApiResult<lparmover::api::LparView> {
    Ok(Json(
        s.deactivate(lpar_number(&n)?, lease(&headers).as_deref())
            .await?,
    ))
}

async fn delete(
    State(s): Svc,
    headers: HeaderMap,
    Path(n): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.delete(lpar_number(&n)?, lease(&headers).as_deref())?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_workload(
    State(s): Svc,
    Path(n): Path<String>,
    ApiJson(body): ApiJson<WorkloadUpdate>,
) -> ApiResult<lparmover::api::LparView> {
    Ok(Json(s.set_workload(lpar_number(&n)?, &body.workload)?))
}

async fn memory_digest(
    State(s): Svc,
    Path(n): Path<String>,
) -> ApiResult<lparmover::api::MemoryDigestView> {
    let number = lpar_number(&n)?;
    // Hashing guest memory takes tens of milliseconds per 100 MiB: off the async workers.
    let view = tokio::task::spawn_blocking(move || s.memory_digest(number))
        .await
        .map_err(|e| EmgError::new(Emg::Internal, format!("memory digest task failed: {e}")))??;
    Ok(Json(view))
}

async fn save_config(State(s): Svc) -> ApiResult<lparmover::api::HvmConfigDoc> {
    Ok(Json(s.save_config()?))
}

async fn backup_config(State(s): Svc) -> ApiResult<lparmover::api::HvmConfigDoc> {
    Ok(Json(s.backup_config()))
}

async fn restore_config(
    State(s): Svc,
    headers: HeaderMap,
    ApiJson(doc): ApiJson<lparmover::api::HvmConfigDoc>,
) -> ApiResult<lparmover::api::HvmConfigDoc> {
    Ok(Json(s.restore_config(&doc, lease(&headers).as_deref())?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct After {
    #[serde(default)]
    after: u64,
}

async fn logs(
    State(s): Svc,
    ApiQuery(q): ApiQuery<After>,
) -> ApiResult<Vec<lparmover::api::LogEntry>> {
    Ok(Json(s.logs(q.after)))
}

async fn load(State(s): Svc) -> ApiResult<lparmover::api::LoadFigures> {
    Ok(Json(s.load()))
}

async fn take_lock(
    State(s): Svc,
    ApiJson(req): ApiJson<LockRequest>,
) -> ApiResult<lparmover::api::Lease> {
    checked(req.check_fields())?;
    Ok(Json(s.lock(&req)?))
}

async fn list_locks(State(s): Svc) -> ApiResult<Vec<lparmover::api::Lease>> {
    Ok(Json(s.locks()))
}

async fn renew_lock(State(s): Svc, Path(id): Path<String>) -> ApiResult<lparmover::api::Lease> {
    Ok(Json(s.renew(&id)?))
}

async fn release_lock(State(s): Svc, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    s.unlock(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn prepare_incoming(
    State(s): Svc,
    headers: HeaderMap,
    ApiJson(req): ApiJson<lparmover::api::PrepareIncoming>,
) -> ApiResult<lparmover::api::IncomingPrepared> {
    checked(req.check_fields())?;
    Ok(Json(
        s.prepare_incoming(&req, lease(&headers).as_deref()).await?,
    ))
}

async fn start_send(
    State(s): Svc,
    headers: HeaderMap,
    ApiJson(req): ApiJson<lparmover::api::StartSend>,
) -> ApiResult<lparmover::api::MigrationStatus> {
    checked(req.check_fields())?;
    Ok(Json(s.start_send(&req, lease(&headers).as_deref()).await?))
}

/// `?phase=…&wait_ms=…`: answer once the phase is no longer `phase` (long poll).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusQuery {
    phase: Option<String>,
    #[serde(default)]
    wait_ms: u64,
}

async fn migration_status(
    State(s): Svc,
    Path(job): Path<String>,
    ApiQuery(q): ApiQuery<StatusQuery>,
) -> ApiResult<lparmover::api::MigrationStatus> {
    Ok(Json(
        s.migration_status_wait(
            &job,
            q.phase.as_deref(),
            std::time::Duration::from_millis(q.wait_ms),
        )
        .await?,
    ))
}

async fn list_migrations(State(s): Svc) -> ApiResult<Vec<lparmover::api::MigrationStatus>> {
    Ok(Json(s.migrations_list()))
}

async fn swap_migration(
    State(s): Svc,
    Path(job): Path<String>,
) -> ApiResult<lparmover::api::MigrationStatus> {
    Ok(Json(s.swap_migration(&job)?))
}

async fn renew_switchover_lease(
    State(s): Svc,
    Path(job): Path<String>,
) -> ApiResult<lparmover::api::MigrationStatus> {
    Ok(Json(s.renew_switchover_lease(&job)?))
}

async fn recover_lpar(State(s): Svc, Path(n): Path<String>) -> ApiResult<lparmover::api::LparView> {
    Ok(Json(s.recover_lpar(lpar_number(&n)?)?))
}

async fn cancel_migration(
    State(s): Svc,
    Path(job): Path<String>,
) -> ApiResult<lparmover::api::MigrationStatus> {
    Ok(Json(s.cancel_migration(&job)?))
}

async fn extend_migration(
    State(s): Svc,
    Path(job): Path<String>,
    ApiJson(body): ApiJson<lparmover::api::ExtendTimeout>,
) -> ApiResult<lparmover::api::MigrationStatus> {
    Ok(Json(s.extend_migration(&job, &body)?))
}

async fn set_migration_bandwidth(
    State(s): Svc,
    Path(job): Path<String>,
    ApiJson(body): ApiJson<lparmover::api::SetBandwidth>,
) -> ApiResult<lparmover::api::MigrationStatus> {
    Ok(Json(s.set_migration_bandwidth(&job, &body)?))
}

async fn commit_migration(
    State(s): Svc,
    Path(job): Path<String>,
    ApiJson(body): ApiJson<lparmover::api::CommitRequest>,
) -> ApiResult<lparmover::api::MigrationStatus> {
    Ok(Json(s.commit_migration(&job, &body).await?))
}

async fn resume_migration(
    State(s): Svc,
    Path(job): Path<String>,
) -> ApiResult<lparmover::api::LparView> {
    Ok(Json(s.resume_migration(&job).await?))
}

async fn release_migration(
    State(s): Svc,
    Path(job): Path<String>,
    ApiJson(body): ApiJson<lparmover::api::Release>,
) -> ApiResult<lparmover::api::MigrationStatus> {
    Ok(Json(s.release_migration(&job, &body).await?))
}

async fn abort_migration(
    State(s): Svc,
    Path(job): Path<String>,
) -> ApiResult<lparmover::api::MigrationStatus> {
    Ok(Json(s.abort_migration(&job).await?))
}

async fn shutdown_lpar(
    State(s): Svc,
    headers: HeaderMap,
    Path(n): Path<String>,
) -> ApiResult<lparmover::api::LparView> {
    Ok(Json(s.request_shutdown(
        lpar_number(&n)?,
        lease(&headers).as_deref(),
    )?))
}

async fn cold_define(
    State(s): Svc,
    headers: HeaderMap,
    ApiJson(req): ApiJson<lparmover::api::ColdDefine>,
) -> ApiResult<lparmover::api::ColdDefined> {
    checked(req.check_fields())?;
    Ok(Json(s.cold_define(&req, lease(&headers).as_deref())?))
}

async fn cold_move(
    State(s): Svc,
    Path(job): Path<String>,
) -> ApiResult<lparmover::api::ColdDefined> {
    Ok(Json(s.cold_move(&job)?))
}

async fn release_lpar(
    State(s): Svc,
    headers: HeaderMap,
    Path(n): Path<String>,
    ApiJson(body): ApiJson<lparmover::api::Release>,
) -> Result<StatusCode, ApiError> {
    s.release_lpar(lpar_number(&n)?, &body, lease(&headers).as_deref())?;
    Ok(StatusCode::NO_CONTENT)
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError(EmgError::new(
        Emg::MethodNotAllowed,
        format!(
            "{} is not allowed on {}",
            request.method(),
            request.uri().path()
        ),
    ))
}

/// A handler that panicked: 500 with an id the blade's system log carries too, never a
/// dropped connection.
fn panicked(service: &BladeService, detail: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let id = crate::serve::log_panic(detail.as_ref(), Some(&service.log));
    ApiError(EmgError::new(
        Emg::Internal,
        format!("the HVM failed while answering ({id}); its system log has the detail"),
    ))
    .into_response()
}

async fn not_found(request: Request) -> ApiError {
    let path = request.uri().path();
    let other_version = path
        .strip_prefix("/v")
        .and_then(|rest| rest.split('/').next())
        .is_some_and(|v| {
            !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) && v != &API_VERSION[1..]
        });
    if other_version {
        return ApiError(EmgError::new(
            Emg::VersionMismatch,
            format!("this HVM speaks /{API_VERSION}/, not {path}"),
        ));
    }
    ApiError(EmgError::new(
        Emg::NoSuchRoute,
        format!("no route {path}; this HVM speaks /{API_VERSION}/ (see the lparmover::api docs)"),
    ))
}

/// `GET /metrics` (bearer token, like every route but `/healthz`): this blade's moves in the
/// Prometheus text format (see `lparmover::metrics`).
async fn metrics(State(s): Svc) -> Response {
    lparmover::metrics::http::metrics_response(&s.metrics)
}

/// `GET /healthz`, without a token (a load balancer or Prometheus' blackbox probe has none):
/// 200 while the process answers and its state directory takes a write, else 503. Says no
/// more than the blade's name, its version and that verdict.
async fn healthz(State(s): Svc) -> Response {
    let svc = s.clone();
    let state_dir = tokio::task::spawn_blocking(move || svc.store.probe_writable())
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    let (status, verdict, state_dir) = match state_dir {
        Ok(()) => (StatusCode::OK, "up", "ok".to_owned()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, "degraded", e),
    };
    (
        status,
        Json(serde_json::json!({
            "status": verdict,
            "blade": s.name(),
            "version": env!("CARGO_PKG_VERSION"),
            "state_dir": state_dir,
        })),
    )
        .into_response()
}

/// The management API router for one blade.
pub fn router(service: Arc<BladeService>, token: String) -> Router {
    let v1 = Router::new()
        .route("/inventory", get(inventory))
        .route("/lpars", get(list_lpars).post(define))
        .route("/lpars/{n}", get(show_lpar).delete(delete))
        .route("/lpars/{n}/activate", post(activate))
        .route("/lpars/{n}/deactivate", post(deactivate))
        .route("/lpars/{n}/shutdown", post(shutdown_lpar))
        .route("/lpars/{n}/release", post(release_lpar))
        .route("/lpars/{n}/recover", post(recover_lpar))
        .route("/migrations/cold", post(cold_define))
        .route("/migrations/cold/{job}", get(cold_move))
        .route("/lpars/{n}/workload", axum::routing::put(set_workload))
        .route("/lpars/{n}/memory-digest", get(memory_digest))
        .route("/config/save", post(save_config))
        .route("/config/backup", get(backup_config))
        .route("/config/restore", post(restore_config))
        .route("/logs", get(logs))
        .route("/load", get(load))
        .route("/ports", get(crate::fcports::ports))
        .route("/locks", get(list_locks).post(take_lock))
        .route("/locks/{id}", axum::routing::delete(release_lock))
        .route("/locks/{id}/renew", post(renew_lock))
        .route("/migrations/incoming", post(prepare_incoming))
        .route("/migrations", get(list_migrations))
        .route("/migrations/{job}", get(migration_status))
        .route("/migrations/{job}/swap", post(swap_migration))
        .route("/migrations/{job}/lease", post(renew_switchover_lease))
        .route("/migrations/{job}/send", post(start_send))
        .route("/migrations/{job}/cancel", post(cancel_migration))
        .route("/migrations/{job}/extend", post(extend_migration))
        .route("/migrations/{job}/bandwidth", post(set_migration_bandwidth))
        .route("/migrations/{job}/commit", post(commit_migration))
        .route("/migrations/{job}/resume", post(resume_migration))
        .route("/migrations/{job}/release", post(release_migration))
        .route("/migrations/{job}/abort", post(abort_migration))
        .merge(crate::probe::routes())
        .merge(crate::wwn::routes())
        .merge(crate::paths::routes())
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(service.clone());
    let authorized = Router::new()
        .nest(&format!("/{API_VERSION}"), v1)
        .route("/metrics", get(metrics).with_state(service.clone()))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            Arc::new(token),
            require_token,
        ));
    let on_panic = service.clone();
    Router::new()
        .route("/healthz", get(healthz).with_state(service))
        .merge(authorized)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            move |detail| panicked(&on_panic, detail),
        ))
}
