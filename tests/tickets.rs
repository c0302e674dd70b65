//! The migration path's secrets between two real blades (issue 17, item 4): a source or a
//! destination with a certificate the other was not told to pin, a ticket used once and shown
//! again, a ticket whose lifetime ran out, and a ticket shown for another LPAR are each refused.
//! The source LPAR keeps running; a refusal consumes nothing (the expected move still gets in);
//! once the job is rolled back — or expires on its own — neither blade holds anything of it: no
//! LPAR defined, nothing reserved, both state files byte for byte as before.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::time::{Duration, Instant};

use lparmover::api::{
    HvmClient, IncomingPrepared, MigrationStatus, MoveOptions, Phase, PrepareIncoming, StartSend,
};
use lparmover::emg::Emg;
use lparmover::model::LparStatus;
use lparmover::mover::JobTicket;
use lpm_tests::{TestBlade, demo_fleet, find_lpar};

struct Pair {
    b1: TestBlade,
    b2: TestBlade,
    _dir: tempfile::TempDir,
}

impl Pair {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (_, fleet_file) = demo_fleet(dir.path());
        let b1 = TestBlade::start(&fleet_file, "ch1-b1", &dir.path().join("b1")).unwrap();
        let b2 = TestBlade::start(&fleet_file, "ch1-b2", &dir.path().join("b2")).unwrap();
        Self { b1, b2, _dir: dir }
    }

    /// The destination still waits for `job`'s source with its ticket unused (`why`: what
    /// must not have used it up).
    async fn still_expecting(&self, job: &str, why: &str) {
        let status = self.b2.client().migration_status(job).await.unwrap();
        assert_eq!(status.phase, Phase::Prepared, "{why}: {status:?}");
    }

    /// The destination gets ready for `lpar` of the source, expecting `ticket` from the source
    /// certificate `source_cert_pem`.
    async fn prepare(
        &self,
        job: &str,
        lpar: &str,
        ticket: JobTicket,
        source_cert_pem: &str,
        ticket_ttl_s: Option<u64>,
    ) -> IncomingPrepared {
        let view = find_lpar(&self.b1.client(), lpar).await.unwrap();
        self.b2
            .client()
            .prepare_incoming(
                &PrepareIncoming {
                    job: job.into(),
                    lpar: view.lpar,
                    number: None,
                    ticket: ticket.to_hex(),
                    source_cert_pem: source_cert_pem.into(),
                    ticket_ttl_s,
                    purpose: Default::default(),
                },
                None,
            )
            .await
            .unwrap()
    }

    /// The source sends `lpar` to the prepared destination presenting `ticket` and pinning
    /// `dest_cert_pem`; returns the source's final status of the job.
    async fn send(
        &self,
        job: &str,
        lpar: &str,
        ticket: JobTicket,
        to: &IncomingPrepared,
        dest_cert_pem: &str,
    ) -> MigrationStatus {
        let src = self.b1.client();
        let view = find_lpar(&src, lpar).await.unwrap();
        src.start_send(
            &StartSend {
                job: job.into(),
                lpar: view.lpar.number,
                ticket: ticket.to_hex(),
                dest_addr: to.migration_addr,
                dest_cert_pem: dest_cert_pem.into(),
                options: MoveOptions::default(),
                exchange: to.exchange.clone(),
                purpose: Default::default(),
            },
            None,
        )
        .await
        .unwrap();
        until(&src, job, |s| {
            s.phase.is_final() || s.phase == Phase::SwitchoverReady
        })
        .await
    }

    /// The manager's rollback of `job` on both blades, as `lparmover recover` does it: the
    /// source resumes if it still holds the move open, the destination always drops what it
    /// prepared (its receiver may have ended on its own; the definition stays until told).
    async fn roll_back(&self, job: &str) {
        let src = self.b1.client();
        let open = src
            .migration_status(job)
            .await
            .is_ok_and(|s| !s.phase.is_final());
        if open {
            src.abort_migration(job).await.unwrap();
        }
        let dst = self.b2.client();
        if dst.migration_status(job).await.is_ok() {
            dst.abort_migration(job).await.unwrap();
        }
    }

    /// Both LPARs of the source run on it as before and the destination has neither.
    async fn source_runs_on(&self) {
        for name in ["web-01", "db-01"] {
            let view = find_lpar(&self.b1.client(), name).await.unwrap();
            assert_eq!(
                view.lpar.status,
                LparStatus::Activated,
                "{name} on the source"
            );
            assert!(view.runtime.is_some(), "{name}'s guest runs on the source");
            assert!(
                find_lpar(&self.b2.client(), name).await.is_none(),
                "{name} is left defined on the destination"
            );
        }
    }
}

