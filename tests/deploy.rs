//! Deploying sluice as users do: the systemd unit (checked by systemd's own
//! `systemd-analyze`), the readiness protocol it relies on, the Kubernetes
//! manifests (rendered by `kubectl kustomize`, validated against the
//! Kubernetes API schemas offline by PyPI's `kubernetes-validate`, their
//! sluice configuration by `sluice validate`), and the release script.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::Sluice;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command, what: &str) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what} cannot run ({e}): scripts/peers install"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The unit as shipped, pointed at the binary under test: `systemd-analyze
/// verify` accepts it (directives, the commands it names), and its offline
/// security review scores it "OK" (exposure at most 3.0 of 10).
#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = std::fs::read_to_string(root().join("deploy/systemd/sluice.service"))
        .expect("deploy/systemd/sluice.service");
    assert!(unit.contains("Type=notify") && unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    let path = dir.path().join("sluice.service");
    std::fs::write(&path, unit.replace("/usr/bin/sluice", common::BIN)).expect("write");
    let (ok, out) = run(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path),
        "systemd-analyze",
    );
    let about_sluice: Vec<&str> = out.lines().filter(|l| l.contains("sluice")).collect();
    assert!(ok && about_sluice.is_empty(), "{out}");
    let (ok, out) = run(
        Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--threshold=30"])
            .arg(&path),
        "systemd-analyze",
    );
    assert!(ok, "exposure above 3.0:\n{out}");
}

/// What systemd hears on `$NOTIFY_SOCKET`.
struct Manager {
    socket: UnixDatagram,
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Manager {
    fn new() -> Manager {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        Manager {
            socket,
            _dir: dir,
            path,
        }
    }

    fn next(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self
            .socket
            .recv(&mut buf)
            .expect("a notification within 60 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

/// `Type=notify`: READY=1 only once sluice runs (its listeners bound),
/// RELOADING=1 then READY=1 around a reload, STOPPING=1 when it drains.
#[test]
fn the_service_manager_hears_ready_reloading_and_stopping() {
    let manager = Manager::new();
    let path = manager.path.clone();
    let mut s = Sluice::start_with(
        r#"
api: { address: 127.0.0.1:0 }
sources:
  in: { type: tcp, address: 127.0.0.1:0 }
routes:
  - { name: all, destination: out }
destinations:
  out: { type: blackhole }
"#,
        move |cmd| {
            cmd.env("NOTIFY_SOCKET", &path);
        },
    );
    let ready = manager.next();
    assert!(ready.starts_with("READY=1"), "{ready}");
    // Ready means ready: the source already accepts.
    std::net::TcpStream::connect(s.source("in")).expect("the source listens once READY=1");
    common::signal(s.pid(), libc::SIGHUP);
    let reloading = manager.next();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    let again = manager.next();
    assert!(
        again.starts_with("READY=1") && again.contains("last reload: success"),
        "{again}"
    );
    s.terminate();
    assert!(manager.next().starts_with("STOPPING=1"));
    assert!(s.wait_exit(Duration::from_secs(30)).success());
}

/// `scripts/peers start NAME DIR ARGS`: stdout, or the test fails naming it.
fn peer(name: &str, args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, out) = run(
        Command::new(common::real_peer::PEERS)
            .args(["start", name])
            .arg(dir.path())
            .args(args),
        name,
    );
    assert!(ok, "{name} {args:?} failed (scripts/peers install):\n{out}");
    out
}

/// The manifests as `kubectl apply -k` would send them.
fn render(overlay: &str) -> (String, Vec<serde_json::Value>) {
    let dir = root().join("deploy/kubernetes").join(overlay);
    let text = peer("kubectl", &["kustomize", &dir.display().to_string()]);
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&text).expect("kustomize output is YAML");
    (text, docs)
}

fn of_kind<'a>(docs: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn matches(selector: &serde_json::Value, labels: &serde_json::Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| &labels[k] == v))
}

/// Both entry points render; every object passes the Kubernetes 1.30 API
/// schemas strictly (unknown fields refused); and the pieces fit: each
/// Service and ServiceMonitor finds its pods and named ports, probes and
/// the HPA and PDB point at what exists, each sluice configuration passes
/// `sluice validate --deny-warnings` and listens where its pod's ports and
/// probes say, and persistent queues sit on a volume.
#[test]
fn the_kubernetes_manifests_render_validate_and_fit_together() {
    let (all_text, all) = render("all");
    let (po_text, po) = render("prometheus-operator");
    for kind in [
        "Namespace",
        "DaemonSet",
        "StatefulSet",
        "Service",
        "ConfigMap",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    ] {
        assert!(!of_kind(&all, kind).is_empty(), "no {kind}");
    }
    assert_eq!(of_kind(&po, "ServiceMonitor").len(), 2);
    assert_eq!(po.len(), all.len() + 2);

    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in [("all.yaml", &all_text), ("po.yaml", &po_text)] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        let out = peer(
            "kubernetes-validate",
            &["--strict", "-k", "1.30.0", &path.display().to_string()],
        );
        let problems: Vec<&str> = out
            .lines()
            .filter(|l| !l.contains(" passed for resource "))
            // No schema ships for the Prometheus Operator's CRD; it is
            // checked against the Services below instead.
            .filter(|l| !l.contains("Couldn't find schema for kind ServiceMonitor"))
            .collect();
        assert!(problems.is_empty(), "{name}:\n{out}");
    }

