//! The UDP socket under a migration endpoint: quinn's tokio socket, with GSO batches split so
//! that datagrams can be as large as the path allows.
//!
//! Why: QUIC's CPU cost on a fast path is mostly per packet (AEAD setup, header protection, frame
//! building, ACK and loss bookkeeping), so loopback — MTU 65,536 — moves the most bytes per core
//! with the largest datagrams. quinn, though, hands up to 10 equal segments to one `sendmsg`
//! (UDP GSO), and the kernel refuses a batch over one IP datagram's 65,507 payload bytes with
//! `EMSGSIZE`, which quinn takes for a black hole. [`SplitBatches`] sends such a batch as several
//! `sendmsg` calls of as many whole segments as fit, so MTU discovery can climb to
//! [`MAX_UDP_PAYLOAD`] on loopback and settle at 1472 on an Ethernet-sized path as before.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, Runtime, UdpPoller};

/// Largest UDP payload one IPv4 datagram carries (65,535 − 20 IP − 8 UDP header bytes); also the
/// largest GSO batch the kernel accepts in one `sendmsg`.
pub const MAX_DATAGRAM: usize = 65_507;

/// Largest UDP payload a migration endpoint accepts and MTU discovery searches up to: one whole
/// IPv4 datagram, which loopback carries unfragmented.
pub const MAX_UDP_PAYLOAD: u16 = MAX_DATAGRAM as u16;

/// quinn's tokio UDP socket, sending GSO batches larger than one datagram in several calls.
pub struct SplitBatches {
    inner: Arc<dyn AsyncUdpSocket>,
}

impl SplitBatches {
    /// Wraps `socket` (bound, non-blocking) in quinn's tokio runtime socket.
    pub fn wrap(socket: std::net::UdpSocket) -> io::Result<Arc<Self>> {
        let inner = quinn::TokioRuntime.wrap_udp_socket(socket)?;
        Ok(Arc::new(Self { inner }))
    }
}

impl fmt::Debug for SplitBatches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SplitBatches")
            .field("inner", &self.inner)
            .finish()
    }
}

/// The pieces `transmit` must be sent as: itself when it fits one datagram (or is not a batch),
/// else runs of whole segments of at most [`MAX_DATAGRAM`] bytes each.
fn pieces<'a>(transmit: &Transmit<'a>) -> impl Iterator<Item = Transmit<'a>> + use<'a> {
    let whole = transmit.contents.len();
    let per_call = match transmit.segment_size {
        Some(seg) if whole > MAX_DATAGRAM && seg > 0 => (MAX_DATAGRAM / seg).max(1) * seg,
        _ => whole.max(1),
    };
    let (destination, ecn, src_ip, segment_size) = (
        transmit.destination,
        transmit.ecn,
        transmit.src_ip,
        transmit.segment_size,
    );
    transmit
        .contents
        .chunks(per_call)
        .map(move |chunk| Transmit {
            destination,
            ecn,
            contents: chunk,
            // A piece of one segment is a plain datagram.
            segment_size: segment_size.filter(|&seg| chunk.len() > seg),
            src_ip,
        })
}

impl AsyncUdpSocket for SplitBatches {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Arc::clone(&self.inner).create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        // If a later piece would block, quinn retries the whole batch: the pieces already sent
        // arrive twice and the receiver drops the duplicate packet numbers. Cheaper and safer
        // than reporting loss, which would shrink the congestion window.
        for piece in pieces(transmit) {
            self.inner.try_send(&piece)?;
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    /// One: quinn sizes each receive buffer as `max_udp_payload × max_receive_segments`, and
    /// a GRO-coalesced read never exceeds one datagram's [`MAX_DATAGRAM`] bytes, so one
    /// maximum-sized slot holds any read — where the inner socket's 64 segments would make each
    /// endpoint allocate 64 times that, per receive batch slot.
    fn max_receive_segments(&self) -> usize {
        1
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transmit(contents: &[u8], segment_size: Option<usize>) -> Transmit<'_> {
        Transmit {
            destination: "127.0.0.1:9".parse().expect("address"),
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        }
    }

    #[test]
    fn a_batch_within_one_datagram_is_sent_as_is() {
        let data = vec![7u8; 10 * 6000];
        let out: Vec<_> = pieces(&transmit(&data, Some(6000))).collect();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].contents.len(), data.len());
        assert_eq!(out[0].segment_size, Some(6000));
    }

    #[test]
    fn a_large_batch_is_split_on_segment_boundaries_within_one_datagram() {
        let seg = 16_000;
        // 9 full segments and a short last one, as quinn builds them.
        let data: Vec<u8> = (0..9 * seg + 1234).map(|i| (i % 251) as u8).collect();
        let out: Vec<_> = pieces(&transmit(&data, Some(seg))).collect();
        assert!(out.iter().all(|p| p.contents.len() <= MAX_DATAGRAM));
        assert!(
            out[..out.len() - 1]
                .iter()
                .all(|p| p.contents.len() % seg == 0)
        );
        let joined: Vec<u8> = out
            .iter()
            .flat_map(|p| p.contents.iter().copied())
            .collect();
        assert_eq!(joined, data, "pieces carry every byte once, in order");
        // 4 segments (64,000 bytes) per call: 4 + 4 + (1 and the short tail).
        let sizes: Vec<_> = out.iter().map(|p| p.contents.len()).collect();
        assert_eq!(sizes, vec![4 * seg, 4 * seg, seg + 1234]);
        assert!(out.iter().all(|p| p.segment_size == Some(seg)));
    }

    #[test]
    fn a_short_tail_alone_is_a_plain_datagram() {
        let seg = 60_000;
        let data = vec![5u8; 2 * seg + 100];
        let out: Vec<_> = pieces(&transmit(&data, Some(seg))).collect();
        let sizes: Vec<_> = out.iter().map(|p| p.contents.len()).collect();
        assert_eq!(sizes, vec![seg, seg, 100]);
        assert!(
            out.iter().all(|p| p.segment_size.is_none()),
            "single segments and the tail go as plain datagrams"
        );
    }

    #[test]
    fn maximum_sized_segments_go_one_per_call() {
        let seg = MAX_DATAGRAM;
        let data = vec![1u8; 3 * seg];
        let out: Vec<_> = pieces(&transmit(&data, Some(seg))).collect();
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|p| p.segment_size.is_none()));
    }

    #[test]
    fn a_single_datagram_is_untouched() {
        let data = vec![3u8; 1200];
        let out: Vec<_> = pieces(&transmit(&data, None)).collect();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].segment_size, None);
    }
}
