//! Hostile bundles (issue 9, class 5): gzip bombs, PAX `size` overrides, GNU long
//! names, directories with data, duplicates. Each is refused quickly, and the reader's
//! peak heap stays near `max` (measured by a counting global allocator; the tests in
//! this file run one at a time so that the peak is theirs).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wharf_runtime::{Bundle, BundleError};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed)
                    + (new_size - layout.size());
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// One test at a time (the allocator's peak is process-wide).
static SERIAL: Mutex<()> = Mutex::new(());

const MAX: u64 = 64 << 20;
const GIB: u64 = 1 << 30;

/// Reads `bytes` with `max`, returning the result, the time taken and how far the heap
/// grew above where it was when the read began.
fn measured_read(bytes: &[u8], max: u64) -> (Result<Bundle, BundleError>, Duration, usize) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let t = Instant::now();
    let r = Bundle::read(bytes, max);
    let took = t.elapsed();
    let grew = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    (r, took, grew)
}

/// The heap a read may use above `max`: tar metadata allowance, decoder state, slack.
const SLACK: usize = 16 << 20;

/// A raw tar stream writer: headers as the attacker wants them.
struct Tar<W: Write>(W);

impl<W: Write> Tar<W> {
    fn header(&mut self, name: &[u8], size: u64, kind: u8) {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().expect("gnu").name[..name.len()].copy_from_slice(name);
        h.set_mode(0o644);
        h.set_size(size);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_cksum();
        self.0.write_all(h.as_bytes()).expect("write");
    }

    /// An entry with these bytes.
    fn entry(&mut self, name: &[u8], kind: u8, data: &[u8]) {
        self.header(name, data.len() as u64, kind);
        self.0.write_all(data).expect("write");
        self.pad(data.len() as u64);
    }

    /// `len` zero bytes of data (written in chunks), padded to a block.
    fn zeros(&mut self, len: u64) {
        let chunk = vec![0u8; 1 << 20];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len() as u64);
            self.0.write_all(&chunk[..n as usize]).expect("write");
            left -= n;
        }
        self.pad(len);
    }

    fn pad(&mut self, len: u64) {
        let rem = (512 - len % 512) % 512;
        self.0.write_all(&vec![0u8; rem as usize]).expect("write");
    }

    fn finish(mut self) -> W {
        self.0.write_all(&[0u8; 1024]).expect("write");
        self.0
    }
}

fn gz() -> Tar<flate2::write::GzEncoder<Vec<u8>>> {
    gz_level(flate2::Compression::fast())
}

fn gz_level(level: flate2::Compression) -> Tar<flate2::write::GzEncoder<Vec<u8>>> {
    Tar(flate2::write::GzEncoder::new(Vec::new(), level))
}

fn done(t: Tar<flate2::write::GzEncoder<Vec<u8>>>) -> Vec<u8> {
    t.finish().finish().expect("gzip")
}

fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

const MANIFEST: &[u8] = b"[app]\nname = \"x\"\nversion = \"1\"\n";

#[test]
fn a_gzip_bomb_in_one_entry_is_refused_quickly_without_unpacking() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut t = gz_level(flate2::Compression::best());
    t.entry(b"wharf.toml", b'0', MANIFEST);
    t.header(b"big.wasm", GIB, b'0');
    t.zeros(GIB);
    let bomb = done(t);
    assert!(bomb.len() < 2 << 20, "bomb is {} bytes", bomb.len());
    let (r, took, grew) = measured_read(&bomb, MAX);
    assert!(matches!(r, Err(BundleError::TooLarge(MAX))), "{r:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(grew < SLACK, "heap grew by {grew} bytes");
}

#[test]
fn many_entries_each_under_the_bound_are_refused_at_the_bound() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut t = gz();
    t.entry(b"wharf.toml", b'0', MANIFEST);
    for i in 0..20 {
        t.header(format!("f{i}.wasm").as_bytes(), 40 << 20, b'0');
        t.zeros(40 << 20);
    }
    let (r, took, grew) = measured_read(&done(t), MAX);
    assert!(matches!(r, Err(BundleError::TooLarge(MAX))), "{r:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(grew < MAX as usize + SLACK, "heap grew by {grew} bytes");
}

