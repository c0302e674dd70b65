//! Password protection and account authentication: salted PBKDF2 hashes of the users'
//! passwords (never the passwords), and the login sessions `aulogin` opens and `aulogout` ends.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use rand::RngCore;
use ring::pbkdf2;
use serde::{Deserialize, Serialize};

/// PBKDF2-HMAC-SHA256 rounds: a login costs tens of milliseconds, a guessed password as much.
const ROUNDS: u32 = 60_000;

/// A session lapses after this long without a request.
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// At most this many sessions at once; the oldest goes first.
const MAX_SESSIONS: usize = 256;

/// A user as the state file keeps it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredAccount {
    /// User ID.
    pub user: String,
    /// Salt, hex.
    pub salt: String,
    /// PBKDF2 hash of the password, hex.
    pub hash: String,
}

impl std::fmt::Debug for StoredAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredAccount")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

fn rounds() -> NonZeroU32 {
    NonZeroU32::new(ROUNDS).unwrap_or(NonZeroU32::MIN)
}

impl StoredAccount {
    /// `user` with a fresh salt and the hash of `password`.
    pub fn new(user: &str, password: &str) -> Self {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let mut hash = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            rounds(),
            &salt,
            password.as_bytes(),
            &mut hash,
        );
        Self {
            user: user.to_owned(),
            salt: hex::encode(salt),
            hash: hex::encode(hash),
        }
    }

    /// Whether `password` is this user's (in constant time).
    pub fn verify(&self, password: &str) -> bool {
        let (Ok(salt), Ok(hash)) = (hex::decode(&self.salt), hex::decode(&self.hash)) else {
            return false;
        };
        pbkdf2::verify(
            pbkdf2::PBKDF2_HMAC_SHA256,
            rounds(),
            &salt,
            password.as_bytes(),
            &hash,
        )
        .is_ok()
    }
}

/// Open login sessions, in memory: a restarted array asks everyone to log in again.
#[derive(Debug, Default)]
pub struct Sessions {
    open: HashMap<String, (String, Instant)>,
}

impl Sessions {
    /// Opens a session for `user`; returns its token and when it lapses if unused.
    pub fn open(&mut self, user: &str) -> (String, Duration) {
        self.expire();
        if self.open.len() >= MAX_SESSIONS
            && let Some(oldest) = self
                .open
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(t, _)| t.clone())
        {
            self.open.remove(&oldest);
        }
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let token = hex::encode(raw);
        self.open
            .insert(token.clone(), (user.to_owned(), Instant::now()));
        (token, SESSION_IDLE)
    }

    /// The user of session `token`, renewing it, if it is open.
    pub fn user(&mut self, token: &str) -> Option<String> {
        self.expire();
        let (user, at) = self.open.get_mut(token)?;
        *at = Instant::now();
        Some(user.clone())
    }

    /// Ends session `token`.
    pub fn close(&mut self, token: &str) -> bool {
        self.open.remove(token).is_some()
    }

    /// Ends every session (the protection changed).
    pub fn close_all(&mut self) {
        self.open.clear();
    }

    fn expire(&mut self) {
        self.open.retain(|_, (_, at)| at.elapsed() < SESSION_IDLE);
    }
}
