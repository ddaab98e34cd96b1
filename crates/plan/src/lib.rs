//! Planning: from a validated blueprint and the facts the host probed about its media
//! to a list of FFmpeg steps ([`Plan`]). Pure computation on data, so it runs inside
//! the guest sandbox and natively in tests. The plan names no file: it refers to
//! inputs, temporaries and the output by number (see `wit/`).

#![warn(missing_docs)]

mod planner;
pub mod prepare;
mod rational;
pub mod render;
mod types;

pub use planner::{output_frame, plan, plan_with};
pub use rational::FrameRate;
pub use types::*;
