//! The commands an operator runs around sluice rather than through it:
//! `graph` (checked by Graphviz's own `dot`, Debian `graphviz`),
//! `completions` (checked by the shells that load them) and `man`.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn sluice(args: &[&str], pki: &common::tls::Pki) -> Output {
    Command::new(common::BIN)
        .args(args)
        // The examples name their TLS files through these.
        .env("SLUICE_CERT", pki.path("server.pem"))
        .env("SLUICE_KEY", pki.path("server.key"))
        .env("SLUICE_CA", pki.path("ca.pem"))
        .output()
        .expect("run sluice")
}

/// `dot -Tplain` of a DOT text: its `node` and `edge` lines.
fn render(dot_text: &str) -> String {
    let out = common::run_with_stdin(Command::new("dot").arg("-Tplain"), dot_text.as_bytes())
        .expect("dot (Debian graphviz; scripts/peers install) runs");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "dot refused the graph: {}\n{dot_text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A topology with every kind of edge: a source pipeline, routes with and
/// without filters, a non-final route, an output router with a rule and a
/// default, a dead letter and the unmatched destination; names and filters
/// with quotes and backslashes in them.
#[test]
fn graph_draws_every_component_and_edge_and_dot_renders_it() {
    let pki = common::tls::Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("sluice.yaml");
    std::fs::write(
        &config,
        r#"
sources:
  web: { type: http, address: 127.0.0.1:0, pipeline: clean }
  logs: { type: tcp, address: 127.0.0.1:0 }
pipelines:
  clean:
    - { type: eval, set: { team: "'core'" } }
routes:
  - { name: errors, filter: 'message == "a \"quoted\" \\ thing"', destination: fanout, final: false }
  - { name: rest, destination: archive }
unmatched: archive
destinations:
  fanout:
    type: output_router
    rules:
      - { name: pager, filter: 'level == "error"', destination: pager }
    default: archive
  pager:
    type: http
    url: http://127.0.0.1:9/page
    dead_letter: archive
    backpressure: persistent_queue
  archive: { type: file, path: ./archive.ndjson }
"#,
    )
    .expect("write config");
    let out = sluice(&["graph", "-c", &config.display().to_string()], &pki);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for edge in [
        r#""source:web" -> "routes";"#,
        r#""source:logs" -> "routes";"#,
        r#""routes" -> "route:errors";"#,
        r#""route:errors" -> "destination:fanout";"#,
        r#""route:rest" -> "destination:archive";"#,
        r#""routes" -> "destination:archive" [label="unmatched", style="dashed"];"#,
        r#""destination:fanout" -> "destination:pager" [label="pager: level == \"error\""];"#,
        r#""destination:fanout" -> "destination:archive" [label="default", style="dashed"];"#,
        r#""destination:pager" -> "destination:archive" [label="dead letter", style="dashed"];"#,
    ] {
        assert!(text.contains(edge), "missing {edge} in:\n{text}");
    }
    assert!(
        text.contains(r#"label="web\nhttp\npipeline: clean""#),
        "{text}"
    );
    assert!(text.contains(r#"pager\nhttp\npersistent_queue"#), "{text}");
    // Graphviz reads it as one graph with exactly these nodes and edges.
    let plain = render(&text);
    let nodes: Vec<&str> = plain
        .lines()
        .filter_map(|l| l.strip_prefix("node "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(nodes.len(), 8, "{plain}");
    for n in [
        "source:web",
        "source:logs",
        "routes",
        "route:errors",
        "route:rest",
        "destination:fanout",
        "destination:pager",
        "destination:archive",
    ] {
        assert!(
            nodes.iter().any(|x| x.trim_matches('"') == n),
            "{n} missing: {nodes:?}"
        );
    }
    assert_eq!(plain.lines().filter(|l| l.starts_with("edge ")).count(), 10);

    // An invalid config is refused as `validate` refuses it.
    std::fs::write(&config, "sources: {}\n").expect("write");
    let out = sluice(&["graph", "-c", &config.display().to_string()], &pki);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("sluice.yaml:"));
}

#[test]
fn graph_of_every_shipped_config_renders() {
    let pki = common::tls::Pki::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let examples = std::fs::read_dir(root.join("config/examples")).expect("examples");
    let mut n = 0;
    for e in examples {
        let p = e.expect("entry").path();
        if p.extension().is_none_or(|x| x != "yaml") {
            continue;
        }
        let out = sluice(&["graph", "-c", &p.display().to_string()], &pki);
        assert!(
            out.status.success(),
            "{}: {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let plain = render(&String::from_utf8_lossy(&out.stdout));
        assert!(
            plain.lines().any(|l| l.starts_with("edge ")),
            "{}",
            p.display()
        );
        n += 1;
    }
    assert!(n >= 10, "only {n} examples");
}

/// Each shell loads its script without a syntax error, and the script knows
/// the subcommands.
#[test]
fn completions_load_in_their_shells() {
    let pki = common::tls::Pki::new();
    for (shell, check) in [("bash", ["bash", "-n"]), ("zsh", ["zsh", "-n"])] {
        let out = sluice(&["completions", shell], &pki);
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout).into_owned();
        for sub in ["validate", "graph", "tap", "queue"] {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
        // zsh may be absent (not a peer sluice needs); bash is always here.
        let Ok(done) =
            common::run_with_stdin(Command::new(check[0]).arg(check[1]), script.as_bytes())
        else {
            assert_ne!(shell, "bash", "bash must be present");
            continue;
        };
        assert!(
            done.status.success(),
            "{shell} -n: {}",
            String::from_utf8_lossy(&done.stderr)
        );
    }
    for shell in ["fish", "elvish", "powershell"] {
        let out = sluice(&["completions", shell], &pki);
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }
    // A closed pipe (`| head`) ends it quietly, without a panic.
    let mut head = Command::new(common::BIN)
        .args(["completions", "bash"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(head.stdout.take());
    let out = head.wait_with_output().expect("ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn man_pages_cover_every_command() {
    let pki = common::tls::Pki::new();
    let page = sluice(&["man"], &pki);
    assert!(page.status.success());
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(page.contains(".TH sluice 1"), "{page}");
    assert!(page.contains("backpressure"), "{page}");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = sluice(
        &["man", "--out-dir", &dir.path().display().to_string()],
        &pki,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "sluice",
        "sluice-run",
        "sluice-validate",
        "sluice-graph",
        "sluice-queue",
    ] {
        let text = std::fs::read_to_string(dir.path().join(format!("{name}.1")))
            .unwrap_or_else(|e| panic!("{name}.1: {e}"));
        assert!(text.contains(&format!(".TH {name} 1")), "{name}: {text}");
    }
    let run = std::fs::read_to_string(dir.path().join("sluice-run.1")).expect("run page");
    assert!(run.contains("watch\\-config"), "{run}");
}

/// Every option and argument of every command says what it is in `--help`
/// (and so in the man pages and completions).
#[test]
fn every_option_has_help_text() {
    let pki = common::tls::Pki::new();
    let top = String::from_utf8_lossy(&sluice(&["-h"], &pki).stdout).into_owned();
    let commands: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() >= 11, "{commands:?}");
    let mut bare = Vec::new();
    let mut pages = vec![commands.iter().map(|c| vec![c.clone()]).collect::<Vec<_>>()];
    pages.push(vec![
        vec!["queue".into(), "inspect".into()],
        vec!["queue".into(), "verify".into()],
    ]);
    for args in pages.into_iter().flatten() {
        let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
        argv.push("-h");
        let out = sluice(&argv, &pki);
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        // An option or argument line is `  -x, --name <V>  text`; a line
        // with nothing after the name has no help.
        for line in help
            .lines()
            .skip_while(|l| !l.starts_with("Options:") && !l.starts_with("Arguments:"))
        {
            let t = line.trim_start();
            if (t.starts_with('-') || t.starts_with('<')) && line.starts_with("  ") {
                let words: Vec<&str> = t.split("  ").filter(|w| !w.trim().is_empty()).collect();
                if words.len() < 2 {
                    bare.push(format!("{}: {}", args.join(" "), t));
                }
            }
        }
    }
    assert!(
        bare.is_empty(),
        "options without help:\n{}",
        bare.join("\n")
    );
}
