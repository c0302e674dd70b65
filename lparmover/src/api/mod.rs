//! The HVM management API contract: request and response types and the manager's client.
//!
//! HTTPS + JSON, versioned under `/v1/`. Errors are [`crate::emg::EmgError`] bodies with the HTTP
//! status of their catalogue row.
//!
//! | method | route | body → answer |
//! | --- | --- | --- |
//! | GET | `/v1/inventory` | → [`Inventory`] |
//! | GET | `/v1/lpars` | → `[LparView]` |
//! | GET | `/v1/lpars/{n}` | → [`LparView`] |
//! | POST | `/v1/lpars` | [`crate::model::LparRequest`] → [`LparView`] |
//! | POST | `/v1/lpars/{n}/activate`, `/deactivate` | → [`LparView`] |
//! | DELETE | `/v1/lpars/{n}` | → 204 |
//! | PUT | `/v1/lpars/{n}/workload` | [`WorkloadUpdate`] → [`LparView`] |
//! | POST | `/v1/config/save` | → [`HvmConfigDoc`] |
//! | GET | `/v1/config/backup` | → [`HvmConfigDoc`] |
//! | POST | `/v1/config/restore` | [`HvmConfigDoc`] → [`HvmConfigDoc`] |
//! | GET | `/v1/logs?after=N` | → `[LogEntry]` |
//! | GET, PUT | `/v1/migration-paths` | [`SetMigrationPaths`] → [`MigrationPaths`] (see [`crate::paths`]) |
//! | GET | `/v1/load` | → [`LoadFigures`] |
//! | GET | `/v1/ports` | → [`PortStates`] |
//! | GET, POST | `/v1/locks` | [`LockRequest`] → [`Lease`] |
//! | POST | `/v1/locks/{id}/renew` | → [`Lease`] |
//! | DELETE | `/v1/locks/{id}` | → 204 |
//! | GET, POST | `/v1/wwn-rollbacks` | see [`WwnRollback`] (the `wwn` module) |
//! | POST | `/v1/wwn-rollbacks/{lpar}/execute` | → [`WwnRolledBack`] |
//!
//! Every request carries `Authorization: Bearer TOKEN`; mutating requests on a locked LPAR or
//! blade carry the lease id in the `x-lparmover-lease` header.

pub mod array;
mod client;
pub mod limits;
mod migration;
mod types;
mod wwn;

pub use client::{CONNECT_TIMEOUT, ClientError, HvmClient, REQUEST_TIMEOUT};
pub use migration::*;
pub use types::*;
pub use wwn::*;
