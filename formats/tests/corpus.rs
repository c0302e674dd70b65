//! Replays the fuzz corpus (`fuzz/corpus/<target>/`, seeds and every crash input found) through
//! the same checks the fuzz targets run, as an ordinary test: a fixed crash stays fixed without
//! building the fuzzer.

use std::fs;
use std::path::Path;

use lpm_formats::fuzz::TARGETS;

#[test]
fn every_corpus_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for (name, check) in TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.expect("corpus entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: no corpus", dir.display());
        for file in &files {
            let data = fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            // A panic names the input, so the failing file is found without a debugger.
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(
                outcome.is_ok(),
                "{} fails its target {name}",
                file.display()
            );
        }
        eprintln!("{name}: {} corpus inputs replayed", files.len());
    }
}

/// Writes the seed inputs made from code (valid frames of every message kind, a whole receiver
/// session, identifiers in every accepted form) into `fuzz/corpus/`. Run by hand after a wire
/// format change: `cargo test -p lpm-formats --test corpus -- --ignored write_seeds`.
#[test]
#[ignore = "writes into the source tree; run by hand"]
fn write_seeds() {
    use lpm_formats::guest::{MemoryDigest, PAGE_SIZE, VcpuState};
    use lpm_formats::wire::{
        Encoding, JobTicket, Message, PageBatch, RefuseCode, SettleStep, Verdict,
    };

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = root.join(target);
        fs::create_dir_all(&dir).expect("corpus dir");
        fs::write(dir.join(format!("seed-{name}")), data).expect("write seed");
    };

    let vcpu = VcpuState {
        backend: "soft".into(),
        bytes: vec![1, 2, 3],
    };
    let mut pages = vec![0u8; 2 * PAGE_SIZE];
    pages[5] = 9;
    pages[PAGE_SIZE + 7] = 1;
    let raw = PageBatch {
        round: 0,
        runs: vec![(0, 2), (10, 1)],
        zero_mask: 0b100,
        encoding: Encoding::Raw,
        payload: pages.clone().into(),
    };
    let zstd = PageBatch {
        encoding: Encoding::Zstd,
        payload: zstd::bulk::compress(&pages, 1).expect("compress").into(),
        ..raw.clone()
    };
    let messages = [
        (
            "hello",
            Message::hello(JobTicket([1; 32]), "web-01", 1 << 20, 4),
        ),
        ("welcome", Message::welcome([2; 32])),
        ("join", Message::join([3; 32])),
        ("batch-raw", Message::batch(raw).expect("raw batch")),
        ("batch-zstd", Message::batch(zstd).expect("zstd batch")),
        ("round-end", Message::round_end(0, 3)),
        ("round-ack", Message::round_ack(0, 3)),
        (
            "switchover",
            Message::switchover(2, 1, vcpu.clone(), Some(MemoryDigest([4; 32]))),
        ),
        ("ready", Message::ready(Some(MemoryDigest([5; 32])))),
        ("commit", Message::commit()),
        ("committed", Message::committed()),
        ("abort", Message::abort("operator cancelled")),
        ("aborted", Message::aborted()),
        (
            "refused",
            Message::refused(RefuseCode::Ticket, "unknown ticket"),
        ),
        (
            "settle",
            Message::Settle {
                ticket: JobTicket([6; 32]),
                step: SettleStep::SourceLoggedOut,
            },
        ),
        ("verdict", Message::Verdict(Verdict::Resumed)),
    ];
    let mut session = Vec::new();
    for (name, message) in &messages {
        let frame = message.encode().expect("encode");
        write("wire", name, &frame);
        session.extend_from_slice(&frame);
    }
    // Every kind in one input: the decoder's frame loop.
    write("wire", "all-kinds", &session);

    // Receiver opcodes (lpm_formats::fuzz::next_input): 0 Hello, 1 r batch, 2 r n RoundEnd,
    // 3 r n Switchover, 4 Commit, 5 Abort.
    write(
        "receiver",
        "happy",
        &[0, 1, 0, 1, 0, 2, 0, 3, 1, 0, 2, 1, 0, 3, 2, 1, 1, 2, 4],
    );
    write("receiver", "drain", &[0, 2, 0, 2, 1, 0, 1, 0, 3, 1, 0, 4]);
    write("receiver", "abort", &[0, 1, 0, 5, 4, 1, 0]);

    for (i, text) in [
        "50:06:0e:80:10:2a:3c:00",
        "50060E80102A3C00",
        "00:00:87:01:10:02",
        "02-15",
        "web-01",
        "ams1:1B",
        "0A",
        "12",
        "live",
        "0101010101010101010101010101010101010101010101010101010101010101",
    ]
    .iter()
    .enumerate()
    {
        write("ids", &i.to_string(), text.as_bytes());
    }
}
