//! Who asked for an operation: the OS user and host of the manager process, and which front end
//! (the CLI, the navigator or a saved policy) it came through. Every move and trial records one,
//! so that a night's history answers "who moved web01?" without reading anybody's shell history.

use std::ffi::CStr;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest user, host or policy name kept (longer ones are cut, never refused: the history must
/// never stop a move).
const MAX_FIELD: usize = 128;

/// The front end an operation came through.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "via", rename_all = "kebab-case")]
pub enum Origin {
    /// The `lparmover` command line.
    Cli,
    /// The navigator window.
    Navigator,
    /// A saved policy's run (from the policy daemon, `lpm-policy run`, or the navigator's Execute).
    Policy {
        /// The policy's name.
        policy: String,
    },
}

impl Origin {
    /// A policy's run.
    pub fn policy(name: impl fmt::Display) -> Self {
        Self::Policy {
            policy: bounded(name.to_string()),
        }
    }

    /// The stored text of the front end (`cli`, `navigator`, `policy`).
    pub(super) fn key(&self) -> &'static str {
        match self {
            Self::Cli => "cli",
            Self::Navigator => "navigator",
            Self::Policy { .. } => "policy",
        }
    }

    /// Rebuilds an origin from its stored text and policy name; `None` for text this build does
    /// not know.
    pub(super) fn from_key(key: &str, policy: Option<String>) -> Option<Self> {
        match (key, policy) {
            ("cli", _) => Some(Self::Cli),
            ("navigator", _) => Some(Self::Navigator),
            ("policy", Some(policy)) => Some(Self::Policy { policy }),
            _ => None,
        }
    }

    /// The policy name, for a policy's run.
    pub(super) fn policy_name(&self) -> Option<&str> {
        match self {
            Self::Policy { policy } => Some(policy),
            _ => None,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cli => f.write_str("CLI"),
            Self::Navigator => f.write_str("navigator"),
            Self::Policy { policy } => write!(f, "policy {policy}"),
        }
    }
}

/// Who asked for an operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actor {
    /// OS user name of the manager process (its uid when the user database has no name).
    pub user: String,
    /// Host name of the machine the manager ran on.
    pub host: String,
    /// The front end (`via`, and `policy` for a policy's run, beside `user` and `host`).
    #[serde(flatten)]
    pub origin: Origin,
}

impl Actor {
    /// This process's user and host, asking through `origin`.
    pub fn of_this_process(origin: Origin) -> Self {
        Self {
            user: bounded(os_user()),
            host: bounded(host_name()),
            origin,
        }
    }

    /// How a history row names who asked: `user@host via …`, or `-` in rows written before
    /// lparmover recorded it (the CLI's and the navigator's history alike).
    pub fn shown(actor: Option<&Actor>) -> String {
        actor.map_or_else(|| "-".to_owned(), ToString::to_string)
    }

    /// The same user and host, through another front end (a policy the navigator executes).
    pub fn via(&self, origin: Origin) -> Self {
        Self {
            origin,
            ..self.clone()
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{} via {}", self.user, self.host, self.origin)
    }
}

fn bounded(mut text: String) -> String {
    if text.len() > MAX_FIELD {
        let mut end = MAX_FIELD;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The name of the process's real uid in the user database (the kernel's word, not `$USER`,
/// which any caller can set), else `uid N`.
fn os_user() -> String {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: all-zero is a valid `passwd` (null pointers, zero ids); getpwuid_r fills it.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: `entry` and `found` are valid for writes; `buf` is valid for `buf.len()`
        // bytes and outlives every pointer getpwuid_r stores into `entry`, which are only read
        // below while `buf` is alive.
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut entry,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 || found.is_null() || entry.pw_name.is_null() {
            return format!("uid {uid}");
        }
        // SAFETY: on success pw_name points at a NUL-terminated string inside `buf`.
        let name = unsafe { CStr::from_ptr(entry.pw_name) };
        return match name.to_str() {
            Ok(name) if !name.is_empty() => name.to_owned(),
            _ => format!("uid {uid}"),
        };
    }
}

fn host_name() -> String {
    let name = gethostname::gethostname();
    match name.to_str() {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => "unknown host".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_named_by_the_user_database_and_the_kernel() {
        let actor = Actor::of_this_process(Origin::Cli);
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        // The test runs as a user the system knows (root in CI), never as a bare number.
        assert!(!actor.user.is_empty());
        if uid == 0 {
            assert_eq!(actor.user, "root");
        }
        let kernel_host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        if !kernel_host.is_empty() {
            assert_eq!(actor.host, kernel_host);
        }
        assert_eq!(
            actor.to_string(),
            format!("{}@{} via CLI", actor.user, actor.host)
        );
    }

    #[test]
    fn an_origin_survives_its_stored_form() {
        for origin in [
            Origin::Cli,
            Origin::Navigator,
            Origin::policy("nightly-drain"),
        ] {
            let back = Origin::from_key(origin.key(), origin.policy_name().map(str::to_owned));
            assert_eq!(back, Some(origin));
        }
        assert_eq!(Origin::from_key("policy", None), None);
        assert_eq!(Origin::from_key("telnet", None), None);
    }

    #[test]
    fn overlong_names_are_cut_on_a_character_boundary() {
        let origin = Origin::policy("é".repeat(200));
        let Origin::Policy { policy } = origin else {
            panic!("not a policy")
        };
        assert!(policy.len() <= MAX_FIELD);
        assert!(policy.chars().all(|c| c == 'é'));
    }
}
