//! Image task runs in the store: log retention.

#![allow(clippy::unwrap_used)]

use serde_json::json;
use slipway_store::Store;

#[tokio::test]
async fn logs_of_runs_finished_before_the_cutoff_are_deleted_and_the_runs_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).await.unwrap();
    let old = store
        .create_task_run(Some("t"), "AutoRun", &json!({}), &json!({"type": "manual"}))
        .await
        .unwrap();
    let running = store
        .create_task_run(Some("t"), "AutoRun", &json!({}), &json!({"type": "manual"}))
        .await
        .unwrap();
    for r in [&old, &running] {
        store
            .blobs
            .append(&Store::task_run_log_key(&r.run_id), b"a log line\n")
            .await
            .unwrap();
    }
    store
        .finish_task_run(
            &old.run_id,
            slipway_core::tasks::TaskRunStatus::Succeeded,
            None,
            &json!([]),
            &json!([]),
        )
        .await
        .unwrap();

    // A cutoff before the run ended keeps everything.
    assert!(store
        .expire_task_run_logs("2000-01-01T00:00:00.000Z")
        .await
        .unwrap()
        .is_empty());
    // A cutoff after it deletes the finished run's log only, once.
    let later = (chrono::Utc::now() + chrono::Duration::days(31))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    assert_eq!(
        store.expire_task_run_logs(&later).await.unwrap(),
        vec![old.run_id.clone()]
    );
    assert!(store.expire_task_run_logs(&later).await.unwrap().is_empty());
    let key = Store::task_run_log_key(&old.run_id);
    assert_eq!(store.blobs.get(&key).await.unwrap(), None);
    assert!(
        store
            .get_task_run(&old.run_id)
            .await
            .unwrap()
            .unwrap()
            .log_expired
    );
    let kept = Store::task_run_log_key(&running.run_id);
    assert!(store.blobs.get(&kept).await.unwrap().is_some());
    assert!(
        !store
            .get_task_run(&running.run_id)
            .await
            .unwrap()
            .unwrap()
            .log_expired
    );
}
