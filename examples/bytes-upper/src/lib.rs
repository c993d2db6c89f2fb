//! A bytes plugin (`wharf:plugin/bytes`) written with the Wharf plugin SDK.
//!
//! Build: cargo build --release --target wasm32-wasip2 --manifest-path examples/bytes-upper/Cargo.toml
//! Call:  wharf call examples/bytes-upper/target/wasm32-wasip2/release/bytes_upper.wasm handle '[104, 105]'
//!        → ok([72, 73])
struct Upper;

impl wharf_plugin_sdk::BytesPlugin for Upper {
    fn handle(input: Vec<u8>) -> Result<Vec<u8>, String> {
        if input.is_empty() {
            return Err("empty input".to_string());
        }
        Ok(input.to_ascii_uppercase())
    }
}

wharf_plugin_sdk::export_bytes_plugin!(Upper);
