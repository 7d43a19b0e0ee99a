//! From a run request to a plan: task files rendered (comments, aliases,
//! templates) and quick builds turned into one build step.

use std::path::Path;
use std::time::Duration;

use crate::{DockerBuild, TaskError, QUICK_BUILD_STEP_TIMEOUT};
use serde_json::Value;
use slipway_core::isolation::StepPermissions;
use slipway_core::tasks::cmdline::expand_command_alias;
use slipway_core::tasks::taskfile::{self, Plan, Step, TaskFile};
use slipway_core::tasks::template::render;
use slipway_core::tasks::values::{
    aliases_enabled, preprocess_aliases, strip_comment_lines, LoadError,
};
use slipway_fetch::{Fetcher, MAX_IN_MEMORY_BYTES};

/// Blob key of an uploaded context tarball.
pub fn context_key(digest: &str) -> String {
    format!("task-contexts/{digest}.tar")
}

/// The largest task, values or alias file read from a context, bytes (4 MiB).
const MAX_TASK_FILE_BYTES: u64 = 4 << 20;

/// Reads `rel` from the workspace without following a path or symlink out of it.
///
/// Errors: [`TaskError::Validation`] naming the file (missing, too large,
/// leading outside the context).
pub(crate) async fn read_in(workspace: &Path, rel: &str) -> Result<String, TaskError> {
    let (ws, rel) = (workspace.to_path_buf(), rel.to_string());
    tokio::task::spawn_blocking(move || {
        slipway_hostfs::Tree::open(&ws)
            .and_then(|t| t.read_to_string(&rel, MAX_TASK_FILE_BYTES))
            .map_err(|e| TaskError::Validation(format!("file in the context: {e}")))
    })
    .await
    .map_err(|e| TaskError::Engine(e.to_string()))?
}

/// A task file as a run renders it.
#[derive(Debug, Clone)]
pub struct RenderedTask {
    /// The YAML after comment stripping, alias preprocessing and the template.
    pub yaml: String,
    /// Its plan (defaults filled in, command aliases expanded).
    pub plan: Plan,
}

/// Renders a task file (comments stripped, aliases, template) into a plan,
/// expanding command aliases for v1.1.0. `permissions`: what the task's
/// steps are granted (empty for quick runs).
///
/// Errors: [`TaskError::Validation`] with the template or acb message.
pub fn render_plan(
    fetcher: &Fetcher,
    text: &str,
    data: &Value,
    workspace: &Path,
    permissions: &StepPermissions,
) -> Result<Plan, TaskError> {
    render_task(fetcher, text, data, workspace, permissions).map(|r| r.plan)
}

/// [`render_plan`], keeping the rendered YAML too (`slipway task render`,
/// like `acb render`). Alias files are read beneath `workspace` or fetched
/// over http(s).
///
/// Errors: as [`render_plan`].
pub fn render_task(
    fetcher: &Fetcher,
    text: &str,
    data: &Value,
    workspace: &Path,
    permissions: &StepPermissions,
) -> Result<RenderedTask, TaskError> {
    let text = strip_comment_lines(text);
    let (text, aliases) = if aliases_enabled(&text) {
        let load = |src: &str| -> Result<String, LoadError> {
            if src.starts_with("http://") || src.starts_with("https://") {
                let body = fetcher.bytes(src, Duration::from_secs(2), MAX_IN_MEMORY_BYTES)?;
                return String::from_utf8(body).map_err(|e| format!("GET '{src}': {e}").into());
            }
            Ok(slipway_hostfs::Tree::open(workspace)
                .and_then(|t| t.read_to_string(src, MAX_TASK_FILE_BYTES))?)
        };
        let a = preprocess_aliases(&text, data, &load)?;
        (a.text, Some(a.aliases))
    } else {
        (text, None)
    };
    let rendered = render(&text, data).map_err(|e| TaskError::Validation(e.to_string()))?;
    let mut task: TaskFile = taskfile::parse_task(&rendered)?;
    if let Some(aliases) = aliases {
        for s in task.steps.iter_mut() {
            if let Some(c) = &s.cmd {
                s.cmd = Some(expand_command_alias(c, &aliases));
            }
        }
    }
    if task.secrets.iter().any(|s| s.keyvault.is_some()) {
        return Err(TaskError::Validation(
            "secrets: Azure Key Vault secrets ('keyvault') cannot be resolved by Slipway".into(),
        ));
    }
    let plan = taskfile::plan(task, false, permissions)?;
    Ok(RenderedTask {
        yaml: rendered,
        plan,
    })
}

/// The plan of a Docker build: `build` (timeout 28800 s) then `push` of
/// every image unless `noPush` (acb `build`). Image names are templated
/// with run variables and prefixed with the run registry when they have
/// no registry.
pub fn docker_plan(d: &DockerBuild, data: &Value, registry: &str) -> Result<Plan, TaskError> {
    let mut images = Vec::new();
    for i in &d.images {
        let r = render(i, data).map_err(|e| TaskError::Validation(format!("image '{i}': {e}")))?;
        let first = r.split('/').next().unwrap_or_default();
        let has_registry =
            r.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
        images.push(if has_registry || r.starts_with("library/") {
            r
        } else {
            format!("{registry}/{r}")
        });
    }
    let q = |s: &str| shell_words::quote(s).into_owned();
    let mut build = String::new();
    for i in &images {
        build.push_str(&format!("-t {} ", q(i)));
    }
    if let Some(f) = &d.file {
        build.push_str(&format!("-f {} ", q(f)));
    }
    // Secret build args reach the build as build secrets (RunEnv::build_secrets), not here.
    for a in &d.build_args {
        build.push_str(&format!("--build-arg {} ", q(a)));
    }
    if let Some(t) = &d.target {
        build.push_str(&format!("--target {} ", q(t)));
    }
    if let Some(p) = &d.platform {
        build.push_str(&format!("--platform {} ", q(p)));
    }
    build.push('.');
    let mut steps = vec![Step {
        id: "build".into(),
        build: Some(build),
        timeout: QUICK_BUILD_STEP_TIMEOUT,
        ..Default::default()
    }];
    if !d.no_push && !images.is_empty() {
        steps.push(Step {
            id: "push".into(),
            push: images,
            timeout: 3600,
            when: vec!["build".into()],
            ..Default::default()
        });
    }
    taskfile::plan(
        TaskFile {
            steps,
            ..Default::default()
        },
        true,
        &StepPermissions::default(),
    )
    .map_err(TaskError::from)
}
