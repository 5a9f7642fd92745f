//! Generates a client (no server) from `proto/upstream.proto` with protox, so no system
//! `protoc` is needed. Only the client: the server under test is ate's own.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["upstream.proto"], ["proto"])?;
    let descriptor = PathBuf::from(std::env::var("OUT_DIR")?).join("upstream_descriptor.bin");
    std::fs::write(&descriptor, fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .file_descriptor_set_path(&descriptor)
        .skip_protoc_run()
        .compile_protos(&["upstream.proto"], &["proto"])?;
    Ok(())
}
