//! Sums 1..=N (N from its first argument, default 1000) in a loop and prints the sum:
//! a deterministic amount of work for fuel metering.
fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let mut sum = 0u64;
    for i in 1..=n {
        sum = std::hint::black_box(sum + i);
    }
    println!("{sum}");
}
