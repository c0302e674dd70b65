//! What a test needs from the machine, and the one rule for when it is missing.
//!
//! Some tests need root, `/dev/kvm`, `tc` or a tmpfs. Where one is missing, a test may not run —
//! but it must never *look* as if it ran: under CI (the `CI` environment variable set, as every
//! CI service and `.ci/run` do) a missing requirement fails the test with what is missing; on a
//! developer's machine the test is skipped with a loud `SKIP:` line on stderr (and stdout, so
//! it shows in a captured test's output too). Every test in the workspace goes through
//! [`unavailable`], the end-to-end suites through its re-export in `lpm-tests`.

use std::fmt;

/// A machine capability a test can need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Running as root.
    Root,
    /// A usable `/dev/kvm`.
    Kvm,
    /// `tc` with HTB on the loopback device (or in a network namespace).
    Tc,
    /// Mounting a tmpfs.
    Tmpfs,
    /// Network namespaces (root, iproute2, a kernel that allows them).
    Netns,
    /// GNU `as` and `objcopy` (binutils).
    Assembler,
    /// `qemu-system-x86_64` (Debian's qemu-system-x86).
    Qemu,
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Root => "root",
            Self::Kvm => "/dev/kvm",
            Self::Tc => "tc (iproute2) with HTB",
            Self::Tmpfs => "a tmpfs mount",
            Self::Netns => "network namespaces",
            Self::Assembler => "GNU as and objcopy (binutils)",
            Self::Qemu => "qemu-system-x86_64 (apt-get install qemu-system-x86)",
        })
    }
}

/// Whether this process runs under CI: `CI` is set to anything but empty, `0` or `false`.
pub fn in_ci() -> bool {
    ci_value(std::env::var("CI").ok().as_deref())
}

fn ci_value(value: Option<&str>) -> bool {
    value.is_some_and(|v| !matches!(v.trim(), "" | "0") && !v.trim().eq_ignore_ascii_case("false"))
}

/// The message for a test that cannot have `need` (`why`: what the machine said).
pub fn message(test: &str, need: Need, why: &dyn fmt::Display) -> String {
    format!("{test} needs {need}, which is not available here: {why}")
}

/// What a missing requirement means for a test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Under CI: the test fails with this message.
    Fail(String),
    /// Elsewhere: the test is skipped, saying this.
    Skip(String),
}

/// The rule itself, without the environment: under CI a missing requirement is a failure.
pub fn verdict(ci: bool, test: &str, need: Need, why: &dyn fmt::Display) -> Verdict {
    let text = message(test, need, why);
    if ci {
        Verdict::Fail(format!(
            "{text}. CI is set, so this is a failure, not a skip: give the CI machine {need}"
        ))
    } else {
        Verdict::Skip(format!("SKIP: {text} (this would fail under CI)"))
    }
}

/// Call when `test` cannot have `need`, then return from the test. Under CI ([`in_ci`]) this
/// panics: the test fails, saying what is missing. Elsewhere it writes a `SKIP:` line straight
/// to the process's stderr (not through `eprintln!`, which the test harness captures and throws
/// away for a passing test) and returns, so the caller skips.
///
/// ```no_run
/// # fn kvm_probe() -> Result<(), String> { Ok(()) }
/// if let Err(why) = kvm_probe() {
///     lparmover::testenv::unavailable("kvm_dirty_log", lparmover::testenv::Need::Kvm, &why);
///     return;
/// }
/// ```
#[track_caller]
pub fn unavailable(test: &str, need: Need, why: &dyn fmt::Display) {
    match verdict(in_ci(), test, need, why) {
        Verdict::Fail(text) => panic!("{text}"),
        Verdict::Skip(text) => {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_ci_a_missing_requirement_fails_naming_the_test_and_what_is_missing() {
        let Verdict::Fail(text) = verdict(true, "kvm_dirty_log", Need::Kvm, &"ENOENT") else {
            panic!("under CI a missing requirement must fail");
        };
        assert!(
            text.starts_with("kvm_dirty_log needs /dev/kvm, which is not available here: ENOENT"),
            "{text}"
        );
        assert!(text.contains("give the CI machine /dev/kvm"), "{text}");
    }

    #[test]
    fn outside_ci_it_is_a_loud_skip() {
        let v = verdict(false, "shaped_link", Need::Tc, &"tc: not found");
        assert_eq!(
            v,
            Verdict::Skip(
                "SKIP: shaped_link needs tc (iproute2) with HTB, which is not available here: tc: not found (this would fail under CI)"
                    .into()
            )
        );
    }

    #[test]
    fn ci_is_any_value_but_empty_zero_or_false() {
        for set in ["true", "1", "yes", "github"] {
            assert!(ci_value(Some(set)), "{set}");
        }
        for unset in [None, Some(""), Some("0"), Some("false"), Some("FALSE")] {
            assert!(!ci_value(unset), "{unset:?}");
        }
    }
}
