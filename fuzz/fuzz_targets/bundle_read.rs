//! `bundle_read`: `Bundle::read` on arbitrary bytes. See `wharf_fuzz::bundle_read`.
fn main() {
    wharf_fuzz::main_for(
        "bundle_read",
        wharf_fuzz::bundle_read,
        wharf_fuzz::bundle_seeds(),
    );
}
