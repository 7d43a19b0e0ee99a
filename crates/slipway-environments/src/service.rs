//! The environment service: ADE's rules for environments, between the API
//! (which parses and authorizes) and the scheduler (which runs the queued
//! operations).

use std::sync::Arc;

use serde_json::{Map, Value};
use slipway_core::echo::truncate;
use slipway_core::{resolve_parameters, OperationKind, OperationStatus, ProvisioningState};
use slipway_runner::RunnerImages;
use slipway_store::{
    Catalog, DefinitionRecord, EnvironmentRecord, NewOperation, OperationRecord, Store,
};
use tokio::sync::Notify;

use crate::error::EnvironmentError;
use crate::queue::OperationQueue;

/// Result of the service's calls.
pub type Result<T, E = EnvironmentError> = std::result::Result<T, E>;

/// The data-plane path of an environment:
/// `/projects/{project}/users/{owner}/environments/{name}` (ADE devcenter
/// data plane).
pub fn environment_path(env: &EnvironmentRecord) -> String {
    format!(
        "/projects/{}/users/{}/environments/{}",
        env.project, env.owner, env.name
    )
}

/// Name of an environment's scheduled delete action (ADE: `<env>-Delete`).
pub fn delete_action_name(env: &EnvironmentRecord) -> String {
    format!("{}-Delete", env.name)
}

/// A create or redeploy, as the API parsed and authorized it.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    /// Project (it exists: the API checked it while authorizing).
    pub project: String,
    /// Environment name (a valid resource name).
    pub name: String,
    /// The owner: the caller, or the user a Project Admin acts for.
    pub owner: String,
    /// Who asked (recorded on the operation).
    pub requested_by: String,
    /// `environmentType`.
    pub environment_type: String,
    /// `catalogName`.
    pub catalog: String,
    /// `environmentDefinitionName`.
    pub definition: String,
    /// `parameters` as supplied (validated here against the definition).
    pub parameters: Map<String, Value>,
    /// `expirationDate` in the store's form, already checked to lie in
    /// the future; `None` keeps none.
    pub expiration_date: Option<String>,
}

/// An operation the service queued.
#[derive(Debug, Clone)]
pub struct Queued {
    /// The environment as stored after queueing.
    pub environment: EnvironmentRecord,
    /// The queued operation.
    pub operation: OperationRecord,
}

/// ADE's environment rules over the store. Cheap to share through `Arc`.
#[derive(Debug)]
pub struct EnvironmentService {
    store: Store,
    runner_images: RunnerImages,
    queue: Arc<dyn OperationQueue>,
    /// Wakes the expiration timer after an expiration or action changed.
    pub(crate) expirations: Notify,
}

