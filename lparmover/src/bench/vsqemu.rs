//! `lparmover bench vs-qemu`: our live move and QEMU's, on the same guest, memory and link,
//! summarized side by side with the targets of the comparison.
//!
//! Per link (a veth pair between two namespaces: unshaped, `tbf` 10 Gbit/s, `tbf` 1 Gbit/s)
//! one calibration move per QEMU mode picks QEMU's best; then for every size and dirty rate,
//! QEMU's moves (downtime limit 50 ms like ours, and QEMU's default 300 ms beside it) and ours
//! (`bench live`'s machinery, one vCPU like the QEMU guest). The guest of both sides is the same
//! program on the same content (`hvmsim::guest::qemu`); both pauses are measured from its
//! heartbeat from outside the guest, the same way.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::qemu::{QemuMode, QemuMove};
use super::report::{Stats, stats};
use super::{CaseResult, Link, carried_load};

/// One case of the comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VsCase {
    /// The link.
    pub link: Link,
    /// Guest memory, MiB.
    pub memory_mib: u64,
    /// Configured dirty rate, MB/s.
    pub dirty_mbps: f64,
}

impl VsCase {
    /// `1gbit 4096 MiB 200 MB/s`.
    pub fn label(&self) -> String {
        format!(
            "{} {} GiB {} MB/s",
            self.link.name(),
            self.memory_mib as f64 / 1024.0,
            self.dirty_mbps
        )
    }
}

/// How QEMU's mode was chosen on a link.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Calibration {
    /// The link.
    pub link: Link,
    /// Every mode tried, with its move (None: it failed to start).
    pub tried: Vec<(QemuMode, Option<QemuMove>)>,
    /// The fastest mode that converged.
    pub best: QemuMode,
    /// QEMU's wire rate in the best calibration move, Gbit/s.
    pub best_wire_gbits: f64,
    /// Probed TCP rate of the link, Gbit/s.
    pub probe_gbits: Option<f64>,
    /// Why the comparison on this link is not fair, if it is not.
    pub unfair: Option<String>,
}

/// Smallest share of a shaped link's rate QEMU must reach for the comparison to count.
pub const FAIR_LINK_SHARE: f64 = 0.8;

impl Calibration {
    /// Picks the fastest converged mode and checks QEMU filled the link.
    pub fn new(
        link: Link,
        tried: Vec<(QemuMode, Option<QemuMove>)>,
        probe_gbits: Option<f64>,
    ) -> Self {
        let best = tried
            .iter()
            .filter_map(|(mode, m)| m.as_ref().filter(|m| m.converged).map(|m| (*mode, m)))
            .min_by(|a, b| a.1.total_s.total_cmp(&b.1.total_s));
        let (best, best_wire_gbits) = match best {
            Some((mode, m)) => (mode, wire_gbits(m)),
            None => (QemuMode::OneChannel, 0.0),
        };
        let unfair = match link.rate_bits() {
            _ if tried
                .iter()
                .all(|(_, m)| !m.as_ref().is_some_and(|m| m.converged)) =>
            {
                Some("no QEMU calibration move completed".to_owned())
            }
            Some(rate) if best_wire_gbits < FAIR_LINK_SHARE * rate as f64 / 1e9 => Some(format!(
                "QEMU's best mode ({}) reached {best_wire_gbits:.2} Gbit/s, under {FAIR_LINK_SHARE} × the link's {:.0} Gbit/s: the link is not what limits it",
                best.name(),
                rate as f64 / 1e9
            )),
            _ => None,
        };
        Self {
            link,
            tried,
            best,
            best_wire_gbits,
            probe_gbits,
            unfair,
        }
    }
}

fn wire_gbits(m: &QemuMove) -> f64 {
    let seconds = m.qemu_total_s.unwrap_or(m.total_s);
    if seconds > 0.0 {
        m.link_bytes.unwrap_or(0) as f64 * 8.0 / seconds / 1e9
    } else {
        0.0
    }
}

