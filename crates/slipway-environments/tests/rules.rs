//! The environment service's rules over a real store (SQLite in a temporary
//! folder), with no HTTP and no container engine: the scheduler is a
//! recording double ([`RecordingQueueDouble`]).

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};
use slipway_core::manifest::parse_manifest;
use slipway_core::{OperationKind, OperationStatus, ProvisioningState};
use slipway_environments::{
    DeployRequest, EnvironmentError, EnvironmentService, ErrorKind, OperationQueue, Queued,
    ACTION_USER,
};
use slipway_runner::RunnerImages;
use slipway_store::{
    CatalogSource, CatalogSpec, DefinitionRecord, PetLimits, Project, ProjectEnvironmentType, Store,
};

/// Test double of the scheduler: records what the service asked of it.
#[derive(Debug, Default)]
struct RecordingQueueDouble {
    wakes: Mutex<usize>,
    canceled: Mutex<Vec<String>>,
}

impl OperationQueue for RecordingQueueDouble {
    fn wake(&self) {
        *self.wakes.lock().unwrap() += 1;
    }
    fn cancel_running(&self, operation_id: &str) {
        self.canceled.lock().unwrap().push(operation_id.to_string());
    }
}

struct World {
    _dir: tempfile::TempDir,
    store: Store,
    queue: Arc<RecordingQueueDouble>,
    service: Arc<EnvironmentService>,
}

const MANIFEST: &str = "name: App\nrunner: Terraform\ntemplatePath: main.tf\nparameters:\n  - id: size\n    name: Size\n    type: string\n    allowed: [small, large]\n    default: small\n";

fn definition(name: &str, manifest: &str) -> DefinitionRecord {
    DefinitionRecord {
        catalog: "cat".into(),
        name: name.into(),
        folder: name.into(),
        manifest: parse_manifest(manifest).unwrap().manifest,
        content_digest: "d".into(),
        commit: None,
        validation_status: "Succeeded".into(),
        error_details: Vec::new(),
        warnings: Vec::new(),
        source_tree: None,
    }
}

/// Project `demo`, type `Dev` enabled with `limits`, catalog `cat` with `defs`.
async fn world(limits: PetLimits, defs: &[DefinitionRecord]) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    store
        .put_project(&Project {
            name: "demo".into(),
            description: None,
            location: "local".into(),
        })
        .await
        .unwrap();
    store.put_environment_type("Dev", None).await.unwrap();
    store
        .put_project_environment_type(&pet("Enabled", limits))
        .await
        .unwrap();
    sync_catalog(&store, defs).await;
    let queue = Arc::new(RecordingQueueDouble::default());
    let service = Arc::new(EnvironmentService::new(
        store.clone(),
        RunnerImages::default(),
        queue.clone(),
    ));
    World {
        _dir: dir,
        store,
        queue,
        service,
    }
}

impl World {
    /// Deploys `name` for `owner` with no parameters; panics if refused.
    async fn deploy(&self, owner: &str, name: &str) -> Queued {
        self.service
            .deploy(request(owner, name, json!({})))
            .await
            .unwrap()
    }
}

fn pet(status: &str, limits: PetLimits) -> ProjectEnvironmentType {
    ProjectEnvironmentType {
        project: "demo".into(),
        name: "Dev".into(),
        deployment_target_id: "/subscriptions/s".into(),
        status: status.into(),
        display_name: None,
        creator_roles: Vec::new(),
        azure_user_roles: Default::default(),
        deployment_identity: None,
        limits,
        runner_policy: Default::default(),
    }
}

async fn sync_catalog(store: &Store, defs: &[DefinitionRecord]) {
    let source = CatalogSource {
        kind: "git".into(),
        uri: "https://example.invalid/c.git".into(),
        branch: None,
        path: None,
    };
    store
        .put_catalog(
            "cat",
            &CatalogSpec {
                source: source.clone(),
                project: None,
                sync_type: "Manual".into(),
                secret: None,
            },
        )
        .await
        .unwrap();
    store
        .commit_catalog_sync("cat", "c1", &source, defs, &json!({}), &json!([]))
        .await
        .unwrap();
}