#[test]
fn pax_size_overrides_cannot_bypass_the_bound() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // 20 entries whose headers say 0 bytes and whose PAX records say 60 MiB: 1.2 GB
    // unpacked that a header-size count never sees.
    let mut t = gz();
    t.entry(b"wharf.toml", b'0', MANIFEST);
    for i in 0..20 {
        t.entry(
            b"././@PaxHeader",
            b'x',
            &pax_record("size", &(60u64 << 20).to_string()),
        );
        t.header(format!("f{i}.wasm").as_bytes(), 0, b'0');
        t.zeros(60 << 20);
    }
    let (r, took, grew) = measured_read(&done(t), MAX);
    assert!(r.is_err(), "accepted a PAX size override bundle");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(grew < MAX as usize + SLACK, "heap grew by {grew} bytes");

    // One PAX size far over the bound: TooLarge, before anything is read.
    let mut t = gz();
    t.entry(b"wharf.toml", b'0', MANIFEST);
    t.entry(
        b"././@PaxHeader",
        b'x',
        &pax_record("size", &GIB.to_string()),
    );
    t.header(b"big.wasm", 0, b'0');
    t.zeros(GIB);
    let (r, took, grew) = measured_read(&done(t), MAX);
    assert!(matches!(r, Err(BundleError::TooLarge(MAX))), "{r:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(grew < SLACK, "heap grew by {grew} bytes");
}

#[test]
fn gnu_long_names_over_the_limit_are_refused_before_reading_them() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    for (kind, what) in [(b'L', "path"), (b'K', "link name")] {
        let mut t = gz();
        t.entry(b"wharf.toml", b'0', MANIFEST);
        t.header(b"././@LongLink", GIB, kind);
        t.zeros(GIB);
        t.entry(b"a.wasm", b'0', b"\0asm");
        let (r, took, grew) = measured_read(&done(t), MAX);
        assert!(
            matches!(&r, Err(BundleError::TooLong { what: w, .. }) if *w == what),
            "{r:?}"
        );
        assert!(took < Duration::from_secs(2), "took {took:?}");
        assert!(grew < SLACK, "heap grew by {grew} bytes");
    }
    // Just over the name limit is refused too; a long but sane name still works.
    let mut t = gz();
    t.entry(b"wharf.toml", b'0', MANIFEST);
    t.entry(b"././@LongLink", b'L', &vec![b'a'; 5000]);
    t.entry(b"a", b'0', b"x");
    let (r, _, _) = measured_read(&done(t), MAX);
    assert!(matches!(r, Err(BundleError::TooLong { .. })), "{r:?}");
    let long = format!("static/{}.txt", "n".repeat(300));
    let mut files = BTreeMap::new();
    files.insert("wharf.toml".to_string(), MANIFEST.to_vec());
    files.insert(long.clone(), b"hi".to_vec());
    let b = Bundle::read(&Bundle::pack(&files).expect("pack"), MAX).expect("long name");
    assert_eq!(b.files.get(&long).map(Vec::as_slice), Some(&b"hi"[..]));
}

#[test]
fn data_the_files_do_not_account_for_is_bounded_too() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    // A directory entry carrying 1 GiB: no file bytes, but the stream is counted.
    let mut t = gz();
    t.entry(b"wharf.toml", b'0', MANIFEST);
    t.header(b"d/", GIB, b'5');
    t.zeros(GIB);
    let (r, took, grew) = measured_read(&done(t), MAX);
    assert!(matches!(r, Err(BundleError::TooLarge(MAX))), "{r:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(grew < SLACK, "heap grew by {grew} bytes");
}

#[test]
fn duplicate_paths_are_refused_naming_the_path() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut t = Tar(Vec::new());
    t.entry(b"wharf.toml", b'0', MANIFEST);
    t.entry(b"./a.wasm", b'0', b"first");
    t.entry(b"a.wasm", b'0', b"second");
    match Bundle::read(&t.finish(), MAX) {
        Err(e @ BundleError::Duplicate(_)) => {
            assert!(e.to_string().contains("`a.wasm`"), "{e}")
        }
        other => panic!("expected a duplicate, got {other:?}"),
    }
    // A file that is also a directory cannot be mounted either.
    let mut t = Tar(Vec::new());
    t.entry(b"wharf.toml", b'0', MANIFEST);
    t.entry(b"static", b'0', b"file");
    t.entry(b"static//x.txt", b'0', b"file below it");
    match Bundle::read(&t.finish(), MAX) {
        Err(BundleError::Duplicate(p)) => assert_eq!(p, "static"),
        other => panic!("expected a duplicate, got {other:?}"),
    }
}
