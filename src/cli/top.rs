//! `sluice top`: a terminal dashboard of a running sluice, read from
//! `/api/v1/status` every interval: each source's, route's and
//! destination's events per second, queue depth, persistent queue,
//! backpressure, drops and endpoints down. Plain ANSI through crossterm,
//! so it works over SSH; `q`, Esc or Ctrl-C quit and restore the terminal.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table};
use serde_json::Value;
use tokio::sync::mpsc;

use super::ApiClient;

async fn fetch(client: &ApiClient) -> anyhow::Result<Value> {
    let resp = client
        .get("/api/v1/status")
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .with_context(|| format!("cannot reach the sluice API at {}", client.base))?;
    let body = resp.error_for_status()?.bytes().await?;
    serde_json::from_slice(&body).context("the status answer is not JSON")
}

pub async fn run(client: &ApiClient, every: Duration) -> anyhow::Result<()> {
    // Fail before taking over the terminal if the API is not there.
    let first = fetch(client).await?;
    let keys = read_keys();
    let mut terminal = ratatui::init();
    let result = dashboard(&mut terminal, client, first, every, keys).await;
    ratatui::restore();
    result
}

/// A reduction ratio as a percentage (`99.7%`); `-` before any event.
fn percent(v: &Value) -> String {
    match v.as_f64() {
        Some(r) => format!("{:.1}%", r * 100.0),
        None => "-".into(),
    }
}

/// Keys from a thread that polls the terminal (crossterm reads block).
fn read_keys() -> mpsc::UnboundedReceiver<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        loop {
            if tx.is_closed() {
                return;
            }
            match event::poll(Duration::from_millis(100)) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(_) => return,
            }
            let Ok(Event::Key(k)) = event::read() else {
                continue;
            };
            let quit = k.kind == KeyEventKind::Press
                && (matches!(
                    k.code,
                    KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc
                ) || (k.code == KeyCode::Char('c')
                    && k.modifiers.contains(KeyModifiers::CONTROL)));
            if quit && tx.send(()).is_err() {
                return;
            }
        }
    });
    rx
}

async fn dashboard(
    terminal: &mut ratatui::DefaultTerminal,
    client: &ApiClient,
    first: Value,
    every: Duration,
    mut quit: mpsc::UnboundedReceiver<()>,
) -> anyhow::Result<()> {
    let mut rates = Rates::default();
    rates.update(&first);
    let mut status = first;
    let mut error: Option<String> = None;
    loop {
        terminal.draw(|f| draw(f, &status, &rates, error.as_deref()))?;
        tokio::select! {
            _ = quit.recv() => return Ok(()),
            _ = tokio::time::sleep(every) => {}
        }
        match fetch(client).await {
            Ok(s) => {
                rates.update(&s);
                status = s;
                error = None;
            }
            Err(e) => error = Some(format!("{e:#}")),
        }
    }
}

/// Per-second rates from two snapshots of the counters.
#[derive(Default)]
struct Rates {
    last: HashMap<String, (f64, Instant)>,
    rate: HashMap<String, f64>,
}

impl Rates {
    fn update(&mut self, s: &Value) {
        let now = Instant::now();
        let mut see = |key: String, v: &Value| {
            let v = v.as_f64().unwrap_or(0.0);
            if let Some((prev, at)) = self.last.get(&key) {
                let dt = now.duration_since(*at).as_secs_f64();
                if dt > 0.0 {
                    self.rate.insert(key.clone(), ((v - prev) / dt).max(0.0));
                }
            }
            self.last.insert(key, (v, now));
        };
        for x in list(s, "sources") {
            see(
                format!("s/{}", x["id"].as_str().unwrap_or("")),
                &x["events"],
            );
        }
        for x in list(s, "routes") {
            see(
                format!("r/{}", x["name"].as_str().unwrap_or("")),
                &x["events"],
            );
        }
        for x in list(s, "pipelines") {
            see(
                format!("p/{}", x["name"].as_str().unwrap_or("")),
                &x["received"],
            );
        }
        for x in list(s, "destinations")
            .iter()
            .chain(list(s, "output_routers"))
        {
            let id = x["id"].as_str().unwrap_or("");
            see(format!("in/{id}"), &x["events"]);
            see(format!("out/{id}"), &x["sent"]);
            see(format!("drop/{id}"), &Value::from(total(&x["dropped"])));
        }
    }

