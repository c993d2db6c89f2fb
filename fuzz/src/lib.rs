//! Fuzz targets without libFuzzer (stable Rust only): each target is a function that
//! must never panic on any input and checks its result's invariants; a driver runs it
//! over a corpus (built-in seeds, plus files in `corpus/<target>/`, where every crash
//! found is kept as a regression input) and then over seeded random mutations of it
//! for a number of iterations or seconds. Deterministic for a given seed, so a failure
//! is reproduced by its seed and iteration, and the failing input is written to
//! `artifacts/<target>/`.

use std::collections::BTreeMap;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wharf_runtime::{Bundle, BundleError};

mod host_strings;
mod json_wit;

pub use host_strings::{host_strings, host_strings_seeds};
pub use json_wit::{
    JSON_WIT_WAT, JsonWitFixture, conforms, deep_json, json_wit, json_wit_fixture, json_wit_seeds,
    json_wit_value,
};

/// The bundle bound the target reads with: small, so that the bounds are reached.
pub const FUZZ_MAX_BUNDLE: u64 = 1 << 20;

/// `Bundle::read` on arbitrary bytes: no panic, and an accepted bundle keeps every
/// promise of the reader (within the bound, normalized unique paths, a manifest).
pub fn bundle_read(data: &[u8]) {
    match Bundle::read(data, FUZZ_MAX_BUNDLE) {
        Ok(b) => {
            let total: u64 = b.files.values().map(|d| d.len() as u64).sum();
            assert!(total <= FUZZ_MAX_BUNDLE, "accepted {total} bytes");
            assert!(b.files.len() <= wharf_runtime::bundle::MAX_ENTRIES);
            assert!(b.files.contains_key("wharf.toml"));
            for p in b.files.keys() {
                assert!(!p.is_empty() && !p.starts_with('/'), "path `{p}`");
                assert!(
                    p.split('/').all(|s| !s.is_empty() && s != "." && s != ".."),
                    "path `{p}`"
                );
                let dir = format!("{p}/");
                assert!(
                    !b.files.keys().any(|q| q.starts_with(&dir)),
                    "`{p}` is a file and a directory"
                );
            }
            let _ = b.manifest();
        }
        Err(BundleError::TooLarge(n)) => assert_eq!(n, FUZZ_MAX_BUNDLE),
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// `parse_manifest` on arbitrary text: no panic; an accepted manifest parses again from
/// the same text to the same component ids.
pub fn manifest_parse(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match wharf_manifest::parse_manifest(&text) {
        Ok(m) => {
            let again = wharf_manifest::parse_manifest(&text).expect("parses twice");
            let ids = |m: &wharf_manifest::Manifest| {
                m.components
                    .iter()
                    .map(|c| c.id.clone())
                    .collect::<Vec<_>>()
            };
            assert_eq!(ids(&m), ids(&again));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

const MANIFEST: &str = "[app]\nname = \"fz\"\nversion = \"1\"\n\n[[component]]\nid = \"web\"\nsource = \"app.wasm\"\nroute = \"/fz/...\"\nfiles = [{ source = \"static\", dest = \"/static\" }]\n";

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let map: BTreeMap<String, Vec<u8>> = files
        .iter()
        .map(|(p, d)| (p.to_string(), d.to_vec()))
        .collect();
    Bundle::pack(&map).expect("pack")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

/// Seeds for `bundle_read`: valid bundles (tar and tar.gz), long names, PAX headers.
pub fn bundle_seeds() -> Vec<Vec<u8>> {
    let long = format!("static/{}.txt", "l".repeat(150));
    let plain = tar_of(&[
        ("wharf.toml", MANIFEST.as_bytes()),
        ("app.wasm", b"\0asm\x01\0\0\0"),
        ("static/index.html", b"<p>hi</p>"),
        (long.as_str(), b"long"),
    ]);
    let mut pax = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(4);
    h.set_mode(0o644);
    h.set_cksum();
    pax.append_pax_extensions([("path", &b"static/p.txt"[..]), ("size", &b"4"[..])])
        .expect("pax");
    pax.append_data(&mut h, "x", &b"paxd"[..]).expect("pax");
    let mut h = tar::Header::new_ustar();
    h.set_size(MANIFEST.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    pax.append_data(&mut h, "wharf.toml", MANIFEST.as_bytes())
        .expect("pax");
    let pax = pax.into_inner().expect("pax");
    vec![gzip(&plain), plain, pax, Vec::new(), b"\x1f\x8b".to_vec()]
}

/// Seeds for `manifest_parse`: the shipped examples' manifests and a few shapes.
pub fn manifest_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        MANIFEST.as_bytes().to_vec(),
        b"[app]\nname = \"a\"\nversion = \"1\"\n[variables]\nx = { default = \"1\" }\n[[component]]\nid = \"p\"\nsource = \"p.wasm\"\nexecutor = { type = \"plugin\" }\nlimits = { memory = \"16MiB\", timeout = \"300ms\", max_body = \"1KiB\", max_concurrency = 2 }\n".to_vec(),
        b"[app]\nname = \"w\"\nversion = \"1\"\n[[component]]\nid = \"c\"\nsource = \"c.wasm\"\nroute = \"/api/:v/...\"\nexecutor = { type = \"wagi\" }\nallowed_outbound_hosts = [\"https://*.example.com\"]\nkey_value_stores = [\"default\"]\n".to_vec(),
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    if let Ok(dirs) = std::fs::read_dir(root) {
        for d in dirs.flatten() {
            if let Ok(text) = std::fs::read(d.path().join("wharf.toml")) {
                seeds.push(text);
            }
        }
    }
    seeds
}

/// A small deterministic PRNG (xorshift64*).
pub struct Rng(u64);

impl Rng {
    /// Seeded (0 is replaced by a fixed non-zero value).
    pub fn new(seed: u64) -> Rng {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Values that hit edges: tar sizes in octal, lengths, magic bytes, JSON keys and
/// numbers, CGI separators, multi-byte and invalid UTF-8.
const INTERESTING: &[&[u8]] = &[
    b"77777777777",
    b"00000001000",
    b"00000000000",
    b"0000010000\0",
    b"ustar\0",
    b"ustar  \0",
    b"././@LongLink",
    b"../",
    b"./",
    b"/",
    b"\x1f\x8b",
    b" size=9999999999\n",
    b" path=../x\n",
    b"\"",
    b"[[component]]\n",
    b"= \"",
    b"\\u0000",
    b"...",
    b":",
    // JSON and the JSON <-> WIT mapping.
    b"null",
    b"{\"some\":",
    b"{\"tag\":\"",
    b"\"value\":",
    b"{\"ok\":null}",
    b"\"NaN\"",
    b"-1",
    b"256",
    b"18446744073709551616",
    b"9007199254740993.0",
    b"1e999",
    b"[[[[",
    // CGI output and headers, log lines.
    b"\r\n\r\n",
    b"\n\n",
    b"Status: ",
    b"Location: ",
    b"\x1b[",
    b"\xc3\xa9",
    b"\xe2\x82\xac",
    b"\xf0\x9f\xa6\x80",
    b"\xff",
];

/// One mutation of `input` (bit flips, byte sets, inserts, deletes, interesting
/// values, splices with another corpus entry).
pub fn mutate(rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next_u64() as u8;
            }
            2 => {
                let i = rng.below(v.len() + 1);
                let n = 1 + rng.below(16);
                for _ in 0..n {
                    v.insert(i, rng.next_u64() as u8);
                }
            }
            3 if !v.is_empty() => {
                let i = rng.below(v.len());
                let n = (1 + rng.below(64)).min(v.len() - i);
                v.drain(i..i + n);
            }
            4 => {
                let val = INTERESTING[rng.below(INTERESTING.len())];
                let i = rng.below(v.len() + 1);
                let end = (i + val.len()).min(v.len());
                v.splice(i..end, val.iter().copied());
            }
            5 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = a + rng.below(other.len() - a + 1);
                    let i = rng.below(v.len() + 1);
                    v.splice(i..i, other[a..b].iter().copied());
                }
            }
            _ => {
                // Tar-aware: rewrite a header's size field (offset 124, 12 bytes).
                if v.len() >= 512 {
                    let block = rng.below(v.len() / 512) * 512;
                    let size = format!("{:011o}\0", rng.next_u64() % (1 << 33));
                    v[block + 124..block + 136].copy_from_slice(size.as_bytes());
                }
            }
        }
    }
    // Most mutations break a tar header's checksum, which stops the reader at once;
    // half the time, fix them so the mutation reaches the code behind the check.
    if rng.below(2) == 0 {
        fix_checksums(&mut v);
    }
    v
}

/// Recomputes the checksum of every 512-byte block that looks like a tar header.
pub fn fix_checksums(v: &mut [u8]) {
    for block in v.chunks_exact_mut(512) {
        if &block[257..262] != b"ustar" {
            continue;
        }
        block[148..156].fill(b' ');
        let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
        let field = format!("{sum:06o}\0 ");
        block[148..156].copy_from_slice(field.as_bytes());
    }
}

/// How long to run.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    /// This many mutated inputs.
    Iterations(u64),
    /// Mutated inputs until this much time has passed.
    Time(Duration),
}

/// The corpus directory of a target (`fuzz/corpus/<target>`), whose files are seeds and
/// regression inputs.
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

/// Runs `target` over `seeds`, the corpus directory's files and then mutations, and
/// panics (after saving the input to `artifacts/<target>/`) at the first failure.
/// Returns how many inputs ran.
pub fn run(name: &str, target: fn(&[u8]), seeds: Vec<Vec<u8>>, seed: u64, budget: Budget) -> u64 {
    let mut corpus = seeds;
    if let Ok(dir) = std::fs::read_dir(corpus_dir(name)) {
        let mut files: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            if let Ok(bytes) = std::fs::read(&f) {
                corpus.push(bytes);
            }
        }
    }
    let check = |input: &[u8], what: &str| {
        let t = Instant::now();
        let r = std::panic::catch_unwind(AssertUnwindSafe(|| target(input)));
        let slow = t.elapsed() > Duration::from_secs(5);
        if r.is_err() || slow {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("artifacts")
                .join(name);
            let _ = std::fs::create_dir_all(&dir);
            let file = dir.join(format!("crash-{seed}-{what}"));
            let _ = std::fs::write(&file, input);
            panic!(
                "{name}: {} on {what} (seed {seed}); input saved to {}; add it to {} as a regression input",
                if slow { "took over 5 s" } else { "panicked" },
                file.display(),
                corpus_dir(name).display()
            );
        }
    };
    for (i, input) in corpus.iter().enumerate() {
        check(input, &format!("corpus-{i}"));
    }
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let mut n = 0u64;
    let mut pool = corpus.clone();
    loop {
        match budget {
            Budget::Iterations(max) if n >= max => break,
            Budget::Time(max) if started.elapsed() >= max => break,
            _ => {}
        }
        let base = if pool.is_empty() {
            Vec::new()
        } else {
            pool[rng.below(pool.len())].clone()
        };
        let input = mutate(&mut rng, &base, &corpus);
        check(&input, &format!("iter-{n}"));
        // Keep some mutants as bases, so mutations stack (bounded pool).
        if rng.below(8) == 0 && input.len() < 64 << 10 {
            if pool.len() < 256 {
                pool.push(input);
            } else {
                let i = rng.below(pool.len());
                pool[i] = input;
            }
        }
        n += 1;
    }
    corpus.len() as u64 + n
}

/// The `main` of a target binary: `TARGET [--seconds N] [--iterations N] [--seed N]`
/// (default 60 s, seed 1), or `TARGET FILE...` to run just those inputs.
pub fn main_for(name: &str, target: fn(&[u8]), seeds: Vec<Vec<u8>>) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut budget = Budget::Time(Duration::from_secs(60));
    let mut seed = 1u64;
    let mut files = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{a} needs a number"))
        };
        match a.as_str() {
            "--seconds" => budget = Budget::Time(Duration::from_secs(val())),
            "--iterations" => budget = Budget::Iterations(val()),
            "--seed" => seed = val(),
            f => files.push(f.to_string()),
        }
    }
    if !files.is_empty() {
        for f in &files {
            let bytes = std::fs::read(f).unwrap_or_else(|e| panic!("reading {f}: {e}"));
            target(&bytes);
            println!("{name}: {f}: ok");
        }
        return;
    }
    let t = Instant::now();
    let n = run(name, target, seeds, seed, budget);
    println!(
        "{name}: {n} inputs in {:.1} s, seed {seed}: no failure",
        t.elapsed().as_secs_f64()
    );
}
