//! Traps on purpose inside a named function, so that the trap report can show a
//! backtrace with function names.
#[inline(never)]
fn wharf_guest_fails_here(x: u32) -> u32 {
    if std::hint::black_box(x) == 7 {
        std::process::abort();
    }
    x
}

fn main() {
    println!("about to trap");
    let r = wharf_guest_fails_here(std::hint::black_box(7));
    println!("{r}");
}
