//! Helpers shared by the guest programs.

/// Exits with `code`. On wasip2 this uses `wasi:cli/exit.exit-with-code`, because Rust's
/// std there reports only success or failure (0 or 1); on wasip1 `proc_exit` carries
/// the code.
pub fn exit(code: i32) -> ! {
    #[cfg(all(target_os = "wasi", target_env = "p2"))]
    {
        wasip2::cli::exit::exit_with_code(code as u8);
        unreachable!("exit-with-code returned");
    }
    #[cfg(not(all(target_os = "wasi", target_env = "p2")))]
    std::process::exit(code)
}
