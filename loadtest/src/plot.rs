//! PNG plots of a scenario: events/s, queue depth and RSS over time, with
//! the fault windows shaded.

use std::path::Path;

use anyhow::{Context, anyhow};
use plotters::prelude::*;

use crate::scenario::Report;

/// A panel: its title and its lines (name, colour, points).
type Panel<'a> = (&'a str, Vec<(&'a str, RGBColor, Vec<(f64, f64)>)>);

const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Register a system font for labels, once. Without one the plots are
/// still drawn, unlabelled.
fn fonts() -> bool {
    static LOADED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LOADED.get_or_init(|| {
        for p in FONT_PATHS {
            if let Ok(bytes) = std::fs::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

pub fn draw(dir: &Path, r: &Report) -> anyhow::Result<()> {
    if !r.throughput.is_empty() {
        return bars(dir, r);
    }
    if r.timeline.is_empty() {
        return Ok(());
    }
    let path = dir.join(format!("{}.png", r.name));
    let labels = fonts();
    let root = BitMapBackend::new(&path, (1000, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let root = if labels {
        root.titled(&r.name, ("sans-serif", 24))
            .map_err(|e| anyhow!("{e}"))?
    } else {
        root
    };
    let panels = root.split_evenly((3, 1));
    let t_max = r.timeline.last().map(|s| s.t).unwrap_or(1.0).max(1.0);
    let series: [Panel; 3] = [
        (
            "events/s",
            vec![
                (
                    "sent",
                    BLUE,
                    r.timeline.iter().map(|s| (s.t, s.sent_per_s)).collect(),
                ),
                (
                    "received",
                    GREEN,
                    r.timeline.iter().map(|s| (s.t, s.received_per_s)).collect(),
                ),
            ],
        ),
        (
            "queued events",
            vec![
                (
                    "lane (memory)",
                    MAGENTA,
                    r.timeline.iter().map(|s| (s.t, s.lane)).collect(),
                ),
                (
                    "persistent queue",
                    RED,
                    r.timeline.iter().map(|s| (s.t, s.disk)).collect(),
                ),
                (
                    "dropped (total)",
                    BLACK,
                    r.timeline.iter().map(|s| (s.t, s.dropped)).collect(),
                ),
            ],
        ),
        (
            "sluice RSS MB",
            vec![(
                "RSS",
                CYAN,
                r.timeline.iter().map(|s| (s.t, s.rss_mb)).collect(),
            )],
        ),
    ];
    for (area, (title, lines)) in panels.iter().zip(series.iter()) {
        let y_max = lines
            .iter()
            .flat_map(|(_, _, pts)| pts.iter().map(|p| p.1))
            .fold(0.0, f64::max)
            .max(1.0)
            * 1.1;
        let mut b = ChartBuilder::on(area);
        b.margin(10);
        if labels {
            b.caption(*title, ("sans-serif", 16))
                .x_label_area_size(30)
                .y_label_area_size(70);
        }
        let mut chart = b
            .build_cartesian_2d(0.0..t_max, 0.0..y_max)
            .map_err(|e| anyhow!("{e}"))?;
        if labels {
            chart
                .configure_mesh()
                .x_desc("seconds")
                .light_line_style(WHITE)
                .draw()
                .map_err(|e| anyhow!("{e}"))?;
        }
        // Faults first, so the lines draw over them.
        for m in &r.faults {
            let (from, to) = (m.window.from_s.min(t_max), m.window.to_s.min(t_max));
            let color = if m.receiver == "sluice" { RED } else { YELLOW };
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(from, 0.0), (to, y_max)],
                    color.mix(0.2).filled(),
                )))
                .map_err(|e| anyhow!("{e}"))?;
        }
        for (name, color, pts) in lines {
            let s = chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .map_err(|e| anyhow!("{e}"))?;
            if labels {
                s.label(*name).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            }
        }
        if labels {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| anyhow!("{e}"))?;
        }
    }
    root.present()
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("write {}", path.display()))
}

/// The throughput scenario: events/s per target, as horizontal bars
/// labelled with the ratio to the relay.
fn bars(dir: &Path, r: &Report) -> anyhow::Result<()> {
    let path = dir.join(format!("{}.png", r.name));
    let labels = fonts();
    let rows = &r.throughput;
    let root = BitMapBackend::new(&path, (1000, 120 + 60 * rows.len() as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let x_max = rows
        .iter()
        .map(|t| t.events_per_s)
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.25;
    let mut b = ChartBuilder::on(&root);
    b.margin(15);
    if labels {
        b.caption("events/s (× relay)", ("sans-serif", 22))
            .x_label_area_size(30)
            .y_label_area_size(10);
    }
    let mut chart = b
        .build_cartesian_2d(0.0..x_max, 0.0..rows.len() as f64)
        .map_err(|e| anyhow!("{e}"))?;
    if labels {
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
    }
    for (i, t) in rows.iter().enumerate() {
        let y = (rows.len() - 1 - i) as f64;
        let color = match t.target.as_str() {
            "relay" => RGBColor(150, 150, 150),
            "sluice" => RGBColor(120, 160, 230),
            _ => RGBColor(230, 120, 30),
        };
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, y + 0.15), (t.events_per_s, y + 0.85)],
                color.filled(),
            )))
            .map_err(|e| anyhow!("{e}"))?;
        if labels {
            let text = format!(
                "{} {}: {:.0} ({:.2}×)",
                t.target, t.path, t.events_per_s, t.ratio_to_relay
            );
            chart
                .draw_series(std::iter::once(Text::new(
                    text,
                    (x_max * 0.01, y + 0.5),
                    ("sans-serif", 16).into_font().color(&BLACK),
                )))
                .map_err(|e| anyhow!("{e}"))?;
        }
    }
    root.present()
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("write {}", path.display()))
}
