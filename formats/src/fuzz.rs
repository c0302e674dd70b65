//! The check each fuzz target (`fuzz/targets/`) runs on one input, here so that the corpus
//! replay test (`tests/corpus.rs`) runs exactly the same code on every corpus file as the
//! fuzzer does. Each function panics on a broken invariant, and only then: any input, however
//! malformed, must come back as an error value.

use std::fmt::{Debug, Display};
use std::str::FromStr;

use crate::backup::{BackupEntry, HvmConfigDoc, check_name, parse_document, parse_manifest};
use crate::guest::{MemoryDigest, PAGE_SIZE, VcpuState};
use crate::model::ids::{
    ArrayName, ArrayPort, FcPort, FirmwareVersion, HostGroupNumber, LparName, LparNumber, MacAddr,
    NicSegment, StorageCable, Wwnn, Wwpn,
};
use crate::model::{Fleet, Mode};
use crate::policy::file::{parse as parse_policy, render as render_policy};
use crate::receiver::{Action, Input, RecvState, step};
use crate::wire::{JobTicket, Message};

/// One target's check of one input.
pub type Check = fn(&[u8]);

/// The fuzz targets, by name: the `fuzz/` binaries and the `fuzz/corpus/` folders are named so.
pub const TARGETS: &[(&str, Check)] = &[
    ("wire", wire),
    ("receiver", receiver),
    ("ids", ids),
    ("fleet", fleet),
    ("policy", policy),
    ("backup", backup),
];

/// The wire decoder on a byte stream, as a receiver reads it: frame after frame until the first
/// error or the end. Every message that decodes must encode again and decode to itself, and a
/// page batch that decodes its pages yields exactly one page per non-zero page.
pub fn wire(data: &[u8]) {
    let mut stream = data;
    let mut pages = Vec::new();
    while let Ok(Some(message)) = Message::read_from(&mut stream) {
        if let Message::Batch(batch) = &message
            && batch.decode_pages(&mut pages).is_ok()
        {
            assert_eq!(pages.len(), batch.nonzero_count() * PAGE_SIZE);
        }
        let frame = match message.encode() {
            Ok(frame) => frame,
            Err(e) => panic!("{} decoded but does not encode: {e}", message.name()),
        };
        match Message::read_from(&mut &frame[..]) {
            Ok(Some(again)) => assert_eq!(again, message, "decode(encode(m)) != m"),
            other => panic!("{} re-encoded does not decode: {other:?}", message.name()),
        }
    }
}

/// The receiver's state machine on a sequence of inputs read from the bytes (one opcode byte,
/// then the operands it needs; see [`next_input`]). Checked against a model of what it must do:
/// an `Ack` acknowledges exactly the batches accepted in its round, rounds go up by one,
/// `Finish` only leads to `Ready`, `Commit` only from `Ready`, nothing after the end but errors,
/// and a refused input leaves the state as it was (the caller keeps it).
pub fn receiver(data: &[u8]) {
    let mut bytes = data;
    let mut state = RecvState::AwaitHello;
    // Batches accepted in the round being received (the model's count, not the machine's).
    let mut accepted: u64 = 0;
    while let Some(input) = next_input(&mut bytes) {
        let before = state.clone();
        let Ok((after, action)) = step(state, input.clone()) else {
            if matches!(before, RecvState::Committed | RecvState::Aborted) {
                // Terminal states refuse everything: as expected.
            } else {
                assert!(
                    !matches!(input, Input::Control(Message::Abort { .. })),
                    "Abort refused in {before:?}"
                );
            }
            state = before;
            continue;
        };
        assert!(
            !matches!(before, RecvState::Committed | RecvState::Aborted),
            "{before:?} accepted {input:?}"
        );
        if let Input::BatchApplied { round } = input {
            assert_eq!(before.data_round(), Some(round), "batch of another round");
            accepted += 1;
        }
        match &action {
            Action::None => {}
            Action::Welcome => assert_eq!(before, RecvState::AwaitHello),
            Action::Ack { round, batches } => {
                assert_eq!(before.data_round(), Some(*round));
                assert_eq!(
                    *batches, accepted,
                    "Ack does not count the batches accepted"
                );
                assert_eq!(
                    after,
                    RecvState::Receiving {
                        round: round + 1,
                        applied: 0
                    }
                );
                accepted = 0;
            }
            Action::Finish { .. } => assert_eq!(after, RecvState::Ready),
            Action::Commit => {
                assert_eq!(before, RecvState::Ready);
                assert_eq!(after, RecvState::Committed);
            }
            Action::Abort { .. } => assert_eq!(after, RecvState::Aborted),
        }
        match &after {
            RecvState::Receiving { applied, .. } => assert_eq!(*applied, accepted),
            RecvState::Draining {
                applied, expected, ..
            }
            | RecvState::Finishing {
                applied, expected, ..
            } => {
                assert_eq!(*applied, accepted);
                assert!(applied < expected, "waiting for batches already in");
            }
            RecvState::AwaitHello => panic!("back to AwaitHello from {before:?}"),
            RecvState::Ready | RecvState::Committed | RecvState::Aborted => {}
        }
        state = after;
    }
}