/// Polls the job's status on `client` until `done` holds (at most 30 s).
async fn until(
    client: &HvmClient,
    job: &str,
    done: impl Fn(&MigrationStatus) -> bool,
) -> MigrationStatus {
    let start = Instant::now();
    loop {
        let status = client.migration_status(job).await.unwrap();
        if done(&status) {
            return status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "job {job} stuck: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn error_of(status: &MigrationStatus) -> String {
    status
        .error
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default()
}

fn impostor_cert() -> String {
    lparmover::tls::Identity::generate("impostor", &[])
        .unwrap()
        .cert_pem()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_certificates_replayed_expired_and_foreign_tickets_are_refused_and_leave_nothing() {
    let p = Pair::start();
    let (b1_cert, b2_cert) = (p.b1.profile.cert_pem.clone(), p.b2.profile.cert_pem.clone());
    let (b1_before, b2_before) = (p.b1.state_bytes(), p.b2.state_bytes());
    let unchanged = |what: &str| {
        assert!(
            p.b1.state_bytes() == b1_before,
            "{what}: the source's state file changed"
        );
        assert!(
            p.b2.state_bytes() == b2_before,
            "{what}: the destination's state file changed"
        );
    };

    // 1. The destination pins a certificate the source does not have.
    let ticket = JobTicket::generate();
    let to = p
        .prepare("job-t-cert-src", "web-01", ticket, &impostor_cert(), None)
        .await;
    let sent = p
        .send("job-t-cert-src", "web-01", ticket, &to, &b2_cert)
        .await;
    assert_eq!(sent.phase, Phase::Failed, "{sent:?}");
    assert_eq!(
        sent.error.as_ref().unwrap().kind,
        Emg::MoverConnectionRefused
    );
    p.still_expecting("job-t-cert-src", "the refusal consumed the ticket")
        .await;
    p.roll_back("job-t-cert-src").await;
    p.source_runs_on().await;
    unchanged("a source with an unpinned certificate");

    // 2. The source pins a certificate the destination does not present.
    let ticket = JobTicket::generate();
    let to = p
        .prepare("job-t-cert-dst", "web-01", ticket, &b1_cert, None)
        .await;
    let sent = p
        .send("job-t-cert-dst", "web-01", ticket, &to, &impostor_cert())
        .await;
    assert_eq!(sent.phase, Phase::Failed, "{sent:?}");
    assert_eq!(
        sent.error.as_ref().unwrap().kind,
        Emg::MoverConnectionRefused
    );
    p.still_expecting("job-t-cert-dst", "a refused destination")
        .await;
    p.roll_back("job-t-cert-dst").await;
    p.source_runs_on().await;
    unchanged("a destination with an unpinned certificate");

    // 3. A ticket for web-01 shown with db-01's memory.
    let ticket = JobTicket::generate();
    let to = p
        .prepare("job-t-foreign", "web-01", ticket, &b1_cert, None)
        .await;
    let sent = p
        .send("job-t-foreign-db", "db-01", ticket, &to, &b2_cert)
        .await;
    assert_eq!(sent.phase, Phase::Failed, "{sent:?}");
    let why = error_of(&sent);
    assert!(
        why.contains("\"web-01\"") && why.contains("\"db-01\""),
        "the refusal names both LPARs: {why}"
    );
    p.still_expecting("job-t-foreign", "another LPAR's memory was shown")
        .await;
    p.roll_back("job-t-foreign").await;
    p.roll_back("job-t-foreign-db").await;
    p.source_runs_on().await;
    unchanged("a ticket shown for another LPAR");

    // 4. A ticket used once (the move reached the switch-over, then was rolled back) and shown
    //    again while the destination expects another move of the same source.
    let used = JobTicket::generate();
    let to = p
        .prepare("job-t-used", "web-01", used, &b1_cert, None)
        .await;
    let sent = p.send("job-t-used", "web-01", used, &to, &b2_cert).await;
    assert!(
        matches!(sent.phase, Phase::SwitchoverReady | Phase::Aborted),
        "the first use of the ticket moves memory: {sent:?}"
    );
    p.roll_back("job-t-used").await;
    p.source_runs_on().await;
    let fresh = JobTicket::generate();
    let to = p
        .prepare("job-t-next", "web-01", fresh, &b1_cert, None)
        .await;
    let sent = p.send("job-t-replay", "web-01", used, &to, &b2_cert).await;
    assert_eq!(sent.phase, Phase::Failed, "{sent:?}");
    assert_eq!(sent.error.as_ref().unwrap().kind, Emg::MoverRefused);
    assert!(
        error_of(&sent).contains("unknown or already used"),
        "{sent:?}"
    );
    p.still_expecting("job-t-next", "the replay consumed the next move's ticket")
        .await;
    p.roll_back("job-t-next").await;
    p.roll_back("job-t-replay").await;
    p.source_runs_on().await;
    unchanged("a replayed ticket");

    // 5. A ticket nobody used within its lifetime: the destination drops the incoming LPAR on
    //    its own, with no manager, and the ticket is refused afterwards.
    let expiring = JobTicket::generate();
    let started = Instant::now();
    let to = p
        .prepare("job-t-expired", "web-01", expiring, &b1_cert, Some(1))
        .await;
    let expired = until(&p.b2.client(), "job-t-expired", |s| s.phase.is_final()).await;
    assert_eq!(expired.phase, Phase::Aborted, "{expired:?}");
    assert!(error_of(&expired).contains("ticket expired"), "{expired:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the ticket expired {:?} after prepare, its lifetime was 1 s",
        started.elapsed()
    );
    p.source_runs_on().await;
    unchanged("an expired ticket, before anyone cleaned up");
    let fresh = JobTicket::generate();
    let next = p
        .prepare("job-t-after", "web-01", fresh, &b1_cert, None)
        .await;
    assert_eq!(next.migration_addr, to.migration_addr);
    let sent = p
        .send("job-t-late", "web-01", expiring, &next, &b2_cert)
        .await;
    assert_eq!(sent.phase, Phase::Failed, "{sent:?}");
    assert!(
        error_of(&sent).contains("unknown or already used"),
        "{sent:?}"
    );
    p.roll_back("job-t-after").await;
    p.roll_back("job-t-late").await;
    p.source_runs_on().await;
    unchanged("a late source with an expired ticket");

    // An out-of-range lifetime is refused before anything is defined.
    for ttl in [0, PrepareIncoming::MAX_TICKET_TTL_S + 1, u64::MAX] {
        let view = find_lpar(&p.b1.client(), "web-01").await.unwrap();
        let refused =
            p.b2.client()
                .prepare_incoming(
                    &PrepareIncoming {
                        job: "job-t-ttl".into(),
                        lpar: view.lpar,
                        number: None,
                        ticket: JobTicket::generate().to_hex(),
                        source_cert_pem: b1_cert.clone(),
                        ticket_ttl_s: Some(ttl),
                        purpose: Default::default(),
                    },
                    None,
                )
                .await
                .unwrap_err();
        assert!(refused.to_string().contains("ticket_ttl_s"), "{refused}");
    }
    unchanged("an out-of-range ticket lifetime");
}
