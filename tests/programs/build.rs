//! Builds the guests only the tests load; the host's own build makes only the default.

use br_guest_build::Guest;

fn main() {
    br_guest_build::build(&[
        Guest { package: "hostile-guest", file: "hostile_guest.wasm", variable: "HOSTILE_GUEST_WASM" },
        Guest { package: "contract-0-4-guest", file: "contract_0_4_guest.wasm", variable: "CONTRACT_0_4_GUEST_WASM" },
        Guest { package: "beat-cuts", file: "beat_cuts.wasm", variable: "BEAT_CUTS_PLUGIN_WASM" },
        Guest { package: "practice-mode", file: "practice_mode.wasm", variable: "PRACTICE_MODE_PLUGIN_WASM" },
    ]);
}
