//! The WWN Setting window's storage side: Storage Selection (the arrays the profile holds and
//! what they answer), the Add Storage form (search an address, compare the certificate's
//! fingerprint, give the token), the Storage Password Setting form (per array a user ID and
//! password, saved only when asked) and the nickname of a migration WWPN being edited.

use lparmover::api::array::Credentials;
use lparmover::fleetview::LparRef;
use lparmover::model::{FcPort, SecurityMode};
use lparmover::ops::arrays::{ArrayRow, array_url};
use lparmover::ops::register::SeenCertificate;

use super::Pending;
use super::profile::CertificateState;

/// The Add Storage form.
#[derive(Clone, Debug, Default)]
pub struct AddStorageForm {
    /// Window shown.
    pub open: bool,
    /// As typed: IP, IP:PORT or URL.
    pub address: String,
    /// The certificate of the address searched.
    pub certificate: CertificateState,
    /// The operator compared the fingerprint and confirms pinning it.
    pub confirmed: bool,
    /// The array's API token.
    pub token: String,
    /// A fleet profile to import the token from.
    pub import_from: String,
    /// What the last import said.
    pub import_note: Option<Result<String, String>>,
    /// The last Add.
    pub result: Pending<String>,
}

impl AddStorageForm {
    /// Search: the URL to fetch the certificate of, or why not.
    pub fn search(&mut self) -> Result<String, String> {
        let url = array_url(&self.address).map_err(|e| e.to_string())?;
        self.certificate = CertificateState::Fetching(url.clone());
        self.confirmed = false;
        Ok(url)
    }

    /// The certificate of the address now typed.
    pub fn seen(&self) -> Option<&SeenCertificate> {
        let url = array_url(&self.address).ok()?;
        match &self.certificate {
            CertificateState::Seen(c) if c.url == url => Some(c),
            _ => None,
        }
    }

    /// Folds a search result in (ignored when the address changed meanwhile).
    pub fn fetched(&mut self, result: Result<SeenCertificate, String>) {
        let CertificateState::Fetching(asked) = &self.certificate else {
            return;
        };
        if array_url(&self.address).ok().as_ref() != Some(asked) {
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

    /// What Add would submit, or why it is disabled.
    pub fn submission(&self) -> Result<(SeenCertificate, String), String> {
        let Some(seen) = self.seen() else {
            return Err("Search the array's address first, then compare the fingerprint.".into());
        };
        if !self.confirmed {
            return Err(
                "Confirm that the fingerprint is the array's own before pinning it.".into(),
            );
        }
        if self.token.trim().is_empty() {
            return Err("Enter the array's API token, or import it from a fleet profile.".into());
        }
        Ok((seen.clone(), self.token.trim().to_owned()))
    }

    /// The array was added: the form starts over, closed (the token is not kept).
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

/// One array's row in Storage Password Setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordRow {
    /// Array.
    pub array: String,
    /// Security type the array reports (None: it did not answer).
    pub security: Option<SecurityMode>,
    /// User ID as typed.
    pub user: String,
    /// Password as typed.
    pub password: String,
}

/// The Storage Password Setting form.
#[derive(Clone, Debug, Default)]
pub struct PasswordForm {
    /// Window shown.
    pub open: bool,
    /// One row per array.
    pub rows: Vec<PasswordRow>,
    /// The seed's "Save password setting": write the logins to the profile (mode 0600).
    pub save: bool,
    /// The last OK.
    pub result: Pending<String>,
}

impl PasswordForm {
    /// The form for `arrays`, user IDs prefilled from the logins the profile holds.
    pub fn open_for(arrays: &[ArrayRow]) -> Self {
        Self {
            open: true,
            rows: arrays
                .iter()
                .map(|a| PasswordRow {
                    array: a.name.clone(),
                    security: a.info.as_ref().ok().map(|i| i.security),
                    user: a.saved_user.clone().unwrap_or_default(),
                    password: String::new(),
                })
                .collect(),
            save: false,
            result: Pending::Idle,
        }
    }

    /// The logins OK would check: rows left empty are arrays the operator does not manage
    /// (the seed lets them be); a protected array's row needs both user ID and password.
    pub fn logins(&self) -> Result<Vec<(String, Credentials)>, String> {
        let mut out = Vec::new();
        for row in &self.rows {
            let (user, password) = (row.user.trim(), row.password.as_str());
            if user.is_empty() && password.is_empty() {
                continue;
            }
            if row.security == Some(SecurityMode::None) {
                return Err(format!(
                    "{} has no password protection or account authentication: leave its row empty",
                    row.array
                ));
            }
            if user.is_empty() || password.is_empty() {
                return Err(format!(
                    "Give both the user ID and the password of {}.",
                    row.array
                ));
            }
            out.push((
                row.array.clone(),
                Credentials {
                    user: user.to_owned(),
                    password: password.to_owned(),
                },
            ));
        }
        if out.is_empty() {
            return Err("Enter the user ID and password of the arrays you manage.".into());
        }
        Ok(out)
    }
}

/// A migration WWPN nickname being edited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NicknameEdit {
    /// The LPAR.
    pub lpar: LparRef,
    /// `HVM/LPAR` as shown.
    pub label: String,
    /// The vFC's FC port.
    pub port: FcPort,
    /// As typed.
    pub text: String,
    /// What Default puts in.
    pub default: String,
}

/// Everything storage in the WWN Setting window.
#[derive(Clone, Debug, Default)]
pub struct StorageSetting {
    /// Storage Selection.
    pub arrays: Pending<Vec<ArrayRow>>,
    /// Add Storage.
    pub add: AddStorageForm,
    /// Storage Password Setting.
    pub password: PasswordForm,
    /// Nickname.
    pub nickname: Option<NicknameEdit>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use lparmover::api::array::ArrayInfo;

