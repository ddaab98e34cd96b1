//! The default guest: the built-in validator and planner, exported through the WIT
//! contract with the guest SDK, as any plugin is. Built for `wasm32-wasip2`.

// Natively the export macro expands to nothing (there is no component to export), so
// the type is only used when built for wasm32.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct DefaultGuest;

impl br_guest_sdk::Plugin for DefaultGuest {}

br_guest_sdk::export_plugin!(DefaultGuest);
