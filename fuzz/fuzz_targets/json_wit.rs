//! `json_wit`: JSON <-> WIT values (`wharf_plugin::json`) on arbitrary input. See
//! `wharf_fuzz::json_wit`.
fn main() {
    wharf_fuzz::main_for(
        "json_wit",
        wharf_fuzz::json_wit,
        wharf_fuzz::json_wit_seeds(),
    );
}