    let workloads: Vec<&serde_json::Value> = of_kind(&all, "DaemonSet")
        .into_iter()
        .chain(of_kind(&all, "StatefulSet"))
        .collect();
    let config_maps = of_kind(&all, "ConfigMap");
    for w in &workloads {
        let name = w["metadata"]["name"].as_str().unwrap_or("?");
        let pod = &w["spec"]["template"];
        assert!(matches(
            &w["spec"]["selector"]["matchLabels"],
            &pod["metadata"]["labels"]
        ));
        let c = &pod["spec"]["containers"][0];
        let ports: Vec<(&str, u64)> = c["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap_or(""),
                    p["containerPort"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        let port = |n: &str| ports.iter().find(|(p, _)| *p == n).map(|(_, v)| *v);
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health", "{name}");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready", "{name}");
        for probe in ["livenessProbe", "readinessProbe"] {
            let p = c[probe]["httpGet"]["port"].as_str().unwrap_or("");
            assert!(port(p).is_some(), "{name}: {probe} on unknown port {p}");
        }
        let security = &c["securityContext"];
        assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
        let args: Vec<&str> = c["args"]
            .as_array()
            .expect("args")
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        assert!(args.contains(&"--watch-config"), "{name}: {args:?}");
        let config_path = args
            .iter()
            .position(|a| *a == "--config")
            .and_then(|i| args.get(i + 1))
            .expect("--config");
        // The config file comes from a ConfigMap mounted where --config looks.
        let mounts = c["volumeMounts"].as_array().expect("mounts");
        let mount_of = |path: &str| {
            mounts
                .iter()
                .filter(|m| path.starts_with(m["mountPath"].as_str().unwrap_or("\0")))
                .max_by_key(|m| m["mountPath"].as_str().map_or(0, str::len))
                .and_then(|m| m["name"].as_str())
        };
        let volume = mount_of(config_path).expect("a volume holds the config");
        let cm_name = pod["spec"]["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .find(|v| v["name"] == volume)
            .and_then(|v| v["configMap"]["name"].as_str())
            .expect("the config volume is a ConfigMap");
        let cm = config_maps
            .iter()
            .find(|m| m["metadata"]["name"] == cm_name)
            .expect("the ConfigMap exists");
        let file = Path::new(config_path)
            .file_name()
            .and_then(|f| f.to_str())
            .expect("file");
        let yaml = cm["data"][file]
            .as_str()
            .expect("the config is in the ConfigMap");
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, yaml).expect("write");
        let (ok, out) = run(
            Command::new(common::BIN)
                .args(["validate", "--deny-warnings", "--config"])
                .arg(&path),
            "sluice",
        );
        assert!(ok, "{name}'s configuration: {out}");
        let config: serde_json::Value = serde_saphyr::from_str(yaml).expect("yaml");
        let api_port = config["api"]["address"]
            .as_str()
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, p)| p.parse::<u64>().ok());
        assert_eq!(
            api_port,
            port("api"),
            "{name}: the API listens on the probed port"
        );
        assert!(
            config["api"]["address"]
                .as_str()
                .is_some_and(|a| a.starts_with("0.0.0.0:")),
            "{name}: probes come from outside the pod"
        );
        // Checkpoints and queues on a volume, not the read-only root.
        let data_dir = config["data_dir"].as_str().expect("data_dir");
        assert!(
            mount_of(data_dir).is_some(),
            "{name}: {data_dir} is not on a volume"
        );
        for source in config["sources"].as_object().expect("sources").values() {
            for key in ["address", "grpc_address", "http_address"] {
                if let Some(p) = source[key]
                    .as_str()
                    .and_then(|a| a.rsplit_once(':'))
                    .and_then(|(_, p)| p.parse::<u64>().ok())
                {
                    assert!(
                        ports.iter().any(|(_, v)| *v == p),
                        "{name}: port {p} is not declared"
                    );
                }
            }
        }
    }

    let pods_of = |selector: &serde_json::Value| -> Vec<&serde_json::Value> {
        workloads
            .iter()
            .map(|w| &w["spec"]["template"])
            .filter(|p| matches(selector, &p["metadata"]["labels"]))
            .collect()
    };
    let services = of_kind(&all, "Service");
    for s in &services {
        let pods = pods_of(&s["spec"]["selector"]);
        assert_eq!(
            pods.len(),
            1,
            "{}: selects {} workloads",
            s["metadata"]["name"],
            pods.len()
        );
        let declared = pods[0]["spec"]["containers"][0]["ports"]
            .as_array()
            .expect("ports");
        for p in s["spec"]["ports"].as_array().expect("ports") {
            assert!(
                declared.iter().any(|d| d["name"] == p["targetPort"]),
                "{}: targetPort {} not in the pod",
                s["metadata"]["name"],
                p["targetPort"]
            );
        }
    }
    for m in of_kind(&po, "ServiceMonitor") {
        let selected: Vec<&&serde_json::Value> = services
            .iter()
            .filter(|s| {
                matches(
                    &m["spec"]["selector"]["matchLabels"],
                    &s["metadata"]["labels"],
                )
            })
            .collect();
        assert_eq!(selected.len(), 1, "{}", m["metadata"]["name"]);
        let port = &m["spec"]["endpoints"][0]["port"];
        assert!(
            selected[0]["spec"]["ports"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| &p["name"] == port)),
            "{}: no port {port}",
            m["metadata"]["name"]
        );
        assert_eq!(m["spec"]["endpoints"][0]["path"], "/metrics");
    }
    let statefulset = of_kind(&all, "StatefulSet")[0];
    assert!(
        statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"].is_string(),
        "a volume per replica for its persistent queues"
    );
    let hpa = of_kind(&all, "HorizontalPodAutoscaler")[0];
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "StatefulSet");
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"],
        statefulset["metadata"]["name"]
    );
    let pdb = of_kind(&all, "PodDisruptionBudget")[0];
    assert_eq!(pods_of(&pdb["spec"]["selector"]["matchLabels"]).len(), 1);
    for d in &all {
        if d["kind"] != "Namespace" {
            assert_eq!(
                d["metadata"]["namespace"], "sluice",
                "{}",
                d["metadata"]["name"]
            );
        }
    }
}

