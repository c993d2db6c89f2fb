//! `manifest_parse`: `parse_manifest` on arbitrary text. See `wharf_fuzz::manifest_parse`.
fn main() {
    wharf_fuzz::main_for(
        "manifest_parse",
        wharf_fuzz::manifest_parse,
        wharf_fuzz::manifest_seeds(),
    );
}