fn request(owner: &str, name: &str, parameters: Value) -> DeployRequest {
    DeployRequest {
        project: "demo".into(),
        name: name.into(),
        owner: owner.into(),
        requested_by: owner.into(),
        environment_type: "Dev".into(),
        catalog: "cat".into(),
        definition: "App".into(),
        parameters: parameters.as_object().cloned().unwrap_or_else(Map::new),
        expiration_date: None,
    }
}

#[tokio::test]
async fn deploy_stores_the_environment_queues_its_operation_and_wakes_the_scheduler() {
    let w = world(PetLimits::default(), &[definition("App", MANIFEST)]).await;
    let q = w.deploy("ann", "web").await;
    assert_eq!(
        q.environment.provisioning_state,
        ProvisioningState::Creating
    );
    assert_eq!(q.environment.parameters["size"], "small", "the default");
    assert_eq!(q.operation.kind, OperationKind::Deploy);
    assert_eq!(q.operation.status, OperationStatus::NotStarted);
    assert_eq!(q.operation.runner_image, RunnerImages::default().terraform);
    assert_eq!(*w.queue.wakes.lock().unwrap(), 1);

    // A redeploy keeps the id and changes the parameters.
    let again = w
        .service
        .deploy(request("ann", "web", json!({"size": "large"})))
        .await
        .unwrap();
    assert_eq!(again.environment.id, q.environment.id);
    assert_eq!(again.environment.parameters["size"], "large");
}

