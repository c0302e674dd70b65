//! The Profile window's state: the HVMs the profile registers (with the fingerprint of the
//! certificate pinned for each) and the registration form, which only offers Register once
//! the certificate of the address typed was fetched and the operator confirmed its fingerprint.

use lparmover::ops::register::{Registration, SeenCertificate, pinned_fingerprint};
use lparmover::profile::Profile;

/// One HVM of the profile, as the Profile window lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredHvm {
    /// HVM name.
    pub name: String,
    /// Chassis.
    pub chassis: String,
    /// Management address.
    pub url: String,
    /// SHA-256 fingerprint of the pinned certificate (None: the pinned PEM is unreadable).
    pub fingerprint: Option<String>,
}

impl RegisteredHvm {
    /// The list of a profile.
    pub fn list(profile: &Profile) -> Vec<Self> {
        profile
            .hvms
            .iter()
            .map(|h| Self {
                name: h.name.clone(),
                chassis: h.chassis.clone(),
                url: h.url.clone(),
                fingerprint: pinned_fingerprint(h),
            })
            .collect()
    }
}

/// Where the certificate of the address typed stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum CertificateState {
    /// Not fetched (or the address changed since).
    #[default]
    NotFetched,
    /// Being fetched from this address.
    Fetching(String),
    /// Fetched: shown for the operator to compare, not trusted yet.
    Seen(SeenCertificate),
    /// Could not be fetched.
    Failed(String),
}

/// The registration form (text as typed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfileForm {
    /// Management address, `https://HOST:PORT`.
    pub url: String,
    /// HVM name.
    pub name: String,
    /// Chassis (empty: the one the blade reports).
    pub chassis: String,
    /// Bearer token (entered, or imported).
    pub token: String,
    /// A fleet profile to import the token from.
    pub import_from: String,
    /// The certificate of `url`.
    pub certificate: CertificateState,
    /// The operator compared the fingerprint and confirms pinning it.
    pub confirmed: bool,
    /// What the last import said.
    pub import_note: Option<Result<String, String>>,
}

impl ProfileForm {
    /// The address as it will be fetched and stored.
    pub fn address(&self) -> String {
        self.url.trim().trim_end_matches('/').to_owned()
    }

    /// Whether "Fetch certificate" may be pressed, or why not.
    pub fn fetch_allowed(&self) -> Result<String, String> {
        let url = self.address();
        if !url.starts_with("https://") || url.len() <= "https://".len() {
            return Err("Type the HVM's management address, like https://127.0.1.1:40123.".into());
        }
        if matches!(self.certificate, CertificateState::Fetching(_)) {
            return Err("Fetching the certificate…".into());
        }
        Ok(url)
    }

    /// The certificate seen at the address now typed (a certificate fetched from another
    /// address never counts).
    pub fn seen(&self) -> Option<&SeenCertificate> {
        match &self.certificate {
            CertificateState::Seen(c) if c.url == self.address() => Some(c),
            _ => None,
        }
    }

    /// The address was edited: what was fetched and confirmed for the old one no longer holds.
    pub fn address_edited(&mut self) {
        if self.seen().is_none() && !matches!(self.certificate, CertificateState::Fetching(_)) {
            self.certificate = CertificateState::NotFetched;
            self.confirmed = false;
        }
    }

    /// Marks the certificate as being fetched.
    pub fn fetch_started(&mut self, url: String) {
        self.certificate = CertificateState::Fetching(url);
        self.confirmed = false;
    }

    /// Folds a fetch result in (ignored when the address changed meanwhile).
    pub fn fetched(&mut self, result: Result<SeenCertificate, String>) {
        let CertificateState::Fetching(asked) = &self.certificate else {
            return;
        };
        if *asked != self.address() {
            self.certificate = CertificateState::NotFetched;
            return;
        }
        self.certificate = match result {
            Ok(seen) => CertificateState::Seen(seen),
            Err(e) => CertificateState::Failed(e),
        };
        self.confirmed = false;
    }

    /// Folds an imported token in.
    pub fn imported(&mut self, result: Result<String, String>) {
        self.import_note = Some(match result {
            Ok(token) => {
                self.token = token;
                Ok(format!("Token imported from {}.", self.import_from.trim()))
            }
            Err(e) => Err(e),
        });
    }

    /// Whether Import may be pressed: the fleet profile, the name and the address to look for.
    pub fn import_request(&self) -> Result<(std::path::PathBuf, String, String), String> {
        let path = self.import_from.trim();
        if path.is_empty() {
            return Err("Give the path of a fleet profile (profile.toml) to import from.".into());
        }
        Ok((path.into(), self.name.trim().to_owned(), self.address()))
    }

    /// What Register would submit, or why it is disabled.
    pub fn registration(&self, registered: &[RegisteredHvm]) -> Result<Registration, String> {
        let Some(seen) = self.seen() else {
            return Err(
                "Fetch the certificate of this address first, then compare its fingerprint.".into(),
            );
        };
        if !self.confirmed {
            return Err("Confirm that the fingerprint is the HVM's own before pinning it.".into());
        }
        let name = self.name.trim();
        if name.is_empty() {
            return Err("Give the HVM's name.".into());
        }
        if self.token.trim().is_empty() {
            return Err("Enter the HVM's token, or import it from a fleet profile.".into());
        }
        if let Some(other) = registered
            .iter()
            .find(|h| h.name != name && h.url.trim_end_matches('/') == seen.url)
        {
            return Err(format!(
                "{} is already registered as {}; remove that HVM first.",
                seen.url, other.name
            ));
        }
        Ok(Registration {
            name: name.to_owned(),
            chassis: self.chassis.trim().to_owned(),
            certificate: seen.clone(),
            token: self.token.trim().to_owned(),
        })
    }

    /// A registration took effect: the form starts over (the token is not kept in memory).
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}
