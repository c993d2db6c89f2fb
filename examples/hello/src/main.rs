//! Wharf's hello example: a WASI command (a wasip2 component when built for
//! `wasm32-wasip2`, a core module for `wasm32-wasip1`).
//!
//! Run it:
//!   cargo build --release --target wasm32-wasip2 --manifest-path examples/hello/Cargo.toml
//!   wharf run examples/hello/target/wasm32-wasip2/release/hello.wasm Ada
fn main() {
    let name = std::env::args().nth(1).unwrap_or_else(|| "world".to_string());
    println!("Hello, {name}! Greetings from WebAssembly, run by Wharf.");
}