    fn row(security: SecurityMode) -> ArrayRow {
        ArrayRow {
            name: "ams1".into(),
            url: "https://127.0.4.1:40200".into(),
            info: Ok(ArrayInfo {
                name: "ams1".parse().expect("name"),
                model: "AMS2500".into(),
                serial: "1".into(),
                controllers: Vec::new(),
                ports: Vec::new(),
                security,
            }),
            saved_user: Some("admin".into()),
        }
    }

    #[test]
    fn password_setting_skips_empty_rows_and_needs_both_fields_of_a_filled_one() {
        let mut form = PasswordForm::open_for(&[row(SecurityMode::AccountAuthentication)]);
        assert_eq!(form.rows[0].user, "admin", "the saved user is prefilled");
        assert!(form.logins().is_err(), "a user without a password");
        form.rows[0].password = "secret1".into();
        let logins = form.logins().expect("one login");
        assert_eq!(logins[0].1.user, "admin");
        let mut open = PasswordForm::open_for(&[row(SecurityMode::None)]);
        open.rows[0].password = "x".into();
        assert!(
            open.logins()
                .expect_err("unprotected")
                .contains("leave its row empty")
        );
    }

    #[test]
    fn add_storage_pins_only_a_confirmed_certificate_of_the_address_typed() {
        let mut form = AddStorageForm {
            address: "127.0.4.1".into(),
            ..AddStorageForm::default()
        };
        let url = form.search().expect("searchable");
        assert_eq!(url, "https://127.0.4.1:40200");
        form.fetched(Ok(SeenCertificate {
            url: url.clone(),
            pem: "PEM".into(),
            fingerprint: "AB:CD".into(),
        }));
        form.token = "t".into();
        assert!(form.submission().is_err(), "not confirmed yet");
        form.confirmed = true;
        assert!(form.submission().is_ok());
        form.address = "127.0.4.2".into();
        assert!(form.submission().is_err(), "another address");
    }
}
