//! Tasks and run requests as stored and sent: triggers, secret values, quick
//! builds, validation (ACR Tasks `Task` / `RunRequest` shapes).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::context::GitContext;
use crate::{context, TaskError, DEFAULT_TIMEOUT, TIMEOUT_RANGE};

/// A task's base-image dependency, learned from its last successful run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BaseImageDependency {
    /// `RunTime` | `BuildTime`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Registry host.
    pub registry: String,
    /// Repository.
    pub repository: String,
    /// Tag.
    pub tag: String,
    /// Digest seen at the last build (or the last trigger).
    pub digest: String,
}

/// A timer trigger (5-field UTC cron).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimerTrigger {
    /// `t1`, `t2`, … by default.
    pub name: String,
    /// `minute hour day month day-of-week`, UTC.
    pub schedule: String,
    /// `Enabled` | `Disabled`.
    #[serde(default = "enabled")]
    pub status: String,
}

/// The base-image-update trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BaseImageTrigger {
    /// Default `defaultBaseimageTriggerName`.
    #[serde(default = "default_base_trigger_name")]
    pub name: String,
    /// `Runtime` (default) | `All`.
    #[serde(default = "runtime", rename = "baseImageTriggerType")]
    pub kind: String,
    /// `Enabled` | `Disabled`.
    #[serde(default = "enabled")]
    pub status: String,
}

/// The source-commit trigger of a task with a git context (ACR
/// `sourceTriggers[0]`): a signed webhook from GitHub, Gitea/Forgejo or
/// GitLab, and/or polling the remote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceTrigger {
    /// Default `defaultSourceTriggerName`.
    #[serde(default = "default_source_trigger_name")]
    pub name: String,
    /// `commit` (the only event; ACR's `pullrequest` is not offered).
    #[serde(default = "commit_events")]
    pub source_trigger_events: Vec<String>,
    /// `Enabled` | `Disabled`.
    #[serde(default = "enabled")]
    pub status: String,
    /// Write-only: the webhook secret (HMAC key for GitHub/Gitea, the
    /// token for GitLab). Sealed on save into `sealedWebhookSecret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    /// The webhook secret sealed with the server's key (never shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_webhook_secret: Option<String>,
    /// Read-only, in API answers: whether the trigger has a webhook secret
    /// (its value is never shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_webhook_secret: Option<bool>,
    /// Poll the remote every this many seconds (5–86400); none = webhook only.
    #[serde(default)]
    pub poll_interval_seconds: Option<u64>,
    /// The last commit that started (or, at the first poll, was found
    /// without starting) a run: state, kept across updates.
    #[serde(default)]
    pub last_commit: Option<String>,
}

/// Allowed polling intervals, seconds.
pub const POLL_INTERVAL_RANGE: std::ops::RangeInclusive<u64> = 5..=86400;

fn default_source_trigger_name() -> String {
    "defaultSourceTriggerName".into()
}
fn commit_events() -> Vec<String> {
    vec!["commit".into()]
}

/// A secret value for the template (`--set-secret name=value`, read as
/// `{{.Values.name}}`, masked in logs, never shown).
/// On the wire either `{name, value}` or the command-line form `"name=value"`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", try_from = "SecretValueWire")]
pub struct SecretValue {
    /// The value's name.
    pub name: String,
    /// Write-only plain value; sealed into `sealed` when stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value sealed with the server's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SecretValueWire {
    Pair(String),
    #[serde(rename_all = "camelCase")]
    Object {
        name: String,
        #[serde(default)]
        value: Option<String>,
        #[serde(default)]
        sealed: Option<String>,
    },
}

impl TryFrom<SecretValueWire> for SecretValue {
    type Error = String;

    fn try_from(w: SecretValueWire) -> Result<Self, String> {
        match w {
            SecretValueWire::Pair(p) => match p.split_once('=') {
                Some((name, value)) if !name.is_empty() => Ok(SecretValue {
                    name: name.to_string(),
                    value: Some(value.to_string()),
                    sealed: None,
                }),
                _ => Err(format!(
                    "'{}': expected NAME=VALUE",
                    p.split('=').next().unwrap_or_default()
                )),
            },
            SecretValueWire::Object {
                name,
                value,
                sealed,
            } => Ok(SecretValue {
                name,
                value,
                sealed,
            }),
        }
    }
}

fn enabled() -> String {
    "Enabled".into()
}
fn runtime() -> String {
    "Runtime".into()
}
fn default_base_trigger_name() -> String {
    "defaultBaseimageTriggerName".into()
}

