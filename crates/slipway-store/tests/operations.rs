//! Operation lifecycle in the store: queue, start (compare-and-set), finish.

#![allow(clippy::unwrap_used)]

use serde_json::Map;
use slipway_core::manifest::parse_manifest;
use slipway_core::{ErrorBody, OperationKind, OperationStatus, ProvisioningState};
use slipway_store::{DefinitionRecord, EnvironmentRecord, NewOperation, Project, Store};

fn new_op(project: &str, name: &str) -> NewOperation {
    let manifest = parse_manifest("name: Def\ntemplatePath: main.tf\n")
        .unwrap()
        .manifest;
    NewOperation {
        environment: EnvironmentRecord {
            id: uuid::Uuid::new_v4().to_string(),
            project: project.into(),
            name: name.into(),
            owner: "u".into(),
            environment_type: "Dev".into(),
            catalog: "c".into(),
            definition: "Def".into(),
            parameters: Map::new(),
            provisioning_state: ProvisioningState::Creating,
            error: None,
            expiration_date: None,
            delete_at: None,
            action_modified_by: None,
            action_modified_at: None,
        },
        environment_exists: false,
        kind: OperationKind::Deploy,
        created_by: "u".into(),
        definition: DefinitionRecord {
            catalog: "c".into(),
            name: "Def".into(),
            folder: "Def".into(),
            manifest,
            content_digest: "d".into(),
            commit: None,
            validation_status: "Succeeded".into(),
            error_details: Vec::new(),
            warnings: Vec::new(),
            source_tree: None,
        },
        runner_image: "img".into(),
        force: false,
    }
}

#[tokio::test]
async fn concurrent_finishes_are_all_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    store
        .put_project(&Project {
            name: "p".into(),
            description: None,
            location: "l".into(),
        })
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..8 {
        let id = store
            .enqueue_operation(&new_op("p", &format!("env-{i}")))
            .await
            .unwrap();
        assert!(store.start_operation(&id, "hash").await.unwrap());
        assert!(
            !store.start_operation(&id, "hash").await.unwrap(),
            "start is compare-and-set"
        );
        ids.push(id);
    }
    let results = futures_join(&store, &ids).await;
    assert!(results.iter().all(|r| *r), "{results:?}");
    for (i, id) in ids.iter().enumerate() {
        let op = store.get_operation(id).await.unwrap().unwrap();
        let env = store
            .get_environment("p", &format!("env-{i}"))
            .await
            .unwrap()
            .unwrap();
        if i % 2 == 0 {
            assert_eq!(op.status, OperationStatus::Succeeded);
            assert_eq!(env.provisioning_state, ProvisioningState::Succeeded);
        } else {
            assert_eq!(op.status, OperationStatus::Failed);
            assert_eq!(env.error.unwrap().code, "DeploymentError");
        }
        assert!(
            !store
                .finish_operation(id, OperationStatus::Failed, None)
                .await
                .unwrap(),
            "ends once"
        );
    }
}

async fn futures_join(store: &Store, ids: &[String]) -> Vec<bool> {
    let mut handles = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let (store, id) = (store.clone(), id.clone());
        handles.push(tokio::spawn(async move {
            let (status, err) = if i % 2 == 0 {
                (OperationStatus::Succeeded, None)
            } else {
                (
                    OperationStatus::Failed,
                    Some(ErrorBody::new("DeploymentError", "boom")),
                )
            };
            store
                .finish_operation(&id, status, err.as_ref())
                .await
                .unwrap()
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
