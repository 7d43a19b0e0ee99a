//! The acb task file model: keys, defaults, validation and the step DAG.
//!
//! Contract: reference `acr-tasks.md` §1.2–1.10 (acb `graph/task.go`,
//! `graph/step.go`, `graph/dag.go`). Unknown keys are ignored, as in acb.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

/// Versions acb accepts (compared case-insensitively).
pub const VALID_VERSIONS: [&str; 3] = ["1.0-preview-1", "v1.0.0", "v1.1.0"];
/// `stepTimeout` default, seconds.
pub const DEFAULT_STEP_TIMEOUT: i64 = 600;
/// `retryDelay` default (acb forces values ≤ 0 to 5), seconds.
pub const DEFAULT_RETRY_DELAY: i64 = 5;
/// The default network acb creates for a task that declares none.
pub const DEFAULT_NETWORK: &str = "acb_default_network";
/// Working directory of steps.
pub const WORKSPACE: &str = "/workspace";

/// A task file (`acb.yaml`), after rendering.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskFile {
    /// `v1.0.0` (default), `v1.1.0` or `1.0-preview-1`.
    #[serde(default)]
    pub version: Option<String>,
    /// Steps in file order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub steps: Vec<Step>,
    /// Default step timeout in seconds (≤ 0 → 600).
    #[serde(default, deserialize_with = "null_as_default")]
    pub step_timeout: i64,
    /// Default working directory of steps.
    #[serde(default)]
    pub working_directory: Option<String>,
    /// `K=V` merged into every step; the step's own keys win.
    #[serde(default, deserialize_with = "null_as_default")]
    pub env: Vec<String>,
    /// Secrets referenced as `{{.Secrets.<id>}}`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub secrets: Vec<TaskSecret>,
    /// Networks to create (or use, with `skipCreation`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub networks: Vec<Network>,
    /// Secret-file volumes.
    #[serde(default, deserialize_with = "null_as_default")]
    pub volumes: Vec<Volume>,
}

/// A task secret. acb resolves `keyvault` through a managed identity;
/// Slipway resolves `secret` (a Slipway secret name) instead.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSecret {
    /// Referenced as `{{.Secrets.<id>}}`.
    pub id: String,
    /// Azure Key Vault URL (not reachable from Slipway).
    #[serde(default)]
    pub keyvault: Option<String>,
    /// Managed identity client id for `keyvault`.
    #[serde(default, rename = "clientID")]
    pub client_id: Option<String>,
    /// Slipway extension: the name of a Slipway secret holding the value.
    #[serde(default)]
    pub secret: Option<String>,
}

/// A network (`docker network create`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    /// Network name.
    pub name: String,
    /// Driver (`bridge`).
    #[serde(default)]
    pub driver: Option<String>,
    /// IPv6.
    #[serde(default, deserialize_with = "yaml11_bool")]
    pub ipv6: bool,
    /// Use an existing network; do not create or remove it.
    #[serde(default, deserialize_with = "yaml11_bool")]
    pub skip_creation: bool,
    /// Steps without `network` join the last default network.
    #[serde(default, deserialize_with = "yaml11_bool")]
    pub is_default: bool,
}

/// A volume of secret files: file name → base64 content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// `[a-zA-Z0-9-_]+`.
    pub name: String,
    /// File name → base64 value.
    #[serde(default)]
    pub secret: Option<BTreeMap<String, String>>,
}

/// A volume mounted into a step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    /// A task `volumes[].name`.
    pub name: String,
    /// Where it appears in the step container.
    pub mount_path: String,
}

