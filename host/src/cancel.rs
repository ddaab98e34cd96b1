//! Cancellation: SIGTERM (Cloud Run's timeout or a cancelled execution) or SIGINT.
//! Every stage of a job watches it; the FFmpeg runner kills and reaps its child
//! before the work folder is removed.

use tokio::sync::watch;

#[derive(Clone)]
pub struct Cancel {
    reason: watch::Receiver<Option<String>>,
}

impl Cancel {
    /// Fires on SIGTERM or SIGINT. Must be called inside the runtime.
    pub fn on_signals() -> Cancel {
        let (sender, reason) = watch::channel(None);
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut interrupt)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
                tracing::error!("cannot listen for SIGTERM/SIGINT: the job cannot be stopped cleanly");
                std::future::pending::<()>().await;
                return;
            };
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            tracing::warn!(signal = name, "stopping");
            sender.send_replace(Some(format!("{name} received")));
            // Keep the sender so that waiting for the reason never sees a closed channel.
            std::future::pending::<()>().await;
        });
        Cancel { reason }
    }

    /// Never fires (tests, benchmarks).
    #[allow(dead_code)]
    pub fn never() -> Cancel {
        let (sender, reason) = watch::channel(None);
        std::mem::forget(sender);
        Cancel { reason }
    }

    /// Why the job was cancelled, once it was.
    pub fn reason(&self) -> Option<String> {
        self.reason.borrow().clone()
    }

    /// Resolves when the job is cancelled, with the reason.
    pub async fn cancelled(&self) -> String {
        let mut reason = self.reason.clone();
        loop {
            if let Some(reason) = reason.borrow_and_update().clone() {
                return reason;
            }
            if reason.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