/// A Docker build (quick build, or a task whose file is a Dockerfile).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DockerBuild {
    /// `-t` images (templated with run variables; the run registry is
    /// prefixed to names without a registry).
    #[serde(default)]
    pub images: Vec<String>,
    /// Dockerfile path in the context (default `Dockerfile`).
    #[serde(default)]
    pub file: Option<String>,
    /// `K=V` build args.
    #[serde(default)]
    pub build_args: Vec<String>,
    /// Build args whose values never appear in logs or API answers
    /// (`"K=V"` or `{name, value}`; sealed once stored, shown as `(secure)`).
    #[serde(default)]
    pub secret_build_args: Vec<SecretValue>,
    /// `--target`.
    #[serde(default)]
    pub target: Option<String>,
    /// `--platform` (`linux/amd64`).
    #[serde(default)]
    pub platform: Option<String>,
    /// Build only.
    #[serde(default)]
    pub no_push: bool,
}

/// What one run executes (stored on the run as `request`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunRequest {
    /// `upload:<sha256>` (an uploaded tarball), a git URL
    /// (`…repo.git#ref:folder`), `oci://<registry>/<repo>:<tag>` (an OCI
    /// artifact or image), a tarball URL, or `None` (no context).
    #[serde(default)]
    pub context: Option<String>,
    /// A Docker build.
    #[serde(default)]
    pub docker: Option<DockerBuild>,
    /// Task file path in the context (default `acb.yaml`).
    #[serde(default)]
    pub task_file: Option<String>,
    /// Inline task YAML (tasks without a context).
    #[serde(default)]
    pub encoded_task: Option<String>,
    /// Values file path in the context.
    #[serde(default)]
    pub values_file: Option<String>,
    /// Inline values YAML.
    #[serde(default)]
    pub encoded_values: Option<String>,
    /// `--set k=v`.
    #[serde(default)]
    pub set: Vec<String>,
    /// `--set-secret k=v` values (sealed once stored).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_secret: Vec<SecretValue>,
    /// Name of a dev-center secret of kind `token` or `sshKey` that fetches
    /// a git context (ACR `--git-access-token`); the token is sent only over
    /// https and only to the hosts its secret names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_secret: Option<String>,
    /// Run timeout, seconds: 0 (the default, 3600) or 300–28800.
    #[serde(default)]
    #[schema(maximum = 28800)]
    pub timeout: u64,
}

impl RunRequest {
    /// Replaces every secret value (`setSecret`, `docker.secretBuildArgs`)
    /// by `(secure)` and drops its sealed form, as the API shows them.
    pub fn redact_secrets(&mut self) {
        let docker = self
            .docker
            .iter_mut()
            .flat_map(|d| d.secret_build_args.iter_mut());
        for v in self.set_secret.iter_mut().chain(docker) {
            v.sealed = None;
            v.value = Some(SECURE.to_string());
        }
    }

    /// ACR's run type of a task run: `AutoBuild` for Dockerfile tasks,
    /// `AutoRun` for task files.
    pub fn task_run_type(&self) -> &'static str {
        if self.docker.is_some() {
            "AutoBuild"
        } else {
            "AutoRun"
        }
    }
}

/// A task (`slipway task create`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskSpec {
    /// What each run executes (the context, file, values…).
    #[serde(flatten)]
    pub run: RunRequest,
    /// `linux/amd64`.
    #[serde(default)]
    pub platform: Option<String>,
    /// `Enabled` | `Disabled`.
    #[serde(default = "enabled")]
    pub status: String,
    /// Timer triggers.
    #[serde(default)]
    pub timers: Vec<TimerTrigger>,
    /// Base-image-update trigger.
    #[serde(default)]
    pub base_image_trigger: Option<BaseImageTrigger>,
    /// Source-commit trigger (git contexts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_trigger: Option<SourceTrigger>,
    /// Learned from the last successful run.
    #[serde(default)]
    pub base_image_dependencies: Vec<BaseImageDependency>,
    /// Exceptions to the step confinement that a DevCenter Admin grants
    /// this task's steps (a Slipway extension; never settable from a task
    /// file). Every change is recorded as an `imageTask.stepPermissions`
    /// audit event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_permissions: Option<slipway_core::isolation::StepPermissions>,
}

