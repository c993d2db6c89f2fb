//! `host_strings`: the host's handling of guest-controlled strings and sizes. See
//! `wharf_fuzz::host_strings`.
fn main() {
    wharf_fuzz::main_for(
        "host_strings",
        wharf_fuzz::host_strings,
        wharf_fuzz::host_strings_seeds(),
    );
}
