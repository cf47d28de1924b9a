//! Compiles the protocols sluice owns (`proto/`) into Rust. protox parses the
//! .proto files in Rust, so no `protoc` is needed on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
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
    Ok(())
}
