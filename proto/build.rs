//! Compiles every `.proto` under `storefront/` with protox (a protobuf compiler
//! written in Rust, so a fresh machine needs no `protoc`), generates the tonic
//! clients and servers, and writes the descriptor set that gRPC reflection serves.

use prost::Message;
use std::path::{Path, PathBuf};

fn proto_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            proto_files(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let mut files = Vec::new();
    proto_files(&root.join("storefront"), &mut files)?;
    files.sort();
    println!("cargo:rerun-if-changed=storefront");

    let descriptors = protox::compile(&files, [&root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("storefront_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    // Events and the types they embed travel as JSON, so they also derive serde.
    let serde = "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]";
    tonic_prost_build::configure()
        .type_attribute(".storefront.common.v1", serde)
        .type_attribute(".storefront.events.v1", serde)
        .compile_fds(descriptors)?;
    Ok(())
}
