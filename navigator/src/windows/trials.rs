//! Rehearsal and Connectivity Test: their predictions and measurements.

use egui::RichText;

use crate::app::Outbox;
use crate::model::{Model, Pending};
use crate::windows::config_viewer::{ERROR_RED, WARNING_AMBER};

/// Draws the Rehearsal window when open.
pub fn show_rehearsal(ctx: &egui::Context, model: &mut Model, _outbox: &mut Outbox) {
    let mut open = model.open.rehearsal;
    egui::Window::new("Rehearsal").open(&mut open).show(ctx, |ui| {
        match &model.rehearsal {
            Pending::Idle => {
                ui.label("Pick a source LPAR and a destination HVM, then press Rehearsal: checks, reservations and a short real transfer, then everything is released.");
            }
            Pending::Running => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Rehearsing: checks, reservations, a short real transfer…");
                });
            }
            Pending::Failed(e) => {
                ui.colored_label(ERROR_RED, format!("Rehearsal failed: {e}"));
            }
            Pending::Done(r) => {
                ui.label(format!("Rehearsal of LPAR {} ({} MB): job {}", r.lpar, r.memory_size / 1_000_000, r.job));
                egui::Grid::new("rehearsal").num_columns(2).show(ui, |ui| {
                    let mut row = |k: &str, v: String| {
                        ui.label(k);
                        ui.label(v);
                        ui.end_row();
                    };
                    row("Sampled", format!("{:.0} MB over the migration path", r.sampled_bytes as f64 / 1e6));
                    row("Throughput", format!("{:.0} MB/s of memory (wire/memory {:.2})", r.throughput_mbps, r.wire_ratio));
                    row("Guest dirty rate", format!("{:.1} MB/s", r.dirty_rate_mbps));
                    row("Predicted total", format!("{:.1} s", r.predicted_total_s));
                    row(
                        "Predicted suspension",
                        format!(
                            "{:.0} ms{}",
                            r.predicted_suspension_ms,
                            if r.converges_unthrottled { "" } else { " (needs auto-converge throttling)" }
                        ),
                    );
                });
                for w in &r.warnings {
                    ui.colored_label(WARNING_AMBER, w);
                }
                ui.label("Everything was released; the LPAR never stopped.");
                ui.label(RichText::new("Rehearsal completed!").strong());
            }
        }
    });
    model.open.rehearsal = open;
}

/// Draws the Connectivity Test window when open.
pub fn show_connectivity(ctx: &egui::Context, model: &mut Model, _outbox: &mut Outbox) {
    let mut open = model.open.connectivity;
    egui::Window::new("Connectivity Test").open(&mut open).show(ctx, |ui| {
        match &model.connectivity {
            Pending::Idle => {
                ui.label("Pick a source and a destination, then press Connectivity Test: handshake, round trip, throughput and MTU over both migration paths.");
            }
            Pending::Running => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Connectivity Test started.");
                });
            }
            Pending::Failed(e) => {
                ui.colored_label(ERROR_RED, "Connectivity Test failed.");
                ui.colored_label(ERROR_RED, e);
            }
            Pending::Done(r) => {
                let p = &r.probe;
                egui::Grid::new("connectivity").num_columns(2).show(ui, |ui| {
                    let mut row = |k: &str, v: String| {
                        ui.label(k);
                        ui.label(v);
                        ui.end_row();
                    };
                    row("Migration path", format!("{} ({}) → {} ({})", p.source_addr.ip(), r.source, p.dest_addr, r.destination));
                    row("Handshake", format!("OK in {:.1} ms (QUIC, mutual TLS, ticket accepted)", p.handshake_ms));
                    row("Round trip", format!("min {:.3} / median {:.3} / max {:.3} ms over {} pings", p.rtt.min_ms, p.rtt.median_ms, p.rtt.max_ms, p.rtt.samples));
                    row("Throughput", format!("{:.0} Mbit/s ({:.1} MiB in {:.0} ms, {} packets resent)", p.throughput_mbps, p.bytes as f64 / f64::from(1u32 << 20), p.transfer_ms, p.lost_packets));
                    row("Path MTU", format!("{} (max UDP payload {} bytes)", p.path_mtu, p.max_udp_payload));
                    row("Job", r.job.clone());
                });
                ui.label(RichText::new(r.result.to_string()).strong());
            }
        }
    });
    model.open.connectivity = open;
}
