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
        let (Ok(mut term), Ok(mut interrupt)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
        else {
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

    /// A cancel of its own for one part of the work (an entry of a task array): it fires
    /// when this one does (a signal ends everything), and may also be stopped alone (the
    /// memory watchdog ends that entry, not the ones after it). Must be called inside the
    /// runtime; the forwarding task ends with the child.
    pub fn child(&self) -> Cancel {
        let child = Cancel::never();
        let (parent, forward_to) = (self.clone(), child.clone());
        let mut child_stopped = child.reason.clone();
        tokio::spawn(async move {
            tokio::select! {
                why = parent.cancelled() => forward_to.stop(why),
                // The child was stopped on its own, or dropped: nothing left to forward.
                _ = child_stopped.wait_for(Option::is_some) => {}
            }
        });
        child
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_child_stops_alone_but_a_parents_stop_reaches_it() {
        let parent = Cancel::never();
        let entry = parent.child();
        entry.stop(Stop::MemoryBudget("entry 1 over".into()));
        assert_eq!(parent.reason(), None, "the entry's stop ends the entry only");
        let next = parent.child();
        assert_eq!(next.reason(), None, "the next entry starts clean");
        parent.stop(Stop::Signal("SIGTERM"));
        let reached = tokio::time::timeout(Duration::from_secs(2), next.cancelled()).await.expect("forwarded");
        assert_eq!(reached, Stop::Signal("SIGTERM"));
        assert_eq!(entry.reason(), Some(Stop::MemoryBudget("entry 1 over".into())), "the first reason wins");
    }
}
