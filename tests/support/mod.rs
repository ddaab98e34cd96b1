//! What the end-to-end tests start and make: media made with FFmpeg's `lavfi` sources
//! (`media`), a real PostgreSQL on a temporary data folder (`postgres`), fake-gcs-server
//! and a fault-injecting proxy in front of it (`gcs`), memory cgroups (`cgroup`), and the
//! backend's blueprint with its variants (`variants`, also read by `crates/blueprint`).

pub mod cgroup;
pub mod gcs;
pub mod media;
pub mod postgres;
pub mod variants;