    fn get(&self, key: &str) -> String {
        self.rate.get(key).map_or("-".into(), |r| human(*r))
    }
}

fn list<'a>(s: &'a Value, key: &str) -> &'a [Value] {
    s[key].as_array().map_or(&[], Vec::as_slice)
}

/// The sum of a by-reason map (`dropped`, `rejected`).
fn total(reasons: &Value) -> u64 {
    reasons
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
}

fn human(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

fn draw(f: &mut ratatui::Frame, s: &Value, rates: &Rates, error: Option<&str>) {
    let sources = list(s, "sources");
    let routes = list(s, "routes");
    let dests = list(s, "destinations");
    let routers = list(s, "output_routers");
    let pipelines = list(s, "pipelines");
    // No panel at all for a config without pipelines.
    let pipes_height = if pipelines.is_empty() {
        0
    } else {
        pipelines.len() as u16 + 3
    };
    let [head, src, rts, pipes, dst, foot] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(sources.len() as u16 + 3),
        Constraint::Length(routes.len() as u16 + 3),
        Constraint::Length(pipes_height),
        Constraint::Min(dests.len().max(1) as u16 + routers.len() as u16 + 3),
        Constraint::Length(1),
    ])
    .areas(f.area());

    let reload = &s["config"]["last_reload"];
    let reload = if reload.is_null() {
        String::new()
    } else {
        format!(
            "   last reload: {}",
            reload["result"].as_str().unwrap_or("?")
        )
    };
    let header = format!(
        "sluice {}   {}   up {}   config v{} ({}){reload}",
        s["version"].as_str().unwrap_or("?"),
        s["state"].as_str().unwrap_or("?"),
        humantime::format_duration(Duration::from_secs(
            s["uptime_seconds"].as_f64().unwrap_or(0.0) as u64
        )),
        s["config"]["version"],
        s["config"]["file"].as_str().unwrap_or("?"),
    );
    let mut head_lines = vec![Line::styled(
        header,
        Style::new().add_modifier(Modifier::BOLD),
    )];
    if let Some(e) = error {
        head_lines.push(Line::styled(
            format!("API unreachable: {e} (showing the last answer)"),
            Style::new().fg(Color::Red),
        ));
    }
    f.render_widget(Paragraph::new(head_lines), head);

    let bold = Style::new().add_modifier(Modifier::BOLD);
    let rows = sources.iter().map(|x| {
        let id = x["id"].as_str().unwrap_or("");
        let rejected = total(&x["rejected"]);
        Row::new(vec![
            id.to_string(),
            x["type"].as_str().unwrap_or("").to_string(),
            rates.get(&format!("s/{id}")),
            x["events"].to_string(),
            rejected.to_string(),
            x["state"].as_str().unwrap_or("").to_string(),
        ])
    });
    f.render_widget(
        Table::new(rows, [16, 10, 10, 14, 10, 10].map(Constraint::Length))
            .header(
                Row::new(["SOURCE", "TYPE", "EVENTS/S", "EVENTS", "REJECTED", "STATE"]).style(bold),
            )
            .block(Block::bordered().title(" sources ")),
        src,
    );

    let rows = routes.iter().map(|x| {
        let name = x["name"].as_str().unwrap_or("");
        Row::new(vec![
            name.to_string(),
            x["destination"].as_str().unwrap_or("").to_string(),
            rates.get(&format!("r/{name}")),
            x["events"].to_string(),
            x["filter"].as_str().unwrap_or("").to_string(),
        ])
    });
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(16),
                Constraint::Length(16),
                Constraint::Length(10),
                Constraint::Length(14),
                Constraint::Min(10),
            ],
        )
        .header(Row::new(["ROUTE", "DESTINATION", "EVENTS/S", "EVENTS", "FILTER"]).style(bold))
        .block(Block::bordered().title(" routes ")),
        rts,
    );

    if !pipelines.is_empty() {
        let rows = pipelines.iter().map(|x| {
            let name = x["name"].as_str().unwrap_or("");
            let errors: u64 = list(x, "functions")
                .iter()
                .filter_map(|f| f["errors"].as_u64())
                .sum();
            // Each function's reduction, in order: where the volume goes.
            let by_function: Vec<String> = list(x, "functions")
                .iter()
                .filter_map(|f| {
                    Some(format!(
                        "{} {}",
                        f["name"].as_str()?,
                        percent(&f["reduction"])
                    ))
                })
                .collect();
            Row::new(vec![
                name.to_string(),
                rates.get(&format!("p/{name}")),
                x["received"].to_string(),
                x["sent"].to_string(),
                x["dropped"].to_string(),
                x["emitted"].to_string(),
                errors.to_string(),
                percent(&x["reduction"]),
                by_function.join("  "),
            ])
        });
        let widths = [16, 10, 14, 14, 12, 12, 10, 10].map(Constraint::Length);
        f.render_widget(
            Table::new(rows, widths.into_iter().chain([Constraint::Min(10)]))
                .header(
                    Row::new([
                        "PIPELINE",
                        "EVENTS/S",
                        "RECEIVED",
                        "SENT",
                        "DROPPED",
                        "EMITTED",
                        "ERRORS",
                        "REDUCED",
                        "BY FUNCTION",
                    ])
                    .style(bold),
                )
                .block(Block::bordered().title(" pipelines ")),
            pipes,
        );
    }

    let mut rows: Vec<Row> = dests
        .iter()
        .map(|x| {
            let id = x["id"].as_str().unwrap_or("");
            let state = x["state"].as_str().unwrap_or("");
            let pq = &x["persistent_queue"];
            let disk = if pq.is_null() {
                "-".to_string()
            } else {
                format!(
                    "{}{}",
                    pq["events"],
                    if pq["engaged"] == true {
                        " (engaged)"
                    } else {
                        ""
                    }
                )
            };
            let down: Vec<&str> = x["endpoints"]
                .as_array()
                .map(|e| {
                    e.iter()
                        .filter(|e| e["up"] == false)
                        .filter_map(|e| e["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let drops: Vec<String> = x["dropped"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(_, v)| v.as_u64().unwrap_or(0) > 0)
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect()
                })
                .unwrap_or_default();
            let style = match state {
                "ok" => Style::new(),
                "backpressure" => Style::new().fg(Color::Yellow),
                _ => Style::new().fg(Color::Red),
            };
            Row::new(vec![
                id.to_string(),
                x["type"].as_str().unwrap_or("").to_string(),
                x["policy"].as_str().unwrap_or("").to_string(),
                state.to_string(),
                rates.get(&format!("in/{id}")),
                rates.get(&format!("out/{id}")),
                format!("{}/{}", x["queued"], x["capacity"]),
                disk,
                if drops.is_empty() {
                    "0".into()
                } else {
                    drops.join(" ")
                },
                if down.is_empty() {
                    "-".into()
                } else {
                    down.join(",")
                },
            ])
            .style(style)
        })
        .collect();
    rows.extend(routers.iter().map(|x| {
        let id = x["id"].as_str().unwrap_or("");
        Row::new(vec![
            id.to_string(),
            "router".into(),
            "-".into(),
            "ok".into(),
            rates.get(&format!("in/{id}")),
            rates.get(&format!("out/{id}")),
            "-".into(),
            "-".into(),
            total(&x["dropped"]).to_string(),
            "-".into(),
        ])
    }));
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(16),
                Constraint::Length(9),
                Constraint::Length(14),
                Constraint::Length(13),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(13),
                Constraint::Length(14),
                Constraint::Min(10),
                Constraint::Length(20),
            ],
        )
        .header(
            Row::new([
                "DESTINATION",
                "TYPE",
                "POLICY",
                "STATE",
                "IN/S",
                "OUT/S",
                "QUEUE",
                "DISK",
                "DROPPED",
                "DOWN",
            ])
            .style(bold),
        )
        .block(Block::bordered().title(" destinations ")),
        dst,
    );
    f.render_widget(
        Paragraph::new("q quit").style(Style::new().add_modifier(Modifier::DIM)),
        foot,
    );
}
