//! Prints a greeting: the smallest useful WASI program.
fn main() {
    println!("Hello, world!");
}