impl TaskSpec {
    /// Checks and normalizes a spec: timeout default and range, timer names
    /// (`t1`, `t2`… by position) and cron expressions, trigger types.
    ///
    /// Errors: [`TaskError::Validation`] naming the field, value and what
    /// was expected.
    pub fn validate(mut self) -> Result<TaskSpec, TaskError> {
        let bad = |m: String| Err(TaskError::Validation(m));
        if self.run.timeout == 0 {
            self.run.timeout = DEFAULT_TIMEOUT;
        }
        if !TIMEOUT_RANGE.contains(&self.run.timeout) {
            return bad(format!(
                "property 'timeout' is {}: expected seconds between 300 and 28800",
                self.run.timeout
            ));
        }
        if let Some(p) = &self.step_permissions {
            p.validate()?;
        }
        if self.status != "Enabled" && self.status != "Disabled" {
            return bad(format!(
                "property 'status' is '{}': expected 'Enabled' or 'Disabled'",
                self.status
            ));
        }
        if self.run.docker.is_none()
            && self.run.context.is_none()
            && self.run.encoded_task.is_none()
        {
            return bad("a task needs a context with a task file or Dockerfile, or an inline task file ('encodedTask')".into());
        }
        for (i, t) in self.timers.iter_mut().enumerate() {
            if t.name.is_empty() {
                t.name = format!("t{}", i + 1);
            }
            parse_cron(&t.schedule)?;
        }
        let mut names: Vec<&str> = self.timers.iter().map(|t| t.name.as_str()).collect();
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return bad(format!("timer name '{}' is used twice", w[0]));
        }
        if let Some(t) = &self.source_trigger {
            let git = self.run.context.as_deref().and_then(GitContext::parse);
            let Some(git) = git else {
                return bad(format!(
                    "property 'sourceTrigger' needs a git context (…repo.git#branch:folder); context is '{}'",
                    self.run.context.as_deref().unwrap_or_default()
                ));
            };
            if let Some(e) = t.source_trigger_events.iter().find(|e| *e != "commit") {
                return bad(format!(
                    "property 'sourceTrigger.sourceTriggerEvents' has '{e}': expected 'commit'"
                ));
            }
            if t.status != "Enabled" && t.status != "Disabled" {
                return bad(format!(
                    "property 'sourceTrigger.status' is '{}': expected 'Enabled' or 'Disabled'",
                    t.status
                ));
            }
            if let Some(p) = t.poll_interval_seconds {
                if !POLL_INTERVAL_RANGE.contains(&p) {
                    return bad(format!("property 'sourceTrigger.pollIntervalSeconds' is {p}: expected seconds between 5 and 86400"));
                }
                if git
                    .reference
                    .as_deref()
                    .is_some_and(context::looks_like_commit)
                {
                    return bad(format!("property 'sourceTrigger.pollIntervalSeconds': the context '{}' pins a commit, so there is nothing to poll; name a branch", self.run.context.as_deref().unwrap_or_default()));
                }
            }
        }
        for v in &self.run.set_secret {
            if v.name.is_empty() || v.value.is_none() && v.sealed.is_none() {
                return bad(format!(
                    "property 'setSecret' has '{}': expected name=value",
                    v.name
                ));
            }
        }
        if let Some(b) = &self.base_image_trigger {
            if b.kind != "Runtime" && b.kind != "All" {
                return bad(format!("property 'baseImageTrigger.baseImageTriggerType' is '{}': expected 'Runtime' or 'All'", b.kind));
            }
        }
        Ok(self)
    }
}

impl TaskSpec {
    /// Task `name` as the API shows it: sealed values left out
    /// (`hasWebhookSecret`, `setSecret[].value` and
    /// `docker.secretBuildArgs[].value` read `(secure)`).
    pub fn view(&self, name: &str) -> TaskView {
        let mut spec = self.clone();
        if let Some(t) = &mut spec.source_trigger {
            t.has_webhook_secret = Some(t.sealed_webhook_secret.take().is_some());
            t.webhook_secret = None;
        }
        spec.run.redact_secrets();
        TaskView {
            name: name.to_string(),
            spec,
        }
    }
}

/// What the API shows in place of a secret value.
pub const SECURE: &str = "(secure)";

/// A task as the API shows it (`GET /imageTasks/tasks/{t}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskView {
    /// Name.
    pub name: String,
    /// The spec, secret values left out.
    #[serde(flatten)]
    pub spec: TaskSpec,
}

/// A stored run request (the JSON of a [`RunRequest`]) as the API shows
/// it: every secret value reads `(secure)`. A document that is not a run
/// request (never written by Slipway) shows as `null` rather than risk
/// showing a secret.
pub fn redacted_request(request: &Value) -> Value {
    match serde_json::from_value::<RunRequest>(request.clone()) {
        Ok(mut r) => {
            r.redact_secrets();
            json!(r)
        }
        Err(_) => Value::Null,
    }
}

/// Parses a 5-field UTC cron (minute hour day month day-of-week).
///
/// Errors: [`TaskError::Validation`] naming the schedule.
pub fn parse_cron(schedule: &str) -> Result<croner::Cron, TaskError> {
    if schedule.split_whitespace().count() != 5 {
        return Err(TaskError::Validation(format!(
            "schedule '{schedule}' is not valid: expected 5 fields 'minute hour day month day-of-week' (UTC)"
        )));
    }
    use std::str::FromStr as _;
    croner::Cron::from_str(schedule)
        .map_err(|e| TaskError::Validation(format!("schedule '{schedule}' is not valid: {e}")))
}
