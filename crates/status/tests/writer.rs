//! The PostgreSQL writer against a real server (started by the shared harness with the
//! predecessor's Django-made table and a SELECT/UPDATE-only role): the guard that keeps
//! a completed row completed, a task without a row, and TLS.

// A test's unwrap is its failure report.
#![allow(clippy::unwrap_used)]

#[path = "../../../tests/support/postgres.rs"]
mod postgres;

use std::time::Duration;

use br_status::{DbSettings, Delivery, PgStatus, Stage, Status, StatusSink, StatusUpdate, TaskRow};
use postgres::PgServer;
use serde_json::json;

fn settings(server: &PgServer, extra: &[(&str, &str)]) -> DbSettings {
    let mut vars = server.env();
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    DbSettings::from_env(&|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        .expect("settings")
        .expect("a database")
}

fn update(task_id: &str, status: Status, stage: Stage, progress: u8) -> StatusUpdate {
    StatusUpdate {
        task_id: Some(task_id.into()),
        status,
        progress,
        stage,
        message: format!("{stage:?}"),
        result: (status == Status::Completed).then(|| json!({"output_path": "out/x.mp4"})),
        error: None,
    }
}

async fn write_all(settings: &DbSettings, updates: &[StatusUpdate], patience: Duration) -> Delivery {
    let mut status = PgStatus::start(settings.clone());
    for change in updates {
        status.report(change);
    }
    status.finish(patience).await
}

#[tokio::test]
async fn a_completed_row_is_never_moved_back() {
    let server = PgServer::start();
    server.insert_task("t-guard", "started");
    let db = settings(&server, &[]);
    assert_eq!(
        db.task_row("t-guard", Duration::from_secs(5)).await.unwrap(),
        TaskRow::Found { status: "started".into(), message: "queued".into() }
    );
    let first =
        [update("t-guard", Status::Running, Stage::Encode, 50), update("t-guard", Status::Completed, Stage::Done, 100)];
    assert!(matches!(write_all(&db, &first, Duration::from_secs(10)).await, Delivery::Written));
    let done = server.task("t-guard").unwrap();
    assert_eq!((done.status.as_str(), done.progress), ("completed", 100));
    let history = server.history("t-guard").len();

    // A late write, then a whole retried run: the row stays as it was.
    let late =
        [update("t-guard", Status::Running, Stage::Upload, 96), update("t-guard", Status::Failed, Stage::Upload, 96)];
    assert!(matches!(write_all(&db, &late, Duration::from_secs(10)).await, Delivery::RowCompleted));
    assert_eq!(server.task("t-guard").unwrap(), done);
    assert_eq!(server.history("t-guard").len(), history);
}

#[tokio::test]
async fn a_failed_row_can_be_retried_and_a_missing_row_is_said() {
    let server = PgServer::start();
    server.insert_task("t-retry", "failed");
    let db = settings(&server, &[]);
    let run = [
        update("t-retry", Status::Running, Stage::Validate, 0),
        update("t-retry", Status::Completed, Stage::Done, 100),
    ];
    assert!(matches!(write_all(&db, &run, Duration::from_secs(10)).await, Delivery::Written));
    let row = server.task("t-retry").unwrap();
    assert_eq!((row.status.as_str(), row.error), ("completed", None));
    assert_eq!(row.result, Some(json!({"output_path": "out/x.mp4"})));

    assert_eq!(db.task_row("t-nobody", Duration::from_secs(5)).await.unwrap(), TaskRow::Missing);
    let orphan = [update("t-nobody", Status::Running, Stage::Validate, 0)];
    assert!(matches!(write_all(&db, &orphan, Duration::from_secs(10)).await, Delivery::RowMissing));
}

/// The runner role may only connect over TLS: `require` gets through, `disable` does not
/// (and says what it could not write).
#[tokio::test]
async fn sslmode_require_connects_over_tls() {
    let server = PgServer::start_with_tls();
    let hba = server.data_dir().join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("hostnossl all runner all reject\n{rules}")).unwrap();
    server.execute("SELECT pg_reload_conf()");
    server.insert_task("t-tls", "started");

    let tls = settings(&server, &[("DB_SSLMODE", "require")]);
    let done = [update("t-tls", Status::Completed, Stage::Done, 100)];
    assert!(matches!(write_all(&tls, &done, Duration::from_secs(10)).await, Delivery::Written));
    assert_eq!(server.task("t-tls").unwrap().status, "completed");

    server.insert_task("t-plain", "started");
    let plain = settings(&server, &[("DB_SSLMODE", "disable")]);
    match write_all(&plain, &[update("t-plain", Status::Completed, Stage::Done, 100)], Duration::from_secs(2)).await {
        Delivery::Unrecorded { update, last_error } => {
            assert_eq!(update.status, Status::Completed);
            assert!(last_error.contains("pg_hba.conf"), "{last_error}");
        }
        other => panic!("a plain connection got through: {other:?}"),
    }
    assert_eq!(server.task("t-plain").unwrap().status, "started");
}

/// `verify-full` checks the chain and the host name: with the server's CA it connects;
/// with the system's roots (which do not know that CA) it refuses to.
#[tokio::test]
async fn sslmode_verify_full_checks_the_certificate() {
    let server = PgServer::start_with_tls();
    server.insert_task("t-verified", "started");
    let ca = server.ca_cert();
    let verified = settings(&server, &[("DB_SSLMODE", "verify-full"), ("DB_SSLROOTCERT", ca.to_str().unwrap())]);
    let done = [update("t-verified", Status::Completed, Stage::Done, 100)];
    assert!(matches!(write_all(&verified, &done, Duration::from_secs(10)).await, Delivery::Written));
    assert_eq!(server.task("t-verified").unwrap().status, "completed");

    server.insert_task("t-unknown-ca", "started");
    let system_roots = settings(&server, &[("DB_SSLMODE", "verify-full")]);
    match write_all(
        &system_roots,
        &[update("t-unknown-ca", Status::Completed, Stage::Done, 100)],
        Duration::from_secs(2),
    )
    .await
    {
        Delivery::Unrecorded { last_error, .. } => assert!(last_error.contains("certificate"), "{last_error}"),
        other => panic!("an unknown CA was trusted: {other:?}"),
    }
    assert_eq!(server.task("t-unknown-ca").unwrap().status, "started");
}
