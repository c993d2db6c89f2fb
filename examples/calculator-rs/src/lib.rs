//! Wharf's calculator example in Rust: a component implementing the
//! `wharf:calculator/calculator` world from `wit/calculator` (see also the Python
//! version in `examples/calculator-py`).
//!
//! Build it and call its exports:
//!   cargo build --release --target wasm32-wasip2 --manifest-path examples/calculator-rs/Cargo.toml
//!   cd examples/calculator-rs/target/wasm32-wasip2/release
//!   wharf call calculator_rs.wasm add 3 4
//!
//! Or with the wasmtime CLI:
//!   wasmtime run --invoke 'divide(7, 2)' calculator_rs.wasm   # ok(3)
wit_bindgen::generate!({ path: "../../wit/calculator", world: "calculator" });

struct Calculator;

impl Guest for Calculator {
    fn add(a: i32, b: i32) -> i32 {
        a.wrapping_add(b)
    }

    fn midpoint(a: Point, b: Point) -> Point {
        Point {
            x: (a.x + b.x) / 2.0,
            y: (a.y + b.y) / 2.0,
        }
    }

    fn divide(a: i32, b: i32) -> Result<i32, String> {
        if b == 0 {
            return Err("division by zero".to_string());
        }
        // Truncates toward zero; `i32::MIN / -1` is the only overflowing case.
        a.checked_div(b).ok_or_else(|| "overflow".to_string())
    }
}

export!(Calculator);