/// `scripts/release` packs a stripped binary (that runs), its man pages,
/// completions, the unit and a configuration, with checksums that verify;
/// `scripts/image` (buildah, from Debian packages, no registry) makes an
/// image with the Dockerfile's user, volume, ports and entry point, whose
/// root filesystem runs sluice as that user and answers `/health`. (The
/// image is started with chroot, not an OCI runtime: this machine's
/// sandbox refuses the runtime's setrlimit.)
#[test]
fn the_release_archive_and_the_image_hold_a_working_sluice() {
    let out = tempfile::tempdir().expect("tempdir");
    let (ok, log) = run(
        Command::new(root().join("scripts/release"))
            .args(["--binary", common::BIN, "--out"])
            .arg(out.path()),
        "scripts/release",
    );
    assert!(ok, "{log}");
    let target = run(Command::new("rustc").arg("-vV"), "rustc")
        .1
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("host");
    let name = format!("sluice-{}-{target}", env!("CARGO_PKG_VERSION"));
    let (ok, sums) = run(
        Command::new("sha256sum")
            .args(["-c", "SHA256SUMS"])
            .current_dir(out.path()),
        "sha256sum",
    );
    assert!(ok && sums.matches(": OK").count() == 2, "{sums}");
    let unpacked = tempfile::tempdir().expect("tempdir");
    let (ok, log) = run(
        Command::new("tar")
            .arg("-xzf")
            .arg(out.path().join(format!("{name}.tar.gz")))
            .arg("-C")
            .arg(unpacked.path()),
        "tar",
    );
    assert!(ok, "{log}");
    let dir = unpacked.path().join(&name);
    for file in [
        "sluice",
        "sluice.yaml",
        "README.md",
        "man/sluice.1",
        "man/sluice-run.1",
        "completions/sluice.bash",
        "completions/_sluice",
        "completions/sluice.fish",
        "systemd/sluice.service",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing from the archive");
    }
    let (_, symbols) = run(
        Command::new("readelf").arg("-S").arg(dir.join("sluice")),
        "readelf",
    );
    assert!(
        !symbols.contains(".symtab") && !symbols.contains(".debug_info"),
        "not stripped"
    );
    let (ok, version) = run(Command::new(dir.join("sluice")).arg("--version"), "sluice");
    assert!(
        ok && version.contains(env!("CARGO_PKG_VERSION")),
        "{version}"
    );

    // The image.
    let tag = format!("localhost/sluice-test:{}", std::process::id());
    let (ok, log) = run(
        Command::new(root().join("scripts/image")).args(["--binary", common::BIN, "--tag", &tag]),
        "scripts/image",
    );
    assert!(ok, "{log}");
    let image = Image(tag);
    let (ok, inspect) = run(
        Command::new("buildah").args(["inspect", "--type", "image", &image.0]),
        "buildah",
    );
    assert!(ok, "{inspect}");
    let v: serde_json::Value = serde_json::from_str(&inspect).expect("inspect is JSON");
    let config = &v["OCIv1"]["config"];
    assert_eq!(config["User"], "10001:10001");
    assert_eq!(config["Entrypoint"], serde_json::json!(["/usr/bin/sluice"]));
    assert_eq!(
        config["Cmd"],
        serde_json::json!(["run", "--config", "/etc/sluice/sluice.yaml"])
    );
    assert!(config["Volumes"]["/var/lib/sluice"].is_object(), "{config}");
    for port in ["9598", "8080", "9000"] {
        assert!(config["ExposedPorts"][port].is_object(), "{config}");
    }
    let container = Container::from(&image.0);
    let rootfs = PathBuf::from(&container.mount);
    // The shipped configuration, on free ports (tests run side by side).
    let shipped = std::fs::read_to_string(rootfs.join("etc/sluice/sluice.yaml")).expect("config");
    std::fs::write(
        rootfs.join("tmp/test.yaml"),
        shipped
            .replace(":9598", ":0")
            .replace(":8080", ":0")
            .replace(":9000", ":0"),
    )
    .expect("write");
    let mut child = Command::new("chroot")
        .arg("--userspec=10001:10001")
        .arg(&rootfs)
        .args([
            "/usr/bin/sluice",
            "--log-format",
            "json",
            "run",
            "--config",
            "/tmp/test.yaml",
        ])
        .current_dir(rootfs.join("var/lib/sluice"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("chroot (run as root)");
    let stderr = child.stderr.take().expect("stderr");
    let api = std::io::BufRead::lines(std::io::BufReader::new(stderr))
        .map_while(Result::ok)
        .find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l).ok()?;
            (v["message"] == "API listening").then(|| v["address"].as_str().map(str::to_string))?
        })
        .expect("the image's sluice starts");
    let port: u16 = api
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("port");
    let health = common::http_get(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        "/health",
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(health.trim(), "ok");
    // It ran as the image's user, writing only its volume.
    let owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(rootfs.join("var/lib/sluice")).expect("volume"),
    );
    assert_eq!(owner, 10001);
}

/// A buildah image, removed when dropped.
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("buildah")
            .args(["rmi", "-f", &self.0])
            .output();
    }
}

/// A buildah working container of an image, mounted; removed when dropped.
struct Container {
    id: String,
    mount: String,
}

impl Container {
    fn from(image: &str) -> Container {
        let (ok, id) = run(Command::new("buildah").args(["from", image]), "buildah");
        assert!(ok, "{id}");
        let id = id.trim().to_string();
        let (ok, mount) = run(Command::new("buildah").args(["mount", &id]), "buildah");
        assert!(ok, "{mount}");
        Container {
            id,
            mount: mount.trim().to_string(),
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("buildah").args(["umount", &self.id]).output();
        let _ = Command::new("buildah").args(["rm", &self.id]).output();
    }
}
