//! Write a Wharf bytes plugin (`wharf:plugin/bytes`: `handle(input: list<u8>) ->
//! result<list<u8>, string>`) in Rust with one trait impl and one macro:
//!
//! ```ignore
//! struct Upper;
//! impl wharf_plugin_sdk::BytesPlugin for Upper {
//!     fn handle(input: Vec<u8>) -> Result<Vec<u8>, String> {
//!         Ok(input.to_ascii_uppercase())
//!     }
//! }
//! wharf_plugin_sdk::export_bytes_plugin!(Upper);
//! ```
//!
//! Build it as a `cdylib` for `wasm32-wasip2`; call it with
//! `wharf call plugin.wasm handle '[104, 105]'`, from Rust with `wharf_plugin`, or over
//! HTTP after deploying it with `executor = { type = "plugin" }`.

/// The generated bindings of the `wharf:plugin/bytes` world.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/plugin",
        world: "bytes",
        // The export macro is used from the plugin crate, so it must be public and
        // refer to these bindings by their path.
        pub_export_macro: true,
        default_bindings_module: "wharf_plugin_sdk::bindings",
    });
}

/// A bytes-in, bytes-out plugin.
pub trait BytesPlugin {
    /// Transforms `input`; an `Err` reaches the caller as `err("...")`.
    fn handle(input: Vec<u8>) -> Result<Vec<u8>, String>;
}

#[doc(hidden)]
pub struct Adapter<T>(core::marker::PhantomData<T>);

impl<T: BytesPlugin> bindings::Guest for Adapter<T> {
    fn handle(input: Vec<u8>) -> Result<Vec<u8>, String> {
        T::handle(input)
    }
}

/// Exports `$ty` (a [`BytesPlugin`]) as the plugin's `handle` function.
#[macro_export]
macro_rules! export_bytes_plugin {
    ($ty:ty) => {
        type __WharfBytesPlugin = $crate::Adapter<$ty>;
        $crate::bindings::export!(__WharfBytesPlugin with_types_in $crate::bindings);
    };
}
