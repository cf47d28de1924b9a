//! `sluice top`: a terminal dashboard of a running sluice, read from
//! `/api/v1/status` every interval: each source's, route's and
//! destination's events per second, queue depth, persistent queue,
//! backpressure, drops and endpoints down. Plain ANSI through crossterm,
//! so it works over SSH; `q`, Esc or Ctrl-C quit and restore the terminal,
//! the arrows, PgUp/PgDn, Home/End (and j/k) scroll. The layout is `view`.

mod view;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use serde_json::Value;
use tokio::sync::mpsc;
use view::Key;

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
fn read_keys() -> mpsc::UnboundedReceiver<Key> {
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
            if k.kind != KeyEventKind::Press {
                continue;
            }
            let key = match k.code {
                KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => Key::Quit,
                KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Key::Quit,
                KeyCode::Up | KeyCode::Char('k') => Key::Up,
                KeyCode::Down | KeyCode::Char('j') => Key::Down,
                KeyCode::PageUp | KeyCode::Char('b') => Key::PageUp,
                KeyCode::PageDown | KeyCode::Char(' ') => Key::PageDown,
                KeyCode::Home | KeyCode::Char('g') => Key::Home,
                KeyCode::End | KeyCode::Char('G') => Key::End,
                _ => continue,
            };
            if tx.send(key).is_err() {
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
    mut keys: mpsc::UnboundedReceiver<Key>,
) -> anyhow::Result<()> {
    let mut rates = Rates::default();
    rates.update(&first);
    let mut status = first;
    let mut error: Option<String> = None;
    let mut scroll = view::Scroll::default();
    let mut next = tokio::time::Instant::now() + every;
    loop {
        terminal.draw(|f| view::draw(f, &status, &rates, error.as_deref(), &mut scroll))?;
        tokio::select! {
            key = keys.recv() => match key {
                None | Some(Key::Quit) => return Ok(()),
                // Redrawn at once, without waiting for the next answer.
                Some(k) => {
                    scroll.apply(k);
                    continue;
                }
            },
            _ = tokio::time::sleep_until(next) => {}
        }
        next = tokio::time::Instant::now() + every;
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