#[tokio::test]
async fn names_belong_to_their_owner_and_creation_properties_do_not_change() {
    let w = world(
        PetLimits::default(),
        &[
            definition("App", MANIFEST),
            definition("Other", "name: Other\ntemplatePath: t\n"),
        ],
    )
    .await;
    w.deploy("ann", "web").await;
    let e = w
        .service
        .deploy(request("bob", "web", json!({})))
        .await
        .unwrap_err();
    assert!(matches!(e, EnvironmentError::NameInUse { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::Conflict);
    let mut other = request("ann", "web", json!({}));
    other.definition = "Other".into();
    let e = w.service.deploy(other).await.unwrap_err();
    assert_eq!(e.code(), "PropertyChangeNotAllowed");
    assert_eq!(
        e.to_string(),
        "property 'environmentDefinitionName' can only be set at creation: environment 'web' has 'App', request has 'Other'"
    );
}

#[tokio::test]
async fn the_type_must_be_enabled_and_its_per_user_limit_holds_for_new_environments_only() {
    let limits = PetLimits {
        max_environments_per_user: Some(1),
        ..Default::default()
    };
    let w = world(limits.clone(), &[definition("App", MANIFEST)]).await;
    w.deploy("ann", "one").await;
    let e = w
        .service
        .deploy(request("ann", "two", json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "EnvironmentLimitExceeded", "{e}");
    // Another user has their own quota; a redeploy is not a new environment.
    w.deploy("bob", "two").await;
    w.deploy("ann", "one").await;

    w.store
        .put_project_environment_type(&pet("Disabled", limits))
        .await
        .unwrap();
    let e = w
        .service
        .deploy(request("cy", "three", json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "EnvironmentTypeDisabled", "{e}");
    let mut prod = request("cy", "three", json!({}));
    prod.environment_type = "Prod".into();
    let e = w.service.deploy(prod).await.unwrap_err();
    assert_eq!(e.code(), "EnvironmentTypeNotFound", "{e}");
    assert_eq!(
        w.store
            .count_environments("demo", "Dev", None)
            .await
            .unwrap(),
        2,
        "nothing stored for refused requests"
    );
}

#[tokio::test]
async fn parameters_and_definitions_are_checked_before_anything_is_stored() {
    let w = world(PetLimits::default(), &[definition("App", MANIFEST)]).await;
    let e = w
        .service
        .deploy(request("ann", "web", json!({"size": "huge", "extra": 1})))
        .await
        .unwrap_err();
    let EnvironmentError::Parameters(problems) = &e else {
        panic!("{e}")
    };
    assert_eq!(problems.len(), 2, "{e}");
    assert_eq!(e.kind(), ErrorKind::Invalid);
    let mut missing = request("ann", "web", json!({}));
    missing.definition = "Nope".into();
    let e = w.service.deploy(missing).await.unwrap_err();
    assert_eq!(e.code(), "EnvironmentDefinitionNotFound", "{e}");
    assert!(w
        .store
        .get_environment("demo", "web")
        .await
        .unwrap()
        .is_none());
    assert_eq!(*w.queue.wakes.lock().unwrap(), 0);
}

#[tokio::test]
async fn delete_runs_the_last_definition_when_the_catalog_lost_it_and_force_removes_at_once() {
    let w = world(PetLimits::default(), &[definition("App", MANIFEST)]).await;
    let web = w.deploy("ann", "web").await;
    let never = w.deploy("ann", "never").await;
    // The definition leaves the catalog.
    sync_catalog(&w.store, &[]).await;

    let del = w
        .service
        .delete(&web.environment, "ann", false)
        .await
        .unwrap()
        .expect("a delete operation");
    assert_eq!(del.kind, OperationKind::Delete);
    assert_eq!(
        del.definition.name, "App",
        "the definition its deploy ran with"
    );

    // Force: the record goes at once, nothing is queued.
    let wakes = *w.queue.wakes.lock().unwrap();
    assert!(w
        .service
        .delete(&never.environment, "ann", true)
        .await
        .unwrap()
        .is_none());
    assert!(w
        .store
        .get_environment("demo", "never")
        .await
        .unwrap()
        .is_none());
    assert_eq!(*w.queue.wakes.lock().unwrap(), wakes);
}

#[tokio::test]
async fn cancel_ends_a_queued_operation_stops_a_running_one_and_refuses_an_ended_one() {
    let w = world(PetLimits::default(), &[definition("App", MANIFEST)]).await;
    let q = w.deploy("ann", "web").await;
    let canceled = w.service.cancel(&q.operation, "ann").await.unwrap();
    assert_eq!(canceled.status, OperationStatus::Canceled);
    let e = w.service.cancel(&canceled, "ann").await.unwrap_err();
    assert_eq!(e.code(), "OperationNotCancelable");
    assert_eq!(e.kind(), ErrorKind::Conflict);

    let q = w.deploy("ann", "web").await;
    assert!(w.store.start_operation(&q.operation.id, "h").await.unwrap());
    let running = w
        .store
        .get_operation(&q.operation.id)
        .await
        .unwrap()
        .unwrap();
    w.service.cancel(&running, "ann").await.unwrap();
    assert_eq!(
        *w.queue.canceled.lock().unwrap(),
        vec![q.operation.id.clone()]
    );
}

#[tokio::test]
async fn a_due_expiration_queues_a_delete_by_the_scheduler_and_skip_clears_the_action() {
    let w = world(PetLimits::default(), &[definition("App", MANIFEST)]).await;
    let a = w.deploy("ann", "a").await;
    let b = w.deploy("ann", "b").await;
    let past = "2020-01-01T00:00:00.000Z";
    let later = "2999-01-01T00:00:00.000Z";
    w.service
        .set_expiration(&a.environment, Some(past), "ann")
        .await
        .unwrap();
    let b_env = w
        .service
        .set_expiration(&b.environment, Some(later), "ann")
        .await
        .unwrap();
    let e = w
        .service
        .reschedule_action(&b_env, "a-Delete", None, "ann")
        .await
        .unwrap_err();
    assert_eq!(e.code(), "ActionNotFound", "{e}");

    let next = w.service.run_due_deletes().await.unwrap();
    assert!(next.is_some_and(|d| d.as_secs() > 3600), "{next:?}");
    let ops = w.store.list_operations(&a.environment.id).await.unwrap();
    assert_eq!(ops[0].kind, OperationKind::Delete);
    assert_eq!(ops[0].created_by, ACTION_USER);
    assert!(
        w.store
            .list_operations(&b.environment.id)
            .await
            .unwrap()
            .len()
            == 1,
        "b is not due"
    );

    w.service
        .reschedule_action(&b_env, "b-Delete", None, "ann")
        .await
        .unwrap();
    let left = w.service.run_due_deletes().await.unwrap();
    assert_eq!(left, None, "a's delete is queued, b's action skipped");
}

#[tokio::test]
async fn a_project_environment_type_is_checked_before_it_is_stored_and_replaces_its_users() {
    use slipway_core::access::{Role, Scope};
    use slipway_wire::admin::ProjectEnvironmentTypeRequest;
    let w = world(PetLimits::default(), &[]).await;
    let put = |v: Value| {
        let request: ProjectEnvironmentTypeRequest = serde_json::from_value(v).unwrap();
        let service = w.service.clone();
        async move {
            service
                .put_project_environment_type("demo", "Dev", request)
                .await
        }
    };
    // Every refusal names the property and leaves the stored type alone.
    for (body, code, says) in [
        (json!({"status": "On"}), "InvalidStatus", "'On'"),
        (
            json!({"limits": {"maxEnvironmentsPerUser": 0}}),
            "InvalidProjectEnvironmentType",
            "limits.maxEnvironmentsPerUser",
        ),
        (
            json!({"userRoleAssignments": {"alice": {"roles": {"Project Admin": {}}}}}),
            "InvalidProjectEnvironmentType",
            "userRoleAssignments.alice.roles",
        ),
        (
            json!({"creatorRoleAssignment": {"roles": {"Owner": {}}}}),
            "InvalidProjectEnvironmentType",
            "'Owner'",
        ),
        (
            json!({"deploymentIdentity": "nope"}),
            "InvalidProjectEnvironmentType",
            "'nope', which does not exist",
        ),
        (
            json!({"runnerPolicy": {"maxPids": 3}}),
            "InvalidProjectEnvironmentType",
            "runnerPolicy.maxPids",
        ),
        // Azure roles (GUIDs) go to Entra object ids only.
        (
            json!({"userRoleAssignments": {"alice": {"roles": {"acdd72a7-3385-48ef-bd42-f606fba81ae7": {}}}}}),
            "InvalidProjectEnvironmentType",
            "expected an Entra object id",
        ),
    ] {
        let e = put(body.clone()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid, "{body}");
        assert_eq!(e.code(), code, "{body}");
        assert!(e.to_string().contains(says), "{body}: {e}");
    }
    assert_eq!(
        w.store
            .get_project_environment_type("demo", "Dev")
            .await
            .unwrap()
            .unwrap()
            .status,
        "Enabled"
    );
    let e = w
        .service
        .put_project_environment_type("demo", "Nope", Default::default())
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.code()),
        (ErrorKind::NotFound, "EnvironmentTypeNotFound")
    );

    let pet = put(json!({"status": "Disabled", "userRoleAssignments": {"alice": {"roles": {"Deployment Environments User": {}}}}}))
        .await
        .unwrap();
    assert_eq!(pet.status, "Disabled");
    assert_eq!(
        pet.deployment_target_id,
        "/subscriptions/00000000-0000-0000-0000-000000000000"
    );
    let scope = Scope::EnvironmentType("demo".into(), "Dev".into());
    let users = w.store.assignments_at(&scope).await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(
        (users[0].principal_id.as_str(), users[0].role.as_str()),
        ("alice", Role::User.as_str())
    );
    put(json!({"userRoleAssignments": {}})).await.unwrap();
    assert!(w.store.assignments_at(&scope).await.unwrap().is_empty());
}

#[tokio::test]
async fn roles_are_assigned_only_at_their_scopes_and_existing_targets() {
    use slipway_core::access::{Role, Scope};
    let w = world(PetLimits::default(), &[]).await;
    let project = Scope::Project("demo".into());
    for (role, scope) in [
        (Role::DevCenterAdmin, project.clone()),
        (Role::ProjectAdmin, Scope::DevCenter),
        (Role::User, Scope::DevCenter),
    ] {
        let e = w
            .service
            .assign_role("bob", role, &scope)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "InvalidRoleAssignment", "{role} at {scope}");
    }
    let e = w
        .service
        .assign_role("  ", Role::User, &project)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("principalId"), "{e}");
    let e = w
        .service
        .assign_role("bob", Role::User, &Scope::Project("gone".into()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "ProjectNotFound");
    let e = w
        .service
        .assign_role(
            "bob",
            Role::Reader,
            &Scope::EnvironmentType("demo".into(), "Prod".into()),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "EnvironmentTypeNotFound");
    let a = w
        .service
        .assign_role("bob", Role::ProjectAdmin, &project)
        .await
        .unwrap();
    assert_eq!(
        (a.principal_id.as_str(), a.role.as_str()),
        ("bob", Role::ProjectAdmin.as_str())
    );
}
