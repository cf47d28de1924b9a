//! Compiles the protocols sluice owns (`proto/`) into Rust. protox parses the
//! .proto files in Rust, so no `protoc` is needed on the machine.
//!
//! Cap'n Proto schemas need the `capnp` compiler (Debian `capnproto`, which
//! `scripts/peers` installs). Where it is missing, the generated code
//! committed beside the schema is used instead, so `cargo build` needs
//! nothing but cargo; a test fails if that copy differs from what the
//! compiler makes of the schema.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    build_info();
    #[cfg(feature = "sluice")]
    {
        const PROTO: &str = "proto/sluice/v1/forward.proto";
        println!("cargo:rerun-if-changed={PROTO}");
        let fds = protox::compile([PROTO], ["proto"])?;
        tonic_prost_build::configure()
            // Event data as `Bytes`: the receiver slices each event out of
            // the request's buffer instead of copying it.
            .bytes(".sluice.v1.SendRequest.data")
            .compile_fds(fds)?;
    }
    capnp()
}

/// `sluice_build_info` and `sluice --version` name the compiler; the release
/// script sets `SLUICE_REVISION` (the commit) — a plain `cargo build` says
/// `unknown` rather than rebuilding on every commit to learn it.
fn build_info() {
    println!("cargo:rerun-if-env-changed=SLUICE_REVISION");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SLUICE_RUSTC_VERSION={version}");
}

fn capnp() -> Result<(), Box<dyn std::error::Error>> {
    const SCHEMA: &str = "proto/sluice/v1/events.capnp";
    const COMMITTED: &str = "proto/sluice/v1/events_capnp.rs";
    println!("cargo:rerun-if-changed={SCHEMA}");
    println!("cargo:rerun-if-changed={COMMITTED}");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let generated = out.join("sluice/v1/events_capnp.rs");
    let compiler = std::process::Command::new("capnp")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if compiler {
        capnpc::CompilerCommand::new()
            .src_prefix("proto")
            .file(SCHEMA)
            .default_parent_module(vec!["codec".into(), "capnp".into()])
            .output_path(&out)
            .run()?;
        println!("cargo:rustc-env=SLUICE_CAPNP_COMPILED=1");
    } else {
        std::fs::create_dir_all(generated.parent().ok_or("no parent")?)?;
        std::fs::copy(COMMITTED, &generated)?;
        println!("cargo:rustc-env=SLUICE_CAPNP_COMPILED=0");
    }
    Ok(())
}
