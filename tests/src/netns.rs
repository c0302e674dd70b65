//! Network namespaces for end-to-end tests of shaped links.
//!
//! The helper itself lives in the library (`lparmover::bench::netns`), because the
//! `lparmover bench live` command uses it too and the library cannot depend on this test crate;
//! this module re-exports it and adds the tests' skip rule.

use crate::Need;

pub use lparmover::bench::netns::{EndAddresses, NetnsError, NetnsPair, PREFIX, Side, preflight};

/// Whether this machine can run namespace tests. When it cannot, [`crate::unavailable`] says
/// so — a failure under CI, a loud `SKIP:` line elsewhere — and this returns false.
pub fn netns_available(test: &str) -> bool {
    if let Err(e) = preflight() {
        let need = match e {
            NetnsError::NotRoot => Need::Root,
            NetnsError::MissingTool(_) => Need::Tc,
            _ => Need::Netns,
        };
        crate::unavailable(test, need, &e);
        return false;
    }
    // Root with iproute2 is not enough in some containers: try the kernel for real.
    match NetnsPair::create(None) {
        Ok(_) => true,
        Err(e) => {
            crate::unavailable(test, Need::Netns, &e);
            false
        }
    }
}