/// One step: exactly one of `cmd`, `build`, `push`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// Container name and DNS name on the run network; default `acb_step_<index>`.
    #[serde(default)]
    pub id: String,
    /// `[docker run flags] image [args]`.
    #[serde(default)]
    pub cmd: Option<String>,
    /// `docker build` arguments.
    #[serde(default)]
    pub build: Option<String>,
    /// Images to push.
    #[serde(default, deserialize_with = "null_as_default")]
    pub push: Vec<String>,
    /// Predecessors: none = the previous step, `["-"]` = at once.
    #[serde(default, deserialize_with = "null_as_default")]
    pub when: Vec<String>,
    /// `K=V`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub env: Vec<String>,
    /// `--workdir`; relative paths are under `/workspace`.
    #[serde(default)]
    pub working_directory: Option<String>,
    /// Keep the image's WORKDIR.
    #[serde(default, deserialize_with = "yaml11_bool")]
    pub disable_working_directory_override: bool,
    /// `--entrypoint`.
    #[serde(default)]
    pub entry_point: Option<String>,
    /// `--user`.
    #[serde(default)]
    pub user: Option<String>,
    /// `--network` (a network name).
    #[serde(default)]
    pub network: Option<String>,
    /// `--isolation` (Windows; ignored here).
    #[serde(default)]
    pub isolation: Option<String>,
    /// `--privileged`.
    #[serde(default, deserialize_with = "yaml11_bool")]
    pub privileged: bool,
    /// `-p` each.
    #[serde(default, deserialize_with = "null_as_default")]
    pub ports: Vec<String>,
    /// `--expose` each.
    #[serde(default, deserialize_with = "null_as_default")]
    pub expose: Vec<String>,
    /// Run detached (a service); succeeds once started.
    #[serde(default, deserialize_with = "yaml11_bool")]
    pub detach: bool,
    /// Keep the container after the run.
    #[serde(default, deserialize_with = "yaml11_bool")]
    pub keep: bool,
    /// Seconds for all repeats and retries; ≤ 0 → the task's `stepTimeout`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub timeout: i64,
    /// Seconds to wait before starting.
    #[serde(default, deserialize_with = "null_as_default")]
    pub start_delay: i64,
    /// Re-runs on a non-zero exit.
    #[serde(default, deserialize_with = "null_as_default")]
    pub retries: i64,
    /// Seconds between retries (≤ 0 → 5).
    #[serde(default, deserialize_with = "null_as_default")]
    pub retry_delay: i64,
    /// Retry only when the output contains one of these.
    #[serde(default, deserialize_with = "null_as_default")]
    pub retry_on_errors: Vec<String>,
    /// Extra runs (`repeat + 1` in all).
    #[serde(default, deserialize_with = "null_as_default")]
    pub repeat: i64,
    /// Pull the image first.
    #[serde(default, deserialize_with = "yaml11_bool")]
    pub pull: bool,
    /// A failure counts as success.
    #[serde(default, deserialize_with = "yaml11_bool")]
    pub ignore_errors: bool,
    /// `enabled` | `disabled` (build steps).
    #[serde(default)]
    pub cache: Option<String>,
    /// Task volumes to mount.
    #[serde(default, deserialize_with = "null_as_default")]
    pub volume_mounts: Vec<VolumeMount>,
    /// `--cpus`.
    #[serde(default)]
    pub cpus: Option<String>,
}

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// Runs a container.
    Cmd,
    /// Builds an image.
    Build,
    /// Pushes images.
    Push,
}

impl Step {
    /// What this step, with its parsed `cmd`, asks of the engine that the
    /// confinement policy rules on
    /// ([`crate::isolation::refuse_unconfined_step`]).
    pub fn confinement_request<'a>(
        &'a self,
        rc: &'a crate::tasks::cmdline::RunCommand,
    ) -> crate::isolation::StepRequest<'a> {
        crate::isolation::StepRequest {
            step_id: &self.id,
            privileged: self.privileged || rc.privileged,
            network: rc.network.as_deref().or(self.network.as_deref()),
            volumes: &rc.volumes,
            label_keys: rc.labels.keys().map(String::as_str).collect(),
        }
    }

    /// The step's kind; errors as acb when zero or several are given.
    pub fn kind(&self) -> Result<StepKind, StepKindError> {
        let has_cmd = self.cmd.as_deref().is_some_and(|c| !c.is_empty());
        let has_build = self.build.as_deref().is_some_and(|c| !c.is_empty());
        let has_push = !self.push.is_empty();
        match (has_cmd, has_build, has_push) {
            (true, false, false) => Ok(StepKind::Cmd),
            (false, true, false) => Ok(StepKind::Build),
            (false, false, true) => Ok(StepKind::Push),
            (false, false, false) => Err(StepKindError::Missing),
            _ => Err(StepKindError::Several),
        }
    }

    /// The working directory passed as `--workdir`, `None` when overridden off.
    pub fn workdir(&self) -> Option<String> {
        if self.disable_working_directory_override {
            return None;
        }
        Some(match self.working_directory.as_deref() {
            None | Some("") => WORKSPACE.to_string(),
            Some(p) if p.starts_with('/') => p.to_string(),
            Some(p) => format!("{WORKSPACE}/{}", p.trim_start_matches("./")),
        })
    }
}

