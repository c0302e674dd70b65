//! Network namespaces for end-to-end tests of shaped links.
//!
//! The helper itself lives in the library (`lparmover::bench::netns`), because the
//! `lparmover bench live` command uses it too and the library cannot depend on this test crate;
//! this module re-exports it and adds the tests' skip rule.

pub use lparmover::bench::netns::{EndAddresses, NetnsError, NetnsPair, PREFIX, Side, preflight};

/// Whether this machine can run namespace tests. When it cannot, prints a loud
/// `SKIP: <test>: <reason>` line (visible with `--nocapture` and in CI logs) and returns false.
pub fn netns_available(test: &str) -> bool {
    if let Err(e) = preflight() {
        eprintln!("SKIP: {test}: {e}");
        println!("SKIP: {test}: {e}");
        return false;
    }
    // Root with iproute2 is not enough in some containers: try the kernel for real.
    match NetnsPair::create(None) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("SKIP: {test}: network namespaces do not work here: {e}");
            println!("SKIP: {test}: network namespaces do not work here: {e}");
            false
        }
    }
}
