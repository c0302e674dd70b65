//! The receiver's explicit state machine ([`RecvState`], [`step`]): pure, no I/O, so it is
//! tested (and fuzzed) without a network. The sessions that drive it are in
//! `lparmover::mover::receiver`.

use crate::guest::{MemoryDigest, VcpuState};
use crate::wire::Message;

/// The receiver's protocol state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecvState {
    /// Connected; the first control message must be `Hello`.
    AwaitHello,
    /// Pre-copy round `round`; `applied` batches of it written so far.
    Receiving { round: u32, applied: u64 },
    /// `RoundEnd` seen; waiting until `expected` batches of `round` are written.
    Draining {
        round: u32,
        applied: u64,
        expected: u64,
    },
    /// `Switchover` seen; waiting for the last batches of the final round.
    Finishing {
        round: u32,
        applied: u64,
        expected: u64,
        vcpu: VcpuState,
        digest: Option<MemoryDigest>,
    },
    /// Everything is in; the destination is paused, waiting for the commit decision.
    Ready,
    /// Committed: the destination is authoritative.
    Committed,
    /// Aborted: the received memory is scrubbed.
    Aborted,
}

impl RecvState {
    fn name(&self) -> &'static str {
        match self {
            Self::AwaitHello => "AwaitHello",
            Self::Receiving { .. } => "Receiving",
            Self::Draining { .. } => "Draining",
            Self::Finishing { .. } => "Finishing",
            Self::Ready => "Ready",
            Self::Committed => "Committed",
            Self::Aborted => "Aborted",
        }
    }

    /// The round whose batches are accepted now, if any.
    pub fn data_round(&self) -> Option<u32> {
        match self {
            Self::Receiving { round, .. }
            | Self::Draining { round, .. }
            | Self::Finishing { round, .. } => Some(*round),
            _ => None,
        }
    }
}

/// What drives the state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A control-stream message.
    Control(Message),
    /// A data stream finished writing one batch of `round`.
    BatchApplied { round: u32 },
}

/// What the session must do after a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    None,
    /// Accept the move (send `Welcome`).
    Welcome,
    /// Acknowledge a round.
    Ack { round: u32, batches: u64 },
    /// Load the vCPU state, check the digest, send `Ready`.
    Finish {
        vcpu: VcpuState,
        digest: Option<MemoryDigest>,
    },
    /// Note the commit (send `Committed`).
    Commit,
    /// Scrub and send `Aborted`.
    Abort { reason: String },
}

/// A message or event the current state does not allow.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{what} is not allowed in receiver state {state}")]
pub struct OutOfOrder {
    /// What arrived.
    pub what: String,
    /// The state it arrived in.
    pub state: &'static str,
}