impl EnvironmentService {
    /// A service over `store` that resolves runner aliases with
    /// `runner_images` and hands queued operations to `queue`.
    pub fn new(
        store: Store,
        runner_images: RunnerImages,
        queue: Arc<dyn OperationQueue>,
    ) -> EnvironmentService {
        EnvironmentService {
            store,
            runner_images,
            queue,
            expirations: Notify::new(),
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Environment `name` owned by `owner` in `project`.
    ///
    /// Errors: [`EnvironmentError::EnvironmentNotFound`] (also when another
    /// user owns it: names do not leak).
    pub async fn environment(
        &self,
        project: &str,
        owner: &str,
        name: &str,
    ) -> Result<EnvironmentRecord> {
        match self.store.get_environment(project, name).await? {
            Some(env) if env.owner == owner => Ok(env),
            _ => Err(EnvironmentError::environment_not_found(
                project, owner, name,
            )),
        }
    }

    /// A catalog visible in `project`: the dev center's or the project's own.
    ///
    /// Errors: [`EnvironmentError::CatalogNotFound`].
    pub async fn visible_catalog(&self, project: &str, catalog: &str) -> Result<Catalog> {
        match self.store.get_catalog(catalog).await? {
            Some(c) if c.spec.project.as_deref().is_none_or(|o| o == project) => Ok(c),
            _ => Err(EnvironmentError::CatalogNotFound {
                project: project.to_string(),
                catalog: truncate(catalog),
            }),
        }
    }

    /// A deployable definition of a catalog visible in `project`.
    ///
    /// Errors: [`EnvironmentError::CatalogNotFound`],
    /// [`EnvironmentError::DefinitionNotFound`], or
    /// [`EnvironmentError::DefinitionInvalid`] with the last sync's first
    /// error.
    pub async fn visible_definition(
        &self,
        project: &str,
        catalog: &str,
        name: &str,
    ) -> Result<DefinitionRecord> {
        self.visible_catalog(project, catalog).await?;
        match self.store.get_definition(catalog, name).await? {
            Some(d) if d.is_valid() => Ok(d),
            Some(d) => Err(EnvironmentError::DefinitionInvalid {
                catalog: catalog.to_string(),
                definition: name.to_string(),
                reason: d
                    .error_details
                    .first()
                    .and_then(|e| e["message"].as_str())
                    .unwrap_or("validation failed")
                    .to_string(),
            }),
            None => Err(EnvironmentError::DefinitionNotFound {
                catalog: catalog.to_string(),
                definition: truncate(name),
            }),
        }
    }

    /// Creates environment `req.name`, or redeploys it with new parameters,
    /// and queues its `Deploy` operation.
    ///
    /// Rules, in order: the name belongs to `req.owner` if it exists
    /// ([`EnvironmentError::NameInUse`]); type, catalog and definition stay
    /// those it was created with ([`EnvironmentError::PropertyChangeNotAllowed`]);
    /// the type is enabled in the project
    /// ([`EnvironmentError::EnvironmentTypeNotFound`],
    /// [`EnvironmentError::EnvironmentTypeDisabled`]); a new environment
    /// stays within `limits.maxEnvironmentsPerUser`
    /// ([`EnvironmentError::LimitExceeded`]); the definition is visible and
    /// valid; the parameters satisfy it ([`EnvironmentError::Parameters`]).
    /// A redeploy keeps the environment's expiration unless one is given.
    pub async fn deploy(&self, req: DeployRequest) -> Result<Queued> {
        let (p, e) = (&req.project, &req.name);
        let existing = self.store.get_environment(p, e).await?;
        if let Some(env) = &existing {
            if env.owner != req.owner {
                return Err(EnvironmentError::NameInUse {
                    project: p.clone(),
                    name: e.clone(),
                });
            }
            for (field, old, new) in [
                (
                    "environmentType",
                    &env.environment_type,
                    &req.environment_type,
                ),
                ("catalogName", &env.catalog, &req.catalog),
                (
                    "environmentDefinitionName",
                    &env.definition,
                    &req.definition,
                ),
            ] {
                if old != new {
                    return Err(EnvironmentError::PropertyChangeNotAllowed {
                        field,
                        name: e.clone(),
                        old: old.clone(),
                        new: truncate(new),
                    });
                }
            }
        }
        let t = &req.environment_type;
        let pet = self
            .store
            .get_project_environment_type(p, t)
            .await?
            .ok_or_else(|| EnvironmentError::EnvironmentTypeNotFound {
                project: p.clone(),
                environment_type: truncate(t),
            })?;
        if pet.status != "Enabled" {
            return Err(EnvironmentError::EnvironmentTypeDisabled {
                project: p.clone(),
                environment_type: t.clone(),
            });
        }
        if let (None, Some(max)) = (&existing, pet.limits.max_environments_per_user) {
            let have = self
                .store
                .count_environments(p, t, Some(&req.owner))
                .await?;
            if have >= max {
                return Err(EnvironmentError::LimitExceeded {
                    user: req.owner.clone(),
                    have,
                    environment_type: t.clone(),
                    project: p.clone(),
                    max,
                });
            }
        }
        let definition = self
            .visible_definition(p, &req.catalog, &req.definition)
            .await?;
        let parameters = resolve_parameters(&definition.manifest.parameters, &req.parameters)
            .map_err(EnvironmentError::Parameters)?;
        let exists = existing.is_some();
        let env = EnvironmentRecord {
            id: existing
                .as_ref()
                .map(|x| x.id.clone())
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            project: p.clone(),
            name: e.clone(),
            owner: req.owner.clone(),
            environment_type: req.environment_type,
            catalog: req.catalog,
            definition: req.definition,
            parameters,
            provisioning_state: ProvisioningState::on_queued(OperationKind::Deploy, exists),
            error: None,
            expiration_date: req.expiration_date,
            delete_at: None,
            action_modified_by: None,
            action_modified_at: None,
        };
        let operation = self
            .queue_operation(
                &env,
                exists,
                OperationKind::Deploy,
                &req.requested_by,
                definition,
                false,
            )
            .await?;
        let environment = self.store.get_environment(p, e).await?.unwrap_or(env);
        Ok(Queued {
            environment,
            operation,
        })
    }

    /// Sets (`Some`, store form, in the future) or clears the expiration
    /// of `env`; its scheduled `Delete` action follows. Returns the
    /// environment as stored.
    pub async fn set_expiration(
        &self,
        env: &EnvironmentRecord,
        expiration: Option<&str>,
        by: &str,
    ) -> Result<EnvironmentRecord> {
        self.store.set_expiration(&env.id, expiration, by).await?;
        self.expirations.notify_one();
        self.environment(&env.project, &env.owner, &env.name).await
    }

    /// Queues the delete of `env` requested by `by`. The delete runs with
    /// the current definition if it still exists and is valid, else with
    /// the one its last operation ran with. `force` removes the record even
    /// if the runner fails, and at once (returning `None`, nothing queued)
    /// when the definition is gone.
    ///
    /// Errors: [`EnvironmentError::DefinitionGone`] without `force` when no
    /// definition is left to run.
    pub async fn delete(
        &self,
        env: &EnvironmentRecord,
        by: &str,
        force: bool,
    ) -> Result<Option<OperationRecord>> {
        let current = self
            .store
            .get_definition(&env.catalog, &env.definition)
            .await?
            .filter(DefinitionRecord::is_valid);
        if force && current.is_none() {
            self.store.delete_environment_record(&env.id).await?;
            if let Err(e) = self
                .store
                .blobs
                .delete(&Store::environment_key(&env.id))
                .await
            {
                tracing::warn!(environment = %env.id, error = %e, "could not remove environment files");
            }
            return Ok(None);
        }
        let chosen = match current {
            Some(d) => Some(d),
            None => self
                .store
                .list_operations(&env.id)
                .await?
                .into_iter()
                .next()
                .map(|op| op.definition),
        };
        let definition = chosen.ok_or_else(|| EnvironmentError::DefinitionGone {
            catalog: env.catalog.clone(),
            definition: env.definition.clone(),
        })?;
        let op = self
            .queue_operation(env, true, OperationKind::Delete, by, definition, force)
            .await?;
        Ok(Some(op))
    }

    /// Checks that `action` names the scheduled delete of `env`.
    ///
    /// Errors: [`EnvironmentError::ActionNotFound`] saying what it has.
    pub fn require_action(&self, env: &EnvironmentRecord, action: &str) -> Result<()> {
        if env.expiration_date.is_some() && action == delete_action_name(env) {
            return Ok(());
        }
        Err(EnvironmentError::ActionNotFound {
            name: env.name.clone(),
            action: truncate(action),
            has: match &env.expiration_date {
                Some(_) => format!("only '{}'", delete_action_name(env)),
                None => "none (set an expirationDate to schedule a Delete action)".into(),
            },
        })
    }

    /// Skips (`until: None`) or delays to `until` (store form, in the
    /// future) the scheduled delete `action` of `env`. Returns the
    /// environment as stored.
    ///
    /// Errors: [`EnvironmentError::ActionNotFound`].
    pub async fn reschedule_action(
        &self,
        env: &EnvironmentRecord,
        action: &str,
        until: Option<&str>,
        by: &str,
    ) -> Result<EnvironmentRecord> {
        self.require_action(env, action)?;
        self.store.reschedule_delete(&env.id, until, by).await?;
        self.expirations.notify_one();
        self.environment(&env.project, &env.owner, &env.name).await
    }

    /// Cancels `op`: a `NotStarted` one ends `Canceled` at once, a
    /// `Running` one when its runner has stopped. Returns it as stored.
    ///
    /// Errors: [`EnvironmentError::NotCancelable`] once it has ended.
    pub async fn cancel(&self, op: &OperationRecord, by: &str) -> Result<OperationRecord> {
        match self.store.request_cancel(&op.id, by).await? {
            Some(OperationStatus::Running) => self.queue.cancel_running(&op.id),
            Some(OperationStatus::Canceled) if !op.status.is_terminal() => self.queue.wake(),
            _ => {
                return Err(EnvironmentError::NotCancelable {
                    operation: op.id.clone(),
                    status: op.status,
                })
            }
        }
        Ok(self
            .store
            .get_operation(&op.id)
            .await?
            .unwrap_or_else(|| op.clone()))
    }

    /// Stores `env` and queues an operation of `kind` with the runner image
    /// the definition names, then wakes the scheduler and the expiration
    /// timer.
    async fn queue_operation(
        &self,
        env: &EnvironmentRecord,
        exists: bool,
        kind: OperationKind,
        by: &str,
        definition: DefinitionRecord,
        force: bool,
    ) -> Result<OperationRecord> {
        let runner_image = self
            .runner_images
            .resolve(definition.manifest.runner.as_deref());
        let id = self
            .store
            .enqueue_operation(&NewOperation {
                environment: env.clone(),
                environment_exists: exists,
                kind,
                created_by: by.to_string(),
                definition,
                runner_image,
                force,
            })
            .await?;
        self.queue.wake();
        self.expirations.notify_one();
        self.store.get_operation(&id).await?.ok_or_else(|| {
            EnvironmentError::Store(slipway_store::StoreError::Corrupt {
                what: "operation",
                message: format!("queued operation {id} vanished"),
            })
        })
    }
}
