//! Status of one Blueprint Runner job: what a change says ([`update`]), where it goes
//! without a database ([`sink`]), and the backend's PostgreSQL row ([`postgres`]).

pub mod lock;
pub mod postgres;
pub mod sink;
pub mod update;

pub use lock::{Holder, LockError, LockState, TaskLock};
pub use postgres::{ConfigProblem, DbError, DbSettings, Delivery, PgStatus, TaskRow};
pub use sink::{JsonLines, LogOnly, StatusSink};
pub use update::{Stage, Status, StatusUpdate};
