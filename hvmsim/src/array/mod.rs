//! `hvmsim array`: a simulated storage array (DESIGN §3): controllers with addresses, FC ports,
//! host groups with WWPN permissions and nicknames (LUN security), LUs as sparse files mapped to
//! host groups, the fabric's view of which WWPN is logged in through which port, password
//! protection and account authentication, and state written atomically (kill -9 loses nothing).
//!
//! ```text
//! STATE_DIR/
//!   array.json          configuration and fabric logins (ArrayState), rewritten atomically
//!   lus/NNNN.img        LU blocks (sparse files); replication pairs copy between them
//!   identity/           certificate, key and API token, as a blade's
//!   endpoint.json       where the API listens
//!   blade.lock          held by the process serving the directory
//! ```

pub mod api;
pub mod lu_io;
pub mod pairs;
pub mod security;
pub mod seed;
pub mod serve;
pub mod service;
pub mod state;
