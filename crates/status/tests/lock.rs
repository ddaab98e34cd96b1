//! The task lock against a real server (the shared harness): one holder per task, the
//! holder named to the one that finds it taken, a key held by someone else never read
//! as "taken", a dropped session retaken, and a release that frees the task at once.

// A test's unwrap is its failure report.
#![allow(clippy::unwrap_used)]

#[path = "../../../tests/support/postgres.rs"]
mod postgres;

use std::time::Duration;

use br_status::lock::{lock_key, KEY_SQL};
use br_status::{DbSettings, LockState, TaskLock};
use postgres::PgServer;

const PATIENCE: Duration = Duration::from_secs(10);

fn settings(server: &PgServer) -> DbSettings {
    let vars = server.env();
    DbSettings::from_env(&|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        .expect("settings")
        .expect("a database")
}

/// A plain session of the runner role, named `application_name`.
async fn session(server: &PgServer, application_name: &str) -> tokio_postgres::Client {
    let url = format!("{}?application_name={application_name}", server.database_url());
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

async fn advisory_locks(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted", &[])
        .await
        .expect("pg_locks")
        .get(0)
}

#[tokio::test]
async fn one_holder_per_task_and_the_other_is_told_who() {
    let server = PgServer::start();
    let db = settings(&server);
    let observer = session(&server, "observer").await;
    let key: i64 = observer.query_one(&format!("SELECT {KEY_SQL}"), &[&"task-7"]).await.expect("key in SQL").get(0);
    assert_eq!(key, lock_key("task-7"), "the documented SQL and the job disagree on the key");

    let mut first = TaskLock::start(db.clone(), "task-7", "exec-a");
    assert_eq!(first.settled(PATIENCE).await, LockState::Held);
    // The query docs/BACKEND.md gives operators.
    let documented = format!(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
         WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND (l.classid::bigint << 32 | l.objid::bigint) = {KEY_SQL}"
    );
    let named: Vec<String> =
        observer.query(&documented, &[&"task-7"]).await.expect("documented query").iter().map(|r| r.get(0)).collect();
    assert_eq!(named, ["br task-7 exec-a"]);
    let mut second = TaskLock::start(db.clone(), "task-7", "exec-b");
    match second.settled(PATIENCE).await {
        LockState::HeldElsewhere(holder) => {
            assert_eq!(holder.who(), "exec-a", "{holder:?}");
            assert!(holder.on_task("task-7"));
            assert!(!holder.backend_start.is_empty(), "{holder:?}");
        }
        other => panic!("the task was not seen as taken: {other:?}"),
    }
    // Another task is not held up.
    let mut other = TaskLock::start(db.clone(), "task-8", "exec-b");
    assert_eq!(other.settled(PATIENCE).await, LockState::Held);

    first.release().await;
    let mut third = TaskLock::start(db.clone(), "task-7", "exec-c");
    assert_eq!(third.settled(PATIENCE).await, LockState::Held, "a released task is free at once");
    drop(second);
    drop(other);
    drop(third);
    // Dropping ends the sessions, and with them the locks.
    let started = std::time::Instant::now();
    while advisory_locks(&observer).await > 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "locks outlived their TaskLock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Another program (or another task whose id hashes alike) holding the key is not this
/// task's execution: the job goes on, without the lock.
#[tokio::test]
async fn a_key_held_by_a_session_not_on_the_task_is_not_a_reason_to_stop() {
    let server = PgServer::start();
    let db = settings(&server);
    let foreign = session(&server, "someone-else").await;
    foreign.query_one("SELECT pg_advisory_lock($1)", &[&lock_key("task-9")]).await.expect("lock");
    let mut lock = TaskLock::start(db, "task-9", "exec-a");
    match lock.settled(PATIENCE).await {
        LockState::KeyTaken(Some(holder)) => assert_eq!(holder.application_name, "someone-else"),
        other => panic!("{other:?}"),
    }
}

/// The lock's session is killed mid-job (as a dropped connection would end it): the lock
/// is taken again; had another execution taken the task meanwhile, that would be said.
#[tokio::test]
async fn a_dropped_session_is_retaken() {
    let server = PgServer::start();
    let db = settings(&server);
    let observer = session(&server, "observer").await;
    let mut lock = TaskLock::start(db.clone(), "task-10", "exec-a");
    assert_eq!(lock.settled(PATIENCE).await, LockState::Held);
    let pid_of = |rows: Vec<tokio_postgres::Row>| rows.first().map(|r| r.get::<_, i32>(0));
    let holder_pid = || async {
        pid_of(
            observer
                .query("SELECT pid FROM pg_stat_activity WHERE application_name = 'br task-10 exec-a'", &[])
                .await
                .expect("query"),
        )
    };
    let before = holder_pid().await.expect("the lock's session");
    server.execute(&format!("SELECT pg_terminate_backend({before})"));
    let started = std::time::Instant::now();
    loop {
        let held: i64 = observer
            .query_one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted", &[])
            .await
            .expect("q")
            .get(0);
        if held == 1 && holder_pid().await.is_some_and(|pid| pid != before) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the lock was not taken again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lock.release().await;
    assert_eq!(advisory_locks(&observer).await, 0);
}
