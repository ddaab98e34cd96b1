//! Cancellation: SIGTERM (Cloud Run's timeout or a cancelled execution), SIGINT, or
//! the memory watchdog. Every stage of a job watches it; the FFmpeg runner kills and
//! reaps its child before the work folder is removed.

use std::sync::Arc;

use tokio::sync::watch;

/// Why the job is stopped. The first reason wins.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    /// `SIGTERM` or `SIGINT`.
    Signal(&'static str),
    /// The watchdog saw processes and files near the job's memory budget.
    MemoryBudget(String),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Signal(name) => write!(f, "{name} received"),
            Stop::MemoryBudget(message) => f.write_str(message),
        }
    }
}

#[derive(Clone)]
pub struct Cancel {
    sender: Arc<watch::Sender<Option<Stop>>>,
    reason: watch::Receiver<Option<Stop>>,
}

impl Cancel {
    /// Fires on SIGTERM or SIGINT, or when [`Cancel::stop`] is called. Must be called
    /// inside the runtime.
    pub fn on_signals() -> Cancel {
        use tokio::signal::unix::{signal, SignalKind};
        let cancel = Cancel::never();
        // Registered here, not in the task: the task first runs when the caller awaits,
        // and a SIGTERM before that would otherwise end the process uncleanly.
        let (Ok(mut term), Ok(mut interrupt)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            tracing::error!("cannot listen for SIGTERM/SIGINT: the job cannot be stopped cleanly");
            return cancel;
        };
        let sender = cancel.clone();
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            tracing::warn!(signal = name, "stopping");
            sender.stop(Stop::Signal(name));
        });
        cancel
    }

    /// Fires only when [`Cancel::stop`] is called.
    pub fn never() -> Cancel {
        let (sender, reason) = watch::channel(None);
        Cancel { sender: Arc::new(sender), reason }
    }

    /// Stops the job, unless it is stopped already.
    pub fn stop(&self, why: Stop) {
        self.sender.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(why);
            true
        });
    }

    /// Why the job was cancelled, once it was.
    pub fn reason(&self) -> Option<Stop> {
        self.reason.borrow().clone()
    }

    /// Resolves when the job is cancelled, with the reason.
    pub async fn cancelled(&self) -> Stop {
        let mut reason = self.reason.clone();
        loop {
            if let Some(reason) = reason.borrow_and_update().clone() {
                return reason;
            }
            // The sender lives as long as any clone of this Cancel: never closed here.
            if reason.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
