//! Sleeps for the number of milliseconds in its first argument (a guest blocked in a
//! host call, which epochs alone cannot interrupt), then prints "awake".
fn main() {
    let ms: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(60_000);
    std::thread::sleep(std::time::Duration::from_millis(ms));
    println!("awake");
}
