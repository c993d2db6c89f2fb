//! A plugin component whose exports are async-lifted, the way WASI 0.3 toolchains
//! build them. Used to test that `wharf call` and the invoke endpoint call async
//! exports with the same limits (memory cap, deadline) as sync ones.
wit_bindgen::generate!({ path: "wit", world: "plugin3" });

struct Plugin;

impl Guest for Plugin {
    async fn greet(name: String) -> String {
        // One real suspension, so the call goes through the host's event loop.
        wasip3::clocks::monotonic_clock::wait_for(1_000).await;
        format!("Hello, {name}!")
    }

    async fn add_after(ms: u32, a: i32, b: i32) -> i32 {
        wasip3::clocks::monotonic_clock::wait_for(u64::from(ms) * 1_000_000).await;
        a.wrapping_add(b)
    }

    async fn nap(ms: u64) -> u64 {
        wasip3::clocks::monotonic_clock::wait_for(ms.saturating_mul(1_000_000)).await;
        ms
    }

    async fn spin() {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }

    async fn grow(pages: u32) -> u32 {
        let mut held: Vec<Vec<u8>> = Vec::new();
        for i in 0..pages {
            let mut v = Vec::new();
            if v.try_reserve_exact(65_536).is_err() {
                return i;
            }
            v.resize(65_536, 1u8);
            held.push(v);
        }
        std::hint::black_box(&held);
        pages
    }
}

export!(Plugin);
