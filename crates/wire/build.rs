//! Compiles `proto/peregrine/wire/v1/wire.proto` with prost-build (needs `protoc`, found via
//! `$PROTOC` or `PATH`; Debian's `protobuf-compiler` is enough).

use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    const PROTO: &str = "proto/peregrine/wire/v1/wire.proto";
    println!("cargo:rerun-if-changed={PROTO}");
    println!("cargo:rerun-if-env-changed=PROTOC");
    prost_build::Config::new().compile_protos(&[PROTO], &["proto"])?;
    Ok(())
}
