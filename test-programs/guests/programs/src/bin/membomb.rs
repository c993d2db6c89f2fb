//! Allocates and touches memory 1 MiB at a time until allocation fails: a hostile guest.
fn main() {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let chunk = vec![0xA5u8; 1 << 20];
        hoard.push(std::hint::black_box(chunk));
        if hoard.len() % 64 == 0 {
            eprintln!("holding {} MiB", hoard.len());
        }
    }
}
