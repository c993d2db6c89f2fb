//! Paths of the guest programs built from `test-programs/guests` (Rust, for wasip1 and
//! wasip2) and of the text-format programs in `test-programs/wat`. Tests and benches
//! use these; the build script compiles the guests whenever their sources change.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
