//! The default guest: the built-in validator and planner, exported through the WIT
//! contract with the guest SDK, as any plugin is. Built for `wasm32-wasip2`.

struct DefaultGuest;

impl br_guest_sdk::Plugin for DefaultGuest {}

br_guest_sdk::export_plugin!(DefaultGuest);
