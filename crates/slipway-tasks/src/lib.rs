//! Container image tasks (modelled on ACR Tasks): quick builds, multi-step
//! acb task runs, the embedded registry and the triggers that start runs.
//!
//! - [`context`]: build contexts (tar with `.dockerignore`, git, tarball URLs;
//!   `oci://` artifacts come through [`registry::pull_artifact`]).
//! - [`registry`]: the embedded `docker-registry` and manifest digests.
//! - [`exec`]: running a planned task on the container engine.
//! - [`TaskService`]: the run queue, cancel, run timeouts (`service`), and
//!   what starts runs: webhooks, registry notifications, source and
//!   base-image polling, timers (`triggers`).
//! - `spec`: tasks and run requests as stored and sent; `plan`: rendering
//!   a task file or a quick build into a plan.
//!
//! Contract: `../shared/reference/acr-tasks.md`. Run statuses are ACR's
//! (`Queued → Started → Running → Succeeded|Failed|Canceled|Error|Timeout`).

pub mod context;
pub mod exec;
mod plan;
pub mod registry;
mod runs;
mod service;
mod spec;
mod triggers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use slipway_runner::Engine;
use slipway_store::{Store, StoreError};
use thiserror::Error;
use tokio::sync::{Notify, Semaphore};

pub use plan::{context_key, docker_plan, render_plan, render_task, RenderedTask};
pub use service::{RunLog, TaskConfig};
pub use spec::*;

/// Default run timeout, seconds (ACR: default 3600, 300–28800).
pub const DEFAULT_TIMEOUT: u64 = 3600;
/// Allowed run timeouts, seconds.
pub const TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 300..=28800;
/// Quick-build `build` step timeout (acb `buildTimeoutInSec`).
pub const QUICK_BUILD_STEP_TIMEOUT: i64 = 28800;

/// Errors of image tasks.
///
/// [`TaskError::is_bad_input`] tells the caller's mistakes (an HTTP 400)
/// from the service's failures.
#[derive(Debug, Error)]
pub enum TaskError {
    /// Bad input: names the field and what was expected.
    #[error("{0}")]
    Validation(String),
    /// The (rendered) task file cannot be planned.
    #[error(transparent)]
    TaskFile(#[from] slipway_core::tasks::taskfile::TaskFileError),
    /// Values, `--set` items or the `alias:` block cannot be used.
    #[error(transparent)]
    Values(#[from] slipway_core::tasks::values::ValuesError),
    /// A step's `cmd` cannot be run as written.
    #[error(transparent)]
    Cmd(#[from] slipway_core::tasks::cmdline::CmdError),
    /// A step would leave its confinement.
    #[error(transparent)]
    Refused(#[from] slipway_core::isolation::StepRefused),
    /// Step permissions that are malformed.
    #[error(transparent)]
    Policy(#[from] slipway_core::isolation::PolicyError),
    /// The context could not be fetched or unpacked.
    #[error("context: {0}")]
    Context(String),
    /// A step failed.
    #[error("{0}")]
    Step(String),
    /// The container engine failed.
    #[error("container engine: {0}")]
    Engine(String),
    /// The registry failed or is missing.
    #[error("registry: {0}")]
    Registry(String),
    /// Store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TaskError {
    /// Whether the request was at fault (bad task file, values, command or
    /// permissions) rather than the engine, the registry or the store.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            TaskError::Validation(_)
                | TaskError::TaskFile(_)
                | TaskError::Values(_)
                | TaskError::Cmd(_)
                | TaskError::Refused(_)
                | TaskError::Policy(_)
        )
    }
}

/// The run queue and the triggers.
pub struct TaskService {
    store: Store,
    engine: Engine,
    config: TaskConfig,
    wake: Notify,
    timers_changed: Notify,
    sources_changed: Notify,
    deps_changed: Notify,
    cancels: Mutex<HashMap<String, Arc<Notify>>>,
    slots: Arc<Semaphore>,
    instance: String,
}

impl std::fmt::Debug for TaskService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskService")
            .field("registry", &self.config.registry)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn specs_validate_timeouts_timers_and_triggers() {
        let spec = TaskSpec {
            run: RunRequest {
                encoded_task: Some("steps: []".into()),
                ..Default::default()
            },
            status: "Enabled".into(),
            timers: vec![
                TimerTrigger {
                    name: String::new(),
                    schedule: "*/5 * * * *".into(),
                    status: "Enabled".into(),
                },
                TimerTrigger {
                    name: String::new(),
                    schedule: "0 2 * * Mon-Fri".into(),
                    status: "Enabled".into(),
                },
            ],
            ..Default::default()
        };
        let v = spec.clone().validate().unwrap();
        assert_eq!(v.run.timeout, 3600);
        assert_eq!(v.timers[0].name, "t1");
        assert_eq!(v.timers[1].name, "t2");
        let mut bad = spec.clone();
        bad.run.timeout = 100;
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("between 300 and 28800"));
        let mut bad = spec;
        bad.timers[0].schedule = "* * * *".into();
        assert!(bad.validate().unwrap_err().to_string().contains("5 fields"));
    }

    #[test]
    fn quick_build_plans_prefix_the_registry_and_push_after_build() {
        let d = DockerBuild {
            images: vec!["app:{{.Run.ID}}".into(), "other.io/x/app:1".into()],
            ..Default::default()
        };
        let data = json!({"Run": {"ID": "ca1"}});
        let p = docker_plan(&d, &data, "127.0.0.1:5000").unwrap();
        assert_eq!(p.task.steps.len(), 2);
        assert_eq!(
            p.task.steps[1].push,
            vec!["127.0.0.1:5000/app:ca1", "other.io/x/app:1"]
        );
        assert_eq!(p.deps[1], vec![0]);
        assert!(p.networks.is_empty());
        let d = DockerBuild {
            images: vec!["app".into()],
            no_push: true,
            ..Default::default()
        };
        assert_eq!(docker_plan(&d, &data, "r").unwrap().task.steps.len(), 1);
    }
}
