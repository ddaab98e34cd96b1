//! Exit codes: the contract with whoever launches the job (documented in README).

pub const OK: u8 = 0;
/// Bad usage or configuration, or an I/O failure before any work.
pub const USAGE: u8 = 1;
/// The blueprint is invalid.
pub const INVALID_BLUEPRINT: u8 = 2;
/// The guest hit a sandbox limit or misbehaved.
pub const SANDBOX: u8 = 3;