/// One input of the state machine from the front of `bytes`, or `None` when they run out.
/// Rounds and batch counts are one byte each, so that a short input reaches every state.
fn next_input(bytes: &mut &[u8]) -> Option<Input> {
    let mut byte = || -> Option<u8> {
        let (first, rest) = bytes.split_first()?;
        *bytes = rest;
        Some(*first)
    };
    let op = byte()?;
    let input = match op % 8 {
        0 => Input::Control(Message::hello(JobTicket([7; 32]), "fuzz", 1 << 20, 2)),
        1 => Input::BatchApplied {
            round: u32::from(byte()?),
        },
        2 => Input::Control(Message::round_end(u32::from(byte()?), u64::from(byte()?))),
        3 => {
            let round = u32::from(byte()?);
            let batches = u64::from(byte()?);
            let digest = (op & 0x80 != 0).then_some(MemoryDigest([op; 32]));
            let vcpu = VcpuState {
                backend: "soft".into(),
                bytes: vec![op],
            };
            Input::Control(Message::switchover(round, batches, vcpu, digest))
        }
        4 => Input::Control(Message::commit()),
        5 => Input::Control(Message::abort("fuzz")),
        6 => Input::Control(Message::ready(None)),
        _ => Input::Control(Message::welcome([op; 32])),
    };
    Some(input)
}

/// Every identifier parser on the same text (as an operator would type it, so UTF-8 only).
/// What parses must print in a form that parses back to the same value.
pub fn ids(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    round_trip::<Wwpn>(text);
    round_trip::<Wwnn>(text);
    round_trip::<MacAddr>(text);
    round_trip::<LparNumber>(text);
    round_trip::<LparName>(text);
    round_trip::<FirmwareVersion>(text);
    round_trip::<NicSegment>(text);
    round_trip::<FcPort>(text);
    round_trip::<ArrayPort>(text);
    round_trip::<HostGroupNumber>(text);
    round_trip::<ArrayName>(text);
    round_trip::<StorageCable>(text);
    // A mode prints as its label ("Concurrent Maintenance"), which is no input form.
    let _ = text.parse::<Mode>();
    if let Ok(ticket) = JobTicket::from_hex(text) {
        assert_eq!(JobTicket::from_hex(&ticket.to_hex()), Ok(ticket));
    }
}

fn round_trip<T>(text: &str)
where
    T: FromStr + Display + Debug + PartialEq,
    T::Err: Debug,
{
    if let Ok(value) = text.parse::<T>() {
        let printed = value.to_string();
        match printed.parse::<T>() {
            Ok(again) => assert_eq!(again, value, "{text:?} printed as {printed:?}"),
            Err(e) => panic!("{text:?} parsed, but its printed form {printed:?} does not: {e:?}"),
        }
    }
}

/// The fleet file parser on UTF-8 text: it must answer with a fleet or an error, never panic.
/// A fleet it accepts names each blade and array once, as the lookups assume.
pub fn fleet(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(fleet) = Fleet::parse(text, "fuzz.toml") {
        for blade in &fleet.blades {
            let name = blade.blade.name.as_str();
            assert!(fleet.blade(name).is_some_and(|b| std::ptr::eq(b, blade)));
        }
        for array in &fleet.arrays {
            assert!(
                fleet
                    .array(array.name.as_str())
                    .is_some_and(|a| std::ptr::eq(a, array))
            );
        }
    }
}

/// The policy file parser on UTF-8 text: a policy or a non-empty list of problems, each on a
/// line of the text (0: the file as a whole). A policy it accepts renders to text that parses
/// back to the same policy (what `policy edit` and the navigator's Save rely on).
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_policy(text) {
        Ok(policy) => {
            let rendered = render_policy(&policy);
            // The same policy, but for where its entries stand in the text.
            let placed_nowhere = |mut p: crate::policy::model::Policy| {
                p.entries.iter_mut().for_each(|e| e.line = 0);
                p
            };
            match parse_policy(&rendered) {
                Ok(again) => assert_eq!(
                    placed_nowhere(again),
                    placed_nowhere(policy),
                    "parse(render(p)) != p:\n{rendered}"
                ),
                Err(problems) => {
                    panic!("a rendered policy does not parse: {problems:?}\n{rendered}")
                }
            }
        }
        Err(problems) => {
            assert!(!problems.is_empty(), "refused without a problem");
            let lines = text.lines().count() + 1;
            for problem in &problems {
                assert!(
                    problem.line <= lines,
                    "problem on line {} of {lines}: {problem:?}",
                    problem.line
                );
            }
        }
    }
}

/// The backup files' checks on bytes, as a restore reads them: as the manifest of job `job-1`
/// and as the configuration document of HVM `ch1-b1` (with the digest of these very bytes, so
/// the parser is reached). What is accepted has the shape the restore relies on, and encodes to
/// JSON that is accepted again as the same.
pub fn backup(data: &[u8]) {
    let path = std::path::Path::new("fuzz/backup.json");
    if let Ok(manifest) = parse_manifest(path, data, "job-1") {
        assert_eq!((manifest.job.as_str(), manifest.hvms.len()), ("job-1", 2));
        for entry in &manifest.hvms {
            assert!(check_name("HVM name", &entry.hvm).is_ok());
            assert_eq!(entry.file, format!("{}.json", entry.hvm));
        }
        let json = serde_json::to_vec(&manifest).expect("a manifest encodes");
        let again = parse_manifest(path, &json, "job-1");
        assert_eq!(
            again.as_ref(),
            Ok(&manifest),
            "a re-encoded manifest reads back"
        );
    }
    let entry = |bytes: &[u8]| BackupEntry {
        hvm: "ch1-b1".into(),
        file: "ch1-b1.json".into(),
        lpars: 0,
        blake3: blake3::hash(bytes).to_hex().to_string(),
    };
    if let Ok(doc) = parse_document(path, data, &entry(data)) {
        assert_eq!(doc.blade_name, "ch1-b1");
        assert!(doc.format <= HvmConfigDoc::FORMAT);
        let json = serde_json::to_vec(&doc).expect("a document encodes");
        let again = parse_document(path, &json, &entry(&json));
        assert_eq!(again.as_ref(), Ok(&doc), "a re-encoded document reads back");
    }
}