/// The figures of one side in one case.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SideFigures {
    /// Moves made / asked for.
    pub moves: usize,
    /// Of which completed.
    pub converged: usize,
    /// Total time, s (completed moves): ours the whole job (checks, leases, backups, the
    /// destination's definition, transfer, switch-over, release); QEMU's from `migrate` to
    /// `completed` (its destination already started and configured).
    pub total_s: Option<Stats>,
    /// The memory transfer alone, s: ours connect → destination ready; QEMU's own `total-time`.
    #[serde(default)]
    pub transfer_s: Option<Stats>,
    /// Heartbeat pause, ms.
    pub pause_ms: Option<Stats>,
    /// The side's own downtime figure (QEMU's `downtime`; ours the mover's), ms.
    pub own_downtime_ms: Option<Stats>,
    /// Bytes that crossed the link, GB (both directions, veth counters).
    pub wire_gb: Option<Stats>,
    /// CPU of both ends per move, s.
    pub cpu_s: Option<Stats>,
    /// Highest throttle, percent.
    pub max_throttle_percent: u8,
    /// Dirty rate achieved during the moves, MB/s (worst = lowest).
    pub achieved_dirty_mbps: Option<Stats>,
    /// Whether the guest carried its configured load in every move.
    pub carried_load: bool,
    /// Why the side stopped early.
    pub error: Option<String>,
}

impl SideFigures {
    /// QEMU's moves.
    pub fn of_qemu(moves: &[QemuMove], dirty_mbps: f64, error: Option<String>) -> Self {
        let done: Vec<&QemuMove> = moves.iter().filter(|m| m.converged).collect();
        let pick = |f: &dyn Fn(&QemuMove) -> Option<f64>, hw| {
            stats(done.iter().filter_map(|m| f(m)).collect(), hw)
        };
        Self {
            moves: moves.len(),
            converged: done.len(),
            total_s: pick(&|m| Some(m.total_s), true),
            transfer_s: pick(&|m| m.qemu_total_s, true),
            pause_ms: pick(&|m| m.pause_ms, true),
            own_downtime_ms: pick(&|m| m.qemu_downtime_ms, true),
            wire_gb: pick(&|m| m.link_bytes.map(|b| b as f64 / 1e9), true),
            cpu_s: pick(&|m| Some(m.cpu_s), true),
            max_throttle_percent: moves
                .iter()
                .map(|m| m.max_throttle_percent)
                .max()
                .unwrap_or(0),
            achieved_dirty_mbps: stats(
                moves.iter().filter_map(|m| m.achieved_dirty_mbps).collect(),
                false,
            ),
            carried_load: moves
                .iter()
                .all(|m| carried_load(dirty_mbps, m.achieved_dirty_mbps)),
            error,
        }
    }

    /// Our moves (a `bench live` case).
    pub fn of_ours(result: &CaseResult) -> Self {
        let reps = &result.reps;
        let pick = |f: &dyn Fn(&super::Rep) -> Option<f64>, hw| {
            stats(reps.iter().filter_map(f).collect(), hw)
        };
        Self {
            moves: reps.len() + usize::from(result.error.is_some()),
            converged: reps.len(),
            total_s: pick(&|r| Some(r.total_s), true),
            transfer_s: pick(&|r| Some(r.transfer_s), true),
            pause_ms: pick(&|r| r.suspension_ms, true),
            own_downtime_ms: pick(&|r| Some(r.mover_downtime_ms), true),
            wire_gb: pick(&|r| r.link_bytes.map(|b| b as f64 / 1e9), true),
            cpu_s: pick(&|r| Some(r.cpu_s), true),
            max_throttle_percent: reps
                .iter()
                .map(|r| r.max_throttle_percent)
                .max()
                .unwrap_or(0),
            achieved_dirty_mbps: pick(&|r| r.achieved_dirty_mbps, false),
            carried_load: reps
                .iter()
                .all(|r| carried_load(result.spec.dirty_mbps, r.achieved_dirty_mbps)),
            error: result.error.clone(),
        }
    }
}

/// One case, both sides.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VsRow {
    /// The case.
    pub case: VsCase,
    /// QEMU's mode on this link.
    pub qemu_mode: QemuMode,
    /// QEMU with our downtime limit (50 ms).
    pub qemu: SideFigures,
    /// QEMU with its default downtime limit (300 ms), when measured.
    pub qemu_default: Option<SideFigures>,
    /// Ours.
    pub ours: SideFigures,
}