/// A step with no kind or with several (acb's messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StepKindError {
    /// None of `cmd`, `build`, `push`.
    #[error("step is missing a cmd, build, or push property")]
    Missing,
    /// More than one of them.
    #[error("step must only contain a single build, cmd, or push property")]
    Several,
}

/// A task file that cannot be planned. The messages are acb's where acb
/// has one (`invalid version specified`, `X does not exist as a vertex`, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskFileError {
    /// The rendered text is blank.
    #[error("rendered template was empty")]
    Empty,
    /// Not YAML of the task file's shape.
    #[error("task file: {0}")]
    Yaml(String),
    /// A `version` other than v1.0.0 or v1.1.0.
    #[error("invalid version specified: {0:?}, the current version is \"v1.0.0\"")]
    Version(String),
    /// A task-level property (`env`, `volumes`, `networks`) refused.
    #[error("{0}")]
    Task(String),
    /// A step's own property refused.
    #[error("step {step}: {reason}")]
    Step {
        /// The step's ID (acb's `acb_step_N` when unset).
        step: String,
        /// Why.
        reason: String,
    },
    /// The step graph (`when`) refused: a duplicate, unknown or
    /// self-referencing ID.
    #[error("{0}")]
    Graph(String),
    /// A declared network Slipway does not create.
    #[error("network '{network}': {reason}")]
    Network {
        /// The network's name.
        network: String,
        /// Why, and what is accepted.
        reason: String,
    },
    /// A step's `cmd` cannot be split into flags, image and arguments.
    #[error("step '{step}': {error}")]
    Cmd {
        /// The step's ID.
        step: String,
        /// What is wrong with the command.
        error: crate::tasks::cmdline::CmdError,
    },
    /// A step that would leave its confinement.
    #[error(transparent)]
    Refused(#[from] crate::isolation::StepRefused),
}

/// A validated task: defaults applied and each step's predecessors.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The task with every default filled in (ids, timeouts, env, network).
    pub task: TaskFile,
    /// `deps[i]` = indices of the steps step `i` waits for.
    pub deps: Vec<Vec<usize>>,
    /// Networks Slipway creates (and removes) for the run.
    pub networks: Vec<Network>,
    /// The exceptions the task's steps were granted (checked again when
    /// each step starts).
    pub permissions: crate::isolation::StepPermissions,
}

/// Reads an explicit `null` (`when:` with nothing after it) as the empty
/// value, as acb's YAML decoder leaves a nil slice or zero number.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Reads a boolean as acb's YAML 1.1 parser does: `true`/`false` and the
/// plain scalars `y Y yes Yes YES n N no No NO on On ON off Off OFF`
/// (and `True TRUE False FALSE`). YAML 1.2 parsers read those as strings.
fn yaml11_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bool(bool),
        Text(String),
        /// `privileged:` with nothing after it: Go's zero value.
        Null(()),
    }
    match Raw::deserialize(d)? {
        Raw::Bool(b) => Ok(b),
        Raw::Null(()) => Ok(false),
        Raw::Text(t) => match t.as_str() {
            "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
                Ok(true)
            }
            "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False"
            | "FALSE" => Ok(false),
            _ => Err(serde::de::Error::custom(format!(
                "'{}' is not a boolean: expected true or false (or YAML 1.1's yes/no, on/off, y/n)",
                crate::echo::truncate(&t)
            ))),
        },
    }
}

/// Parses rendered task YAML.
///
/// Errors: YAML syntax, with acb's "rendered template was empty" for blank text.
pub fn parse_task(rendered: &str) -> Result<TaskFile, TaskFileError> {
    if rendered.trim().is_empty() {
        return Err(TaskFileError::Empty);
    }
    serde_yaml_ng::from_str(rendered).map_err(|e| TaskFileError::Yaml(e.to_string()))
}

