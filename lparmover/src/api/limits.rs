//! Caps on the free-text fields of API requests, checked where a request enters the HVM (and by
//! the manager before it sends one), so no request can store megabytes of text in a blade's state
//! file or log. Numbers are range-checked by the request types' own `validate` methods
//! ([`super::MoveOptions::validate`], [`super::ExtendTimeout::validate`], …).

/// Longest job id accepted (the manager's ids, `job-YYYYMMDD-HHMMSS-xxxx`, are 24 characters).
pub const MAX_JOB_ID_LEN: usize = 64;
/// Longest lease owner, lease purpose or peer name accepted.
pub const MAX_LABEL_LEN: usize = 256;
/// Longest PEM certificate accepted (a self-signed certificate is well under 2 KiB).
pub const MAX_CERT_PEM_LEN: usize = 16 * 1024;
/// Longest hex ticket accepted (a ticket is 32 bytes: 64 hex digits).
pub const MAX_TICKET_LEN: usize = 128;

/// A request field that is too long, empty, or made of characters it may not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}; {remedy}; nothing was changed")]
pub struct InvalidField {
    /// The field.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
    /// What to give instead.
    pub remedy: String,
}

/// Checks that `value` is at most `max` bytes long (and not empty when `required`).
pub fn check_len(
    field: &'static str,
    value: &str,
    max: usize,
    required: bool,
) -> Result<(), InvalidField> {
    if required && value.trim().is_empty() {
        return Err(InvalidField {
            field,
            problem: "is empty".into(),
            remedy: "give a value".into(),
        });
    }
    if value.len() > max {
        return Err(InvalidField {
            field,
            problem: format!("is {} bytes long", value.len()),
            remedy: format!("give at most {max}"),
        });
    }
    Ok(())
}

/// Checks the two secrets every request that opens a migration path carries: the one-time
/// ticket (it must parse as one, [`crate::mover::JobTicket::from_hex`]) and the peer's PEM
/// certificate to pin (`cert_field` names it: `source_cert_pem` or `dest_cert_pem`).
pub fn check_ticket_and_cert(
    ticket: &str,
    cert_field: &'static str,
    cert_pem: &str,
) -> Result<(), InvalidField> {
    check_len("ticket", ticket, MAX_TICKET_LEN, true)?;
    if let Err(e) = crate::mover::JobTicket::from_hex(ticket) {
        return Err(InvalidField {
            field: "ticket",
            problem: match e {
                crate::mover::TicketError::NotHex => "is not hexadecimal".into(),
                crate::mover::TicketError::Length(n) => format!("holds {n} bytes, not 32"),
            },
            remedy: "give the 64 hex digits the manager issued for this job".into(),
        });
    }
    check_len(cert_field, cert_pem, MAX_CERT_PEM_LEN, true)
}

/// Checks a job id: 1 to [`MAX_JOB_ID_LEN`] letters, digits, `-`, `_` or `.`.
pub fn check_job_id(field: &'static str, job: &str) -> Result<(), InvalidField> {
    check_len(field, job, MAX_JOB_ID_LEN, true)?;
    if let Some(c) = job
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(InvalidField {
            field,
            problem: format!("holds {c:?}"),
            remedy: "use only letters, digits, '-', '_' or '.'".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_short_and_plain() {
        assert!(check_job_id("job", "job-20260101-000000-00ff").is_ok());
        assert!(check_job_id("job", "job-t1").is_ok());
        for bad in ["", " ", "job/../x", "job\n", "jöb", &"j".repeat(65)] {
            let e = check_job_id("job", bad).unwrap_err();
            assert!(e.to_string().starts_with("job "), "{e}");
            assert!(e.to_string().ends_with("nothing was changed"), "{e}");
        }
    }

    #[test]
    fn tickets_must_parse_and_certificates_be_short() {
        let good = "ab".repeat(32);
        assert!(check_ticket_and_cert(&good, "dest_cert_pem", "PEM").is_ok());
        let e = check_ticket_and_cert(&"zz".repeat(32), "dest_cert_pem", "PEM").unwrap_err();
        assert_eq!(e.field, "ticket");
        assert_eq!(e.problem, "is not hexadecimal");
        let e = check_ticket_and_cert(&"ab".repeat(31), "dest_cert_pem", "PEM").unwrap_err();
        assert_eq!(e.problem, "holds 31 bytes, not 32");
        let e = check_ticket_and_cert("", "dest_cert_pem", "PEM").unwrap_err();
        assert_eq!(e.problem, "is empty");
        let e = check_ticket_and_cert(&good, "source_cert_pem", "").unwrap_err();
        assert_eq!(e.field, "source_cert_pem");
        let huge = "x".repeat(MAX_CERT_PEM_LEN + 1);
        let e = check_ticket_and_cert(&good, "source_cert_pem", &huge).unwrap_err();
        assert_eq!(e.field, "source_cert_pem");
    }

    #[test]
    fn lengths_name_the_field_and_the_limit() {
        let e = check_len("owner", &"x".repeat(300), MAX_LABEL_LEN, true).unwrap_err();
        assert_eq!(
            e.to_string(),
            "owner is 300 bytes long; give at most 256; nothing was changed"
        );
        assert!(check_len("owner", "", MAX_LABEL_LEN, false).is_ok());
        assert!(check_len("owner", "", MAX_LABEL_LEN, true).is_err());
    }
}
