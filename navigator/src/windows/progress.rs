//! Migration Progress: the stage list with table 7-3's icons, live plots of throughput, dirty
//! rate and remaining memory, expected suspension, throttle, compression verdict, the stall
//! flag, Cancel and Extend timeout while memory moves, and the final summary.

use std::time::Duration;

use egui::{Color32, RichText};
use egui_plot::{Legend, Line, Plot, PlotPoints};
use lparmover::ops::stall::Headway;

use crate::app::{Icons, Outbox};
use crate::command::Command;
use crate::model::{Model, MoveOutcome};
use crate::windows::config_viewer::{ERROR_RED, WARNING_AMBER};

/// How much one Extend timeout press adds.
pub const EXTEND_STEP: Duration = Duration::from_secs(300);

/// Draws the window when open.
pub fn show(
    ctx: &egui::Context,
    model: &mut Model,
    icons: &Icons,
    now: Duration,
    outbox: &mut Outbox,
) {
    let Some(m) = &model.current_move else {
        return;
    };
    let mut open = model.open.progress;
    egui::Window::new("Migration Progress")
        .open(&mut open)
        .default_pos([300.0, 60.0])
        .default_size([760.0, 640.0])
        .vscroll(true)
        .show(ctx, |ui| {
            ui.label(format!(
                "{} {} → {} ({}){}",
                m.lpar,
                m.source,
                m.destination,
                if m.live { "Concurrent Maintenance" } else { "Shutdown" },
                m.job.as_ref().map_or(String::new(), |j| format!(", job {j}"))
            ));
            for note in &m.notes {
                ui.label(RichText::new(note).weak());
            }
            ui.separator();
            // The result first: an operator sees it without scrolling.
            match &m.outcome {
                None => {}
                Some(MoveOutcome::Live(r)) => {
                    ui.heading("Migration completed!");
                    let s = &r.summary;
                    ui.label(format!(
                        "LPAR {} moved {} → {} (LPAR {} there) in {:.2} s; suspension {}; {} rounds; {:.0} MB of memory as {:.0} MB on the wire; max throttle {} %",
                        r.lpar,
                        r.source,
                        r.destination,
                        r.dest_number,
                        r.total.as_secs_f64(),
                        r.suspension.map_or("not measured".to_owned(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3)),
                        s.rounds,
                        s.memory_bytes_sent as f64 / 1e6,
                        s.wire_bytes as f64 / 1e6,
                        s.max_throttle_percent
                    ));
                    for w in &r.warnings {
                        ui.colored_label(WARNING_AMBER, w);
                    }
                }
                Some(MoveOutcome::Shutdown(r)) => {
                    ui.heading("Migration completed!");
                    ui.label(format!(
                        "LPAR {} moved {} → {} (LPAR {}) in Shutdown mode in {:.1} s{}",
                        r.lpar,
                        r.source,
                        r.destination,
                        r.dest_number,
                        r.total_ms as f64 / 1000.0,
                        if r.activated { "; activated on the destination" } else { "" }
                    ));
                }
                Some(MoveOutcome::Failed(e)) => {
                    ui.label(RichText::new("Migration failed").color(ERROR_RED).heading());
                    ui.colored_label(ERROR_RED, e);
                    let color = Color32::GRAY;
                    ui.colored_label(color, "Recovery settled what it could; see Recovery for anything left.");
                }
            }

            if m.running() {
                ui.horizontal(|ui| {
                    let moving = m.memory_moving();
                    if ui
                        .add_enabled(moving && !m.cancel_requested, egui::Button::new("Cancel"))
                        .on_disabled_hover_text("Cancel is possible while memory is being transferred.")
                        .clicked()
                    {
                        outbox.push(Command::Cancel);
                    }
                    if ui
                        .add_enabled(moving, egui::Button::new("Extend timeout"))
                        .on_hover_text(format!("Adds {} s to the move's timeout.", EXTEND_STEP.as_secs()))
                        .clicked()
                    {
                        outbox.push(Command::Extend { by: EXTEND_STEP });
                    }
                    ui.spinner();
                });
            }

            for (stage, status) in &m.stages {
                ui.horizontal(|ui| {
                    ui.add(icons.image(status.icon(), 16.0))
                        .on_hover_text(status.icon().hover());
                    ui.label(stage);
                });
            }
            match m.headway(now) {
                Headway::Stalled(d) => {
                    ui.label(
                        RichText::new(format!(
                            "Stalled: nothing has moved for {:.0} s",
                            d.as_secs_f64()
                        ))
                        .color(ERROR_RED)
                        .strong(),
                    );
                }
                Headway::NotConverging(d) => {
                    ui.colored_label(
                        WARNING_AMBER,
                        format!(
                            "Not converging: the remaining memory has not shrunk for {:.0} s",
                            d.as_secs_f64()
                        ),
                    );
                }
                Headway::Moving => {}
            }
            if let Some(p) = &m.latest {
                egui::Grid::new("progress-figures").num_columns(2).show(ui, |ui| {
                    let mut row = |k: &str, v: String| {
                        ui.label(k);
                        ui.label(v);
                        ui.end_row();
                    };
                    row("Round", p.round.to_string());
                    row(
                        "Memory",
                        format!(
                            "{:.0} MB; {:.0} MB sent over all rounds, {:.0} MB remaining",
                            p.memory_size as f64 / 1e6,
                            p.memory_bytes_sent as f64 / 1e6,
                            p.bytes_remaining as f64 / 1e6
                        ),
                    );
                    row("Throughput", format!("{:.0} MB/s of memory", p.memory_throughput_mbps));
                    row("Dirty rate", format!("{:.1} MB/s", p.dirty_rate_mbps));
                    row(
                        "Expected suspension",
                        p.expected_suspension_ms
                            .map_or("—".to_owned(), |ms| format!("{ms:.0} ms")),
                    );
                    row("Throttle", format!("{} %", p.throttle_percent));
                    row(
                        "Compression",
                        format!("{:?} (ratio {:.2}): {}", p.compression.encoding, p.compression_ratio, p.compression.reason),
                    );
                    row("Times out in", format!("{} s", p.timeout_in_s));
                });
                if let Some(note) = &p.note {
                    ui.label(RichText::new(note).italics());
                }
            }
            if !m.samples.is_empty() {
                let series = |f: fn(&crate::model::Sample) -> f64| -> PlotPoints<'static> {
                    m.samples.iter().map(|s| [s.t_s, f(s)]).collect()
                };
                Plot::new("progress-plot")
                    .height(180.0)
                    .legend(Legend::default())
                    .x_axis_label("s")
                    .show(ui, |plot| {
                        plot.line(Line::new("throughput MB/s", series(|s| s.throughput_mbps)));
                        plot.line(Line::new("dirty rate MB/s", series(|s| s.dirty_mbps)));
                        plot.line(Line::new("remaining MB", series(|s| s.remaining_mb)));
                    });
            }
        });
    model.open.progress = open;
}