/// The receiver's transition function: pure, no I/O.
pub fn step(state: RecvState, input: Input) -> Result<(RecvState, Action), OutOfOrder> {
    use RecvState as S;
    let bad = |what: String, state: &RecvState| OutOfOrder {
        what,
        state: state.name(),
    };
    match (state, input) {
        (S::AwaitHello, Input::Control(Message::Hello(_))) => Ok((
            S::Receiving {
                round: 0,
                applied: 0,
            },
            Action::Welcome,
        )),
        (s @ (S::Committed | S::Aborted), Input::Control(m)) => Err(bad(m.name().to_string(), &s)),
        (_, Input::Control(Message::Abort { reason })) => {
            Ok((S::Aborted, Action::Abort { reason }))
        }
        (S::Receiving { round, applied }, Input::BatchApplied { round: r }) if r == round => Ok((
            S::Receiving {
                round,
                applied: applied + 1,
            },
            Action::None,
        )),
        (
            S::Draining {
                round,
                applied,
                expected,
            },
            Input::BatchApplied { round: r },
        ) if r == round => {
            let applied = applied + 1;
            if applied == expected {
                Ok((
                    S::Receiving {
                        round: round + 1,
                        applied: 0,
                    },
                    Action::Ack {
                        round,
                        batches: expected,
                    },
                ))
            } else {
                Ok((
                    S::Draining {
                        round,
                        applied,
                        expected,
                    },
                    Action::None,
                ))
            }
        }
        (
            S::Finishing {
                round,
                applied,
                expected,
                vcpu,
                digest,
            },
            Input::BatchApplied { round: r },
        ) if r == round => {
            let applied = applied + 1;
            if applied == expected {
                Ok((S::Ready, Action::Finish { vcpu, digest }))
            } else {
                Ok((
                    S::Finishing {
                        round,
                        applied,
                        expected,
                        vcpu,
                        digest,
                    },
                    Action::None,
                ))
            }
        }
        (
            s @ S::Receiving { round, applied },
            Input::Control(Message::RoundEnd { round: r, batches }),
        ) if r == round => {
            if applied > batches {
                Err(bad(
                    format!("RoundEnd announcing {batches} batches after {applied} arrived"),
                    &s,
                ))
            } else if applied == batches {
                Ok((
                    S::Receiving {
                        round: round + 1,
                        applied: 0,
                    },
                    Action::Ack { round, batches },
                ))
            } else {
                Ok((
                    S::Draining {
                        round,
                        applied,
                        expected: batches,
                    },
                    Action::None,
                ))
            }
        }
        (s @ S::Receiving { round, applied }, Input::Control(Message::Switchover(sw)))
            if sw.round == round =>
        {
            if applied > sw.batches {
                Err(bad(
                    format!(
                        "Switchover announcing {} batches after {applied} arrived",
                        sw.batches
                    ),
                    &s,
                ))
            } else if applied == sw.batches {
                Ok((
                    S::Ready,
                    Action::Finish {
                        vcpu: sw.vcpu,
                        digest: sw.digest,
                    },
                ))
            } else {
                Ok((
                    S::Finishing {
                        round,
                        applied,
                        expected: sw.batches,
                        vcpu: sw.vcpu,
                        digest: sw.digest,
                    },
                    Action::None,
                ))
            }
        }
        (S::Ready, Input::Control(Message::Commit)) => Ok((S::Committed, Action::Commit)),
        (s, Input::Control(m)) => {
            let what = match &m {
                Message::RoundEnd { round, .. } => format!("RoundEnd for round {round}"),
                Message::Switchover(sw) => format!("Switchover for round {}", sw.round),
                other => other.name().to_string(),
            };
            Err(bad(what, &s))
        }
        (s, Input::BatchApplied { round }) => Err(bad(format!("a batch of round {round}"), &s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::JobTicket;

    fn hello() -> Message {
        Message::hello(JobTicket([1; 32]), "web-01", 1 << 20, 4)
    }

    fn vcpu() -> VcpuState {
        VcpuState {
            backend: "soft".into(),
            bytes: vec![1],
        }
    }

    #[test]
    fn full_happy_path() {
        let (s, a) = step(RecvState::AwaitHello, Input::Control(hello())).expect("hello");
        assert_eq!(a, Action::Welcome);
        // Two batches arrive before the RoundEnd, one after.
        let (s, _) = step(s, Input::BatchApplied { round: 0 }).expect("b");
        let (s, _) = step(s, Input::BatchApplied { round: 0 }).expect("b");
        let (s, a) = step(s, Input::Control(Message::round_end(0, 3))).expect("end");
        assert_eq!(a, Action::None);
        let (s, a) = step(s, Input::BatchApplied { round: 0 }).expect("b");
        assert_eq!(
            a,
            Action::Ack {
                round: 0,
                batches: 3
            }
        );
        assert_eq!(
            s,
            RecvState::Receiving {
                round: 1,
                applied: 0
            }
        );
        // An empty round acks at once.
        let (s, a) = step(s, Input::Control(Message::round_end(1, 0))).expect("end");
        assert_eq!(
            a,
            Action::Ack {
                round: 1,
                batches: 0
            }
        );
        let (s, a) = step(s, Input::Control(Message::switchover(2, 1, vcpu(), None))).expect("sw");
        assert_eq!(a, Action::None);
        let (s, a) = step(s, Input::BatchApplied { round: 2 }).expect("b");
        assert!(matches!(a, Action::Finish { .. }));
        assert_eq!(s, RecvState::Ready);
        let (s, a) = step(s, Input::Control(Message::commit())).expect("commit");
        assert_eq!((s, a), (RecvState::Committed, Action::Commit));
    }

    #[test]
    fn out_of_order_messages_are_refused() {
        let err = step(
            RecvState::AwaitHello,
            Input::Control(Message::round_end(0, 1)),
        )
        .expect_err("must fail");
        assert_eq!(err.state, "AwaitHello");
        assert!(
            err.to_string()
                .contains("RoundEnd for round 0 is not allowed"),
            "{err}"
        );
        let recv = RecvState::Receiving {
            round: 2,
            applied: 0,
        };
        assert!(step(recv.clone(), Input::Control(Message::round_end(3, 1))).is_err());
        assert!(step(recv.clone(), Input::BatchApplied { round: 1 }).is_err());
        assert!(step(recv.clone(), Input::Control(Message::commit())).is_err());
        assert!(step(recv.clone(), Input::Control(hello())).is_err());
        assert!(step(recv.clone(), Input::Control(Message::welcome([0; 32]))).is_err());
        let many = RecvState::Receiving {
            round: 2,
            applied: 5,
        };
        assert!(step(many, Input::Control(Message::round_end(2, 4))).is_err());
        assert!(step(RecvState::Ready, Input::BatchApplied { round: 0 }).is_err());
        assert!(step(RecvState::Committed, Input::Control(Message::abort("late"))).is_err());
    }

    #[test]
    fn abort_is_accepted_until_commit() {
        for s in [
            RecvState::Receiving {
                round: 0,
                applied: 0,
            },
            RecvState::Draining {
                round: 0,
                applied: 0,
                expected: 2,
            },
            RecvState::Ready,
        ] {
            let (n, a) = step(s, Input::Control(Message::abort("x"))).expect("abort");
            assert_eq!(n, RecvState::Aborted);
            assert_eq!(a, Action::Abort { reason: "x".into() });
        }
    }
}
