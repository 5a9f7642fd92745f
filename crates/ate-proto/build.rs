//! Generates the gRPC code from `proto/` with protox, so no system `protoc` is needed.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["ateapi.proto", "atenode.proto"], ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor = out.join("ateapi_descriptor.bin");
    std::fs::write(&descriptor, fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .file_descriptor_set_path(&descriptor)
        .skip_protoc_run()
        .compile_protos(&["ateapi.proto", "atenode.proto"], &["proto"])?;
    Ok(())
}
