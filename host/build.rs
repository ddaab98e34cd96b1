//! Builds the default guest component (wasm32-wasip2) before the host, so that one
//! `cargo build` gives a binary with it embedded. The guests only the tests load are
//! built by `tests/programs` (a dev-dependency), not here.

fn main() {
    br_guest_build::build(&[br_guest_build::Guest {
        package: "blueprint-guest",
        file: "blueprint_guest.wasm",
        variable: "DEFAULT_GUEST_WASM",
    }]);
}