/// A target and whether the run met it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VsVerdict {
    /// What is asked.
    pub target: String,
    /// What was measured.
    pub measured: String,
    /// Met?
    pub pass: bool,
}

/// Everything the command prints and writes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VsReport {
    /// The commit of the binaries, when known.
    pub commit: Option<String>,
    /// Moves per case and side.
    pub reps: u32,
    /// Every QEMU setting used, as QMP was told.
    pub qemu_settings: Vec<String>,
    /// QEMU's version line.
    pub qemu_version: String,
    /// Per link.
    pub calibrations: Vec<Calibration>,
    /// Per case.
    pub rows: Vec<VsRow>,
    /// The targets.
    pub verdicts: Vec<VsVerdict>,
}

fn median(s: &Option<Stats>) -> Option<f64> {
    s.as_ref().map(|s| s.median)
}

/// "ours ≤ `share` × QEMU's" for one figure (medians); a side that did not complete has no
/// figure, and ours completing where QEMU did not passes.
fn compare(
    target: String,
    (ours, qemu): (Option<f64>, Option<f64>),
    share: f64,
    show: impl Fn(f64) -> String,
    ours_ok: bool,
    note: &str,
) -> VsVerdict {
    match (ours, qemu) {
        (Some(o), Some(q)) => VsVerdict {
            target,
            measured: format!("{} vs {} = {:.2} ×{note}", show(o), show(q), o / q),
            pass: o <= share * q && ours_ok,
        },
        (o, q) => {
            let shown = |v: Option<f64>| v.map_or_else(|| "did not complete".into(), &show);
            VsVerdict {
                target,
                measured: format!("ours {}, QEMU {}{note}", shown(o), shown(q)),
                pass: o.is_some() && q.is_none(),
            }
        }
    }
}

/// The comparison's targets for the measured rows.
pub fn verdicts(rows: &[VsRow], calibrations: &[Calibration]) -> Vec<VsVerdict> {
    let mut out = Vec::new();
    for row in rows {
        let label = row.case.label();
        let unfair = calibrations
            .iter()
            .find(|c| c.link == row.case.link)
            .and_then(|c| c.unfair.clone());
        let note = unfair
            .map(|u| format!(" (not a fair comparison: {u})"))
            .unwrap_or_default();
        let ours_ok = row.ours.error.is_none();
        out.push(compare(
            format!("{label}: downtime ≤ 0.5 × QEMU's"),
            (median(&row.ours.pause_ms), median(&row.qemu.pause_ms)),
            0.5,
            |v| format!("{v:.1} ms"),
            ours_ok,
            &note,
        ));
        let share = if row.case.link.rate_bits().is_some() {
            0.8
        } else {
            0.5
        };
        out.push(compare(
            format!("{label}: total time ≤ {share} × QEMU's"),
            (median(&row.ours.total_s), median(&row.qemu.total_s)),
            share,
            |v| format!("{v:.2} s"),
            ours_ok,
            &note,
        ));
        if row.case.link == Link::Gbit1 && row.case.dirty_mbps >= 200.0 {
            out.push(VsVerdict {
                target: format!("{label}: we converge"),
                measured: format!(
                    "ours {}/{} (throttle ≤ {} %); QEMU {}/{} (throttle ≤ {} %)",
                    row.ours.converged,
                    row.ours.moves,
                    row.ours.max_throttle_percent,
                    row.qemu.converged,
                    row.qemu.moves,
                    row.qemu.max_throttle_percent
                ),
                pass: row.ours.converged == row.ours.moves && row.ours.moves > 0,
            });
        }
    }
    out
}

fn cell(s: &Option<Stats>, digits: usize) -> String {
    s.as_ref()
        .map_or_else(|| "–".into(), |s| format!("{:.d$}", s.median, d = digits))
}

fn ratio(a: &Option<Stats>, b: &Option<Stats>) -> String {
    match (median(a), median(b)) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    }
}

