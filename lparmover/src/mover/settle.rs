//! The source's side of a settlement: when the manager's switch-over lease lapses while the
//! source is paused, the source asks the destination — never decides alone — over a new
//! connection authenticated exactly like the move (the pinned certificates of both HVMs, the
//! job's ticket). The destination's durable record is the commit point: "resumed" or "fenced",
//! whichever it wrote first (see [`super::receiver::SettleInbox`] for the other side).

use std::net::SocketAddr;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tracing::debug;

use super::sender::closed_by_peer;
use super::tls::{self, Identity, SERVER_NAME};
use super::wire::{JobTicket, Message, SettleStep, Verdict};
use super::{MoveError, close_code, conn_lost};

/// How to reach the destination for a settlement (kept by the paused source).
#[derive(Clone)]
pub(crate) struct SettleDial {
    pub bind_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    pub identity: Identity,
    pub pinned_peer_cert: CertificateDer<'static>,
    pub ticket: JobTicket,
}

impl SettleDial {
    /// One attempt: connect, ask, read the verdict, all within `within`.
    pub async fn ask(&self, step: SettleStep, within: Duration) -> Result<Verdict, MoveError> {
        match tokio::time::timeout(within, self.ask_once(step)).await {
            Ok(r) => r,
            Err(_) => Err(MoveError::PeerTimeout(within, "answering the settlement")),
        }
    }

    async fn ask_once(&self, step: SettleStep) -> Result<Verdict, MoveError> {
        let client = tls::client_config(&self.identity, &self.pinned_peer_cert)?;
        let endpoint = tls::endpoint(self.bind_addr, None)?;
        let addr = self.peer_addr;
        let conn = endpoint
            .connect_with(client, addr, SERVER_NAME)
            .map_err(|e| MoveError::Connect {
                addr,
                reason: e.to_string(),
            })?
            .await
            .map_err(|e| MoveError::Connect {
                addr,
                reason: e.to_string(),
            })?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(conn_lost)?;
        let frame = Message::Settle {
            ticket: self.ticket,
            step,
        }
        .encode()?;
        send.write_all(&frame).await.map_err(conn_lost)?;
        let answer = Message::read_async(&mut recv).await;
        let result = match answer {
            Ok(Some(Message::Verdict(v))) => Ok(v),
            Ok(Some(Message::Refused { code, message })) => {
                Err(MoveError::Refused { code, message })
            }
            Ok(Some(other)) => Err(MoveError::Protocol(format!(
                "expected Verdict, got {}",
                other.name()
            ))),
            Ok(None) | Err(_) => Err(match conn.close_reason() {
                Some(reason) => closed_by_peer(reason),
                None => MoveError::ConnectionLost("the settlement stream ended".into()),
            }),
        };
        debug!(?step, ?result, "settlement asked");
        conn.close(close_code::DONE.into(), b"settled");
        endpoint.wait_idle().await;
        result
    }
}