/// Applies acb's defaults (`initialize`) and builds the DAG (`NewDagFromTask`).
///
/// `is_build_task`: quick builds get no default network. `permissions`:
/// the exceptions the task's steps are granted (empty for quick runs).
///
/// Errors: the acb message, naming the step (`invalid version specified`,
/// `step ID cannot contain spaces`, `X does not exist as a vertex`, …).
pub fn plan(
    mut task: TaskFile,
    is_build_task: bool,
    permissions: &crate::isolation::StepPermissions,
) -> Result<Plan, TaskFileError> {
    // acb: an unset or empty version is the current one.
    let version = task
        .version
        .clone()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "v1.0.0".into());
    if !VALID_VERSIONS
        .iter()
        .any(|v| v.eq_ignore_ascii_case(&version))
    {
        return Err(TaskFileError::Version(version));
    }
    if task.step_timeout <= 0 {
        task.step_timeout = DEFAULT_STEP_TIMEOUT;
    }
    let mut networks = task.networks.clone();
    for n in &networks {
        if n.name.trim().is_empty() {
            return Err(TaskFileError::Task("network name cannot be empty".into()));
        }
    }
    if networks.is_empty() && !is_build_task {
        networks.push(Network {
            name: DEFAULT_NETWORK.into(),
            driver: Some("bridge".into()),
            is_default: true,
            ..Default::default()
        });
    }
    let default_network = networks
        .iter()
        .rev()
        .find(|n| n.is_default)
        .map(|n| n.name.clone());
    let mut task_env = Vec::new();
    for e in &task.env {
        for part in e.split(',') {
            if !part.contains('=') {
                return Err(TaskFileError::Task(format!(
                    "cannot parse task environment variable {part:?}: expected K=V"
                )));
            }
            task_env.push(part.to_string());
        }
    }
    let volume_names: HashSet<String> = task.volumes.iter().map(|v| v.name.clone()).collect();
    for v in &task.volumes {
        if v.name.is_empty()
            || !v
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(TaskFileError::Task(format!(
                "volume name {:?} is not valid: expected [a-zA-Z0-9-_]+",
                v.name
            )));
        }
        if v.secret.is_none() {
            return Err(TaskFileError::Task(format!(
                "volume {:?}: currently only support for source type secret",
                v.name
            )));
        }
    }
    check_secrets(&task.secrets)?;
    let mut seen: Vec<String> = Vec::new();
    let mut deps = Vec::new();
    let workdir = task.working_directory.clone();
    for (i, step) in task.steps.iter_mut().enumerate() {
        if step.id.is_empty() {
            step.id = format!("acb_step_{i}");
        }
        let id = step.id.clone();
        let at = |m: &str| TaskFileError::Step {
            step: id.clone(),
            reason: m.to_string(),
        };
        if id.contains(char::is_whitespace) {
            return Err(at("step ID cannot contain spaces"));
        }
        if id == "acb_root" {
            return Err(at("acb_root is a reserved step ID"));
        }
        if seen.contains(&id) {
            return Err(TaskFileError::Graph(format!(
                "{id} already exists as a vertex"
            )));
        }
        step.kind().map_err(|e| at(&e.to_string()))?;
        if step.retries < 0 {
            return Err(at("step must specify retries >= 0"));
        }
        if step.repeat < 0 {
            return Err(at("step must specify repeat >= 0"));
        }
        if let Some(c) = &step.cache {
            if !c.eq_ignore_ascii_case("enabled") && !c.eq_ignore_ascii_case("disabled") {
                return Err(at(
                    "invalid value for cache property. Valid values are 'enabled', 'disabled'",
                ));
            }
        }
        let mut paths = HashSet::new();
        for m in &step.volume_mounts {
            if !volume_names.contains(&m.name) {
                return Err(at(&format!(
                    "volume mount {:?} names no task volume",
                    m.name
                )));
            }
            if !paths.insert(m.mount_path.clone()) {
                return Err(at(&format!("mount path {:?} is used twice", m.mount_path)));
            }
        }
        if step.timeout <= 0 {
            step.timeout = task.step_timeout;
        }
        if step.retry_delay <= 0 {
            step.retry_delay = DEFAULT_RETRY_DELAY;
        }
        if step.network.is_none() {
            step.network = default_network.clone();
        }
        if step.working_directory.is_none() {
            step.working_directory = workdir.clone();
        }
        let keys: HashSet<String> = step
            .env
            .iter()
            .filter_map(|e| e.split_once('=').map(|(k, _)| k.to_string()))
            .collect();
        for e in &task_env {
            let k = e.split('=').next().unwrap_or_default();
            if !keys.contains(k) {
                step.env.push(e.clone());
            }
        }
        let d = if step.when.is_empty() {
            if i == 0 {
                vec![]
            } else {
                vec![i - 1]
            }
        } else if step.when.iter().any(|w| w == "-") {
            if step.when.len() > 1 {
                return Err(at("step cannot contain other IDs in when if the immediate execution token is specified"));
            }
            vec![]
        } else {
            let mut d = Vec::new();
            for w in &step.when {
                if *w == id {
                    return Err(TaskFileError::Graph(format!(
                        "Step ID: {id} is self-referenced"
                    )));
                }
                match seen.iter().position(|s| s == w) {
                    Some(p) => d.push(p),
                    None => {
                        return Err(TaskFileError::Graph(format!(
                            "{w} does not exist as a vertex [from: {w}, to: {id}]"
                        )))
                    }
                }
            }
            d
        };
        deps.push(d);
        seen.push(id);
        // acb normalizes push lists: `:latest` added, duplicates removed.
        let mut pushed: Vec<String> = Vec::new();
        for img in step.push.drain(..) {
            let n = normalize_tag(&img);
            if !pushed.contains(&n) {
                pushed.push(n);
            }
        }
        step.push = pushed;
    }
    // Confinement is checked before anything runs: a step that would reach
    // outside its run refuses the whole plan, naming the step and the flag.
    // Steps join only networks the run creates (an existing engine network
    // would bypass the run's egress rules).
    if let Some(n) = networks.iter().find(|n| n.skip_creation) {
        return Err(TaskFileError::Network {
            network: n.name.clone(),
            reason: "skipCreation is not allowed: steps use networks their run creates".into(),
        });
    }
    for n in &networks {
        if n.ipv6 {
            return Err(TaskFileError::Network {
                network: n.name.clone(),
                reason: "ipv6 is not supported: steps have IPv4 egress only".into(),
            });
        }
        if let Some(d) = n.driver.as_deref().filter(|d| *d != "bridge") {
            return Err(TaskFileError::Network {
                network: n.name.clone(),
                reason: format!("driver '{d}' is not supported: expected 'bridge'"),
            });
        }
    }
    for step in &task.steps {
        let rc = match &step.cmd {
            Some(cmd) => {
                crate::tasks::cmdline::parse_cmd(cmd).map_err(|error| TaskFileError::Cmd {
                    step: step.id.clone(),
                    error,
                })?
            }
            None => Default::default(),
        };
        let network = rc.network.as_deref().or(step.network.as_deref());
        crate::isolation::refuse_unconfined_step(&step.confinement_request(&rc), permissions)?;
        // `host` got past the policy above only with stepPermissions.hostNetwork.
        let declared =
            |n: &&str| n.eq_ignore_ascii_case("host") || networks.iter().any(|d| d.name == *n);
        if let Some(n) = network.filter(|n| !declared(n)) {
            return Err(crate::isolation::StepRefused {
                step: step.id.clone(),
                what: format!("--network '{n}'"),
                reason: format!(
                    "expected a network the task file declares ({})",
                    networks
                        .iter()
                        .map(|d| d.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
            .into());
        }
    }
    let created = networks.into_iter().collect();
    Ok(Plan {
        task,
        deps,
        networks: created,
        permissions: permissions.clone(),
    })
}

/// acb's secret rules (`graph/secret.go` `Validate`, `graph/task.go`):
/// an ID without spaces, unique case-insensitively; a source (`keyvault`,
/// or Slipway's `secret`); a `clientID` that is a UUID.
fn check_secrets(secrets: &[TaskSecret]) -> Result<(), TaskFileError> {
    let mut ids: HashSet<String> = HashSet::new();
    for (i, s) in secrets.iter().enumerate() {
        let bad = |reason: String| Err(TaskFileError::Task(format!("secrets[{i}]: {reason}")));
        if s.id.trim().is_empty() {
            return bad(
                "'id' is empty: expected the name templates use as {{.Secrets.<id>}}".into(),
            );
        }
        if s.id.contains(char::is_whitespace) {
            return bad(format!(
                "'id' is {:?}: secret IDs cannot contain spaces",
                s.id
            ));
        }
        if !ids.insert(s.id.to_lowercase()) {
            return bad(format!(
                "'id' {:?} is declared twice (secret IDs are compared case-insensitively)",
                s.id
            ));
        }
        let has = |v: &Option<String>| v.as_deref().is_some_and(|v| !v.trim().is_empty());
        if !has(&s.keyvault) && !has(&s.secret) {
            return bad(format!(
                "secret {:?} has no source: expected 'keyvault' or 'secret'",
                s.id
            ));
        }
        if let Some(c) = s.client_id.as_deref().filter(|c| !c.is_empty()) {
            if !crate::names::is_guid(c) {
                return bad(format!(
                    "'clientID' is {:?}: expected a managed identity's client ID (a UUID)",
                    crate::echo::truncate(c)
                ));
            }
        }
    }
    Ok(())
}

/// Adds `:latest` to an image reference with neither tag nor digest.
pub fn normalize_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || last.contains('@') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(yaml: &str) -> Result<Plan, String> {
        parse_task(yaml)
            .and_then(|t| plan(t, false, &Default::default()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn yaml_1_1_booleans_and_an_empty_version_read_as_acb_reads_them() {
        // acb parses task files with a YAML 1.1 parser and defaults an
        // empty version (graph/task.go).
        let t = parse_task(
            "version: \"\"\nsteps:\n  - cmd: a\n    detach: yes\n    keep: On\n    pull: n\n    ignoreErrors: TRUE\n",
        )
        .unwrap();
        let step = &t.steps[0];
        assert!(step.detach && step.keep && step.ignore_errors && !step.pull);
        assert!(plan(t, false, &Default::default()).is_ok());
        let e = parse_task("steps:\n  - cmd: a\n    keep: maybe\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'maybe' is not a boolean"), "{e}");
        // Quoted or not, YAML 1.1 spellings are booleans here (acb's fields are bools).
        let quoted = parse_task("steps:\n  - cmd: a\n    detach: 'no'\n").unwrap();
        assert!(!quoted.steps[0].detach);
        // A key with nothing after it is Go's zero value, as in acb.
        let empty =
            parse_task("steps:\n  - cmd: a\n    privileged:\n    env:\n    timeout:\n").unwrap();
        assert!(!empty.steps[0].privileged && empty.steps[0].env.is_empty());
        assert_eq!(empty.steps[0].timeout, 0);
    }

    #[test]
    fn when_defaults_to_the_previous_step_and_dash_runs_at_once() {
        let plan = p("steps:\n  - cmd: a\n  - id: b\n    cmd: b\n    when: ['-']\n  - cmd: c\n  - cmd: d\n    when: [acb_step_0, b]\n").unwrap();
        assert_eq!(plan.deps, vec![vec![], vec![], vec![1], vec![0, 1]]);
        let s = &plan.task.steps;
        assert_eq!(s[0].id, "acb_step_0");
        assert_eq!(s[2].id, "acb_step_2");
        assert_eq!(s[0].timeout, 600);
        assert_eq!(s[0].retry_delay, 5);
        assert_eq!(s[0].network.as_deref(), Some(DEFAULT_NETWORK));
        assert_eq!(s[0].workdir().as_deref(), Some("/workspace"));
    }

    #[test]
    fn acb_errors() {
        let e =
            p("steps:\n  - cmd: a\n    when: [later]\n  - id: later\n    cmd: b\n").unwrap_err();
        assert_eq!(
            e,
            "later does not exist as a vertex [from: later, to: acb_step_0]"
        );
        let e = p("steps:\n  - cmd: a\n    build: .\n").unwrap_err();
        assert!(e.contains("single build, cmd, or push"), "{e}");
        let e = p("steps:\n  - id: x\n    cmd: a\n    when: ['-', y]\n").unwrap_err();
        assert!(e.contains("immediate execution token"), "{e}");
        let e = p("version: v2\nsteps: []\n").unwrap_err();
        assert!(e.contains("invalid version specified: \"v2\""), "{e}");
        let e = p("steps:\n  - id: a b\n    cmd: x\n").unwrap_err();
        assert!(e.contains("cannot contain spaces"), "{e}");
        let e = p("steps:\n  - id: a\n    cmd: x\n  - id: a\n    cmd: y\n").unwrap_err();
        assert_eq!(e, "a already exists as a vertex");
        assert_eq!(parse_task("  \n").unwrap_err(), TaskFileError::Empty);
        assert_eq!(
            TaskFileError::Empty.to_string(),
            "rendered template was empty"
        );
    }

    #[test]
    fn env_merges_with_step_keys_winning_and_pushes_normalize() {
        let plan = p("stepTimeout: 30\nenv: ['A=task', 'B=task']\nsteps:\n  - cmd: x\n    env: ['A=step']\n    timeout: 5\n  - push: [r/app, r/app:latest, r/app:v1]\n").unwrap();
        assert_eq!(plan.task.steps[0].env, vec!["A=step", "B=task"]);
        assert_eq!(plan.task.steps[0].timeout, 5);
        assert_eq!(plan.task.steps[1].timeout, 30);
        assert_eq!(plan.task.steps[1].push, vec!["r/app:latest", "r/app:v1"]);
    }
}