fn dirtied(s: &SideFigures) -> String {
    format!(
        "{}{}",
        s.achieved_dirty_mbps
            .as_ref()
            .map_or_else(|| "–".into(), |d| format!("{:.0}", d.worst)),
        if s.carried_load { "" } else { " ⚠" }
    )
}

fn done(s: &SideFigures) -> String {
    format!("{}/{}", s.converged, s.moves)
}

/// The report as markdown: the table, the calibration, the settings and the verdicts.
pub fn render_markdown(report: &VsReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## lparmover vs QEMU live migration{}\n",
        report
            .commit
            .as_ref()
            .map(|c| format!(" (commit {c})"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "Medians of {} moves per side and case; total = our whole job (checks, leases, backups, definition, transfer, switch-over, release) against QEMU's `migrate` → `completed` with its destination already started; transfer = memory copy and switch-over alone; downtime = guest heartbeat gap measured from outside the guest (QEMU's own `downtime` beside it); \"dirtied\" = the lowest dirty rate the guest achieved during a move (⚠: under {} % of the configured rate).\n",
        report.reps,
        (super::CARRIED_LOAD_SHARE * 100.0) as u32
    );
    let _ = writeln!(
        out,
        "| case | QEMU mode | total s ours | total s QEMU | ratio | transfer s ours / QEMU | downtime ms ours | downtime ms QEMU (own) | ratio | QEMU 300 ms: total s / downtime ms | link GB ours / QEMU | CPU s ours / QEMU | converged ours / QEMU | throttle % ours / QEMU | dirtied MB/s ours / QEMU |"
    );
    let _ = writeln!(out, "|{}", "---|".repeat(15));
    for row in &report.rows {
        let q = &row.qemu;
        let o = &row.ours;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} / {} | {} | {} ({}) | {} | {} | {} / {} | {} / {} | {} / {} | {} / {} | {} / {} |",
            row.case.label(),
            row.qemu_mode.name(),
            cell(&o.total_s, 2),
            cell(&q.total_s, 2),
            ratio(&o.total_s, &q.total_s),
            cell(&o.transfer_s, 2),
            cell(&q.transfer_s, 2),
            cell(&o.pause_ms, 1),
            cell(&q.pause_ms, 1),
            cell(&q.own_downtime_ms, 0),
            ratio(&o.pause_ms, &q.pause_ms),
            row.qemu_default.as_ref().map_or_else(
                || "–".into(),
                |d| format!("{} / {}", cell(&d.total_s, 2), cell(&d.pause_ms, 1))
            ),
            cell(&o.wire_gb, 2),
            cell(&q.wire_gb, 2),
            cell(&o.cpu_s, 1),
            cell(&q.cpu_s, 1),
            done(o),
            done(q),
            o.max_throttle_percent,
            q.max_throttle_percent,
            dirtied(o),
            dirtied(q),
        );
    }
    let _ = writeln!(
        out,
        "\n### QEMU's mode per link (one calibration move each, idle guest)\n"
    );
    for c in &report.calibrations {
        let tried: Vec<String> = c
            .tried
            .iter()
            .map(|(mode, m)| match m {
                Some(m) if m.converged => format!("{} {:.2} s", mode.name(), m.total_s),
                Some(_) => format!("{} did not complete", mode.name()),
                None => format!("{} failed", mode.name()),
            })
            .collect();
        let _ = writeln!(
            out,
            "- {}: {} → **{}** ({:.2} Gbit/s on the wire{}){}",
            c.link.name(),
            tried.join(", "),
            c.best.name(),
            c.best_wire_gbits,
            c.probe_gbits
                .map(|p| format!("; TCP probe {p:.2} Gbit/s"))
                .unwrap_or_default(),
            c.unfair
                .as_ref()
                .map(|u| format!(" — **not a fair comparison**: {u}"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(out, "\n### QEMU settings\n\n{}\n", report.qemu_version);
    for s in &report.qemu_settings {
        let _ = writeln!(out, "- `{s}`");
    }
    let _ = writeln!(out, "\n### Targets\n");
    for v in &report.verdicts {
        let _ = writeln!(
            out,
            "- {} {}: {}",
            if v.pass { "PASS" } else { "FAIL" },
            v.target,
            v.measured
        );
    }
    for row in &report.rows {
        for (who, side) in [("ours", &row.ours), ("QEMU", &row.qemu)] {
            if let Some(e) = &side.error {
                let _ = writeln!(out, "- {}: {who} stopped early: {e}", row.case.label());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qemu_move(total: f64, pause: f64, converged: bool, dirtied: f64) -> QemuMove {
        QemuMove {
            direction: "A → B".into(),
            total_s: total,
            qemu_total_s: Some(total),
            pause_ms: converged.then_some(pause),
            qemu_downtime_ms: Some(pause),
            transferred_bytes: (total * 2e9 / 8.0) as u64,
            link_bytes: Some((total * 0.95e9 / 8.0) as u64),
            rounds: 3,
            max_throttle_percent: 20,
            cpu_s: 2.0,
            converged,
            achieved_dirty_mbps: Some(dirtied),
        }
    }

    #[test]
    fn calibration_picks_the_fastest_converged_mode_and_checks_the_link() {
        let c = Calibration::new(
            Link::Gbit1,
            vec![
                (
                    QemuMode::OneChannel,
                    Some(qemu_move(12.0, 100.0, true, 0.0)),
                ),
                (QemuMode::Multifd(2), Some(qemu_move(9.0, 100.0, true, 0.0))),
                (
                    QemuMode::MultifdZstd(2),
                    Some(qemu_move(5.0, 100.0, false, 0.0)),
                ),
                (QemuMode::Multifd(4), None),
            ],
            Some(0.95),
        );
        assert_eq!(c.best, QemuMode::Multifd(2));
        assert!(
            c.unfair.is_none(),
            "0.95 Gbit/s of 1 is fair: {:?}",
            c.unfair
        );
        let mut slow = qemu_move(20.0, 100.0, true, 0.0);
        slow.link_bytes = slow.link_bytes.map(|b| b / 4);
        let c = Calibration::new(Link::Gbit1, vec![(QemuMode::OneChannel, Some(slow))], None);
        assert!(
            c.unfair
                .as_deref()
                .is_some_and(|u| u.contains("not what limits it"))
        );
    }

    #[test]
    fn verdicts_compare_medians_and_flag_a_starved_guest() {
        let case = VsCase {
            link: Link::Gbit1,
            memory_mib: 4096,
            dirty_mbps: 200.0,
        };
        let qemu = SideFigures::of_qemu(
            &[
                qemu_move(30.0, 200.0, true, 200.0),
                qemu_move(40.0, 300.0, false, 60.0),
            ],
            200.0,
            None,
        );
        assert_eq!((qemu.converged, qemu.moves), (1, 2));
        assert!(
            !qemu.carried_load,
            "60 of 200 MB/s is not carrying the load"
        );
        let ours = SideFigures {
            moves: 2,
            converged: 2,
            total_s: stats(vec![14.0, 16.0], true),
            pause_ms: stats(vec![20.0, 30.0], true),
            carried_load: true,
            ..SideFigures::default()
        };
        let rows = vec![VsRow {
            case,
            qemu_mode: QemuMode::MultifdZstd(2),
            qemu,
            qemu_default: None,
            ours,
        }];
        let v = verdicts(&rows, &[]);
        let get = |t: &str| v.iter().find(|v| v.target.ends_with(t)).expect(t);
        assert!(get("downtime ≤ 0.5 × QEMU's").pass, "25 ms vs 200 ms");
        assert!(get("total time ≤ 0.8 × QEMU's").pass, "15 s vs 30 s");
        assert!(get("we converge").pass);
        let text = render_markdown(&VsReport {
            commit: Some("abc1234".into()),
            reps: 2,
            qemu_settings: vec![],
            qemu_version: "QEMU emulator version 7.2".into(),
            calibrations: vec![],
            rows,
            verdicts: v,
        });
        assert!(
            text.contains(
                "| 1gbit 4 GiB 200 MB/s | multifd 2 + zstd | 15.00 | 30.00 | 0.50 | – / 30.00 |"
            ),
            "{text}"
        );
        assert!(text.contains("60 ⚠"), "{text}");
    }
}
