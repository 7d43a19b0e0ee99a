//! `slipway task render` (like `acb render`): renders a task file with a
//! values file, `--set` values and run variables exactly as a run would,
//! and prints the YAML and the planned steps. Nothing runs and no server is
//! asked; files are read beneath the context folder.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{json, Value};
use slipway_core::tasks::values::{merge_values, parse_set, template_data, RunVariables};

use crate::output::{emit, rows};
use crate::OutputFormat;

/// The largest task or values file read, bytes (as a run reads them).
const MAX_FILE_BYTES: u64 = 4 << 20;

/// `slipway task render` arguments.
#[derive(Debug, clap::Args)]
pub struct TaskRender {
    /// Task file, relative to the context.
    #[arg(short = 'f', long, default_value = "acb.yaml")]
    file: String,
    /// The folder holding the task file, values file and alias files.
    #[arg(short = 'c', long, default_value = ".")]
    context: PathBuf,
    /// Values file, relative to the context.
    #[arg(long)]
    values: Option<String>,
    /// `key=value` (flat keys, as acb's `--set`). Repeatable.
    #[arg(long)]
    set: Vec<String>,
    /// `.Run.ID`.
    #[arg(long, default_value = "cf1")]
    id: String,
    /// `.Run.Registry` (and `.Run.RegistryName`).
    #[arg(short = 'r', long, default_value = "localhost:5000")]
    registry: String,
    /// `.Run.Commit`.
    #[arg(long, default_value = "")]
    commit: String,
    /// `.Run.Branch`.
    #[arg(long, default_value = "")]
    branch: String,
    /// `.Run.TaskName`.
    #[arg(long, default_value = "")]
    task_name: String,
    /// `.Run.GitTag`.
    #[arg(long, default_value = "")]
    git_tag: String,
}

/// Renders and prints; `-o json|yaml` gives `{yaml, steps: [{id, after,
/// kind, what, timeout}]}`.
///
/// Errors: unreadable files (named), bad `--set`, and the template's or
/// acb's own message for a task file a run would refuse.
pub fn run(output: OutputFormat, args: TaskRender) -> anyhow::Result<ExitCode> {
    let tree = slipway_hostfs::Tree::open(&args.context)
        .with_context(|| format!("context folder '{}'", args.context.display()))?;
    let text = tree
        .read_to_string(&args.file, MAX_FILE_BYTES)
        .with_context(|| format!("task file '{}'", args.file))?;
    let values_text = match &args.values {
        Some(f) => Some(
            tree.read_to_string(f, MAX_FILE_BYTES)
                .with_context(|| format!("values file '{f}'"))?,
        ),
        None => None,
    };
    let set = parse_set(&args.set).map_err(anyhow::Error::msg)?;
    let values = merge_values(values_text.as_deref(), &set).map_err(anyhow::Error::msg)?;
    let vars = RunVariables {
        id: args.id,
        shared_volume: "/workspace".into(),
        registry_name: RunVariables::registry_name_of(&args.registry),
        registry: args.registry,
        date: RunVariables::date_of(chrono::Utc::now()),
        os: "linux".into(),
        architecture: "amd64".into(),
        commit: args.commit,
        branch: args.branch,
        task_name: args.task_name,
        repository: String::new(),
        triggered_by: "manual".into(),
        git_tag: args.git_tag,
        os_version: String::new(),
    };
    let data = template_data(&vars, &values, &BTreeMap::new());
    let rendered = slipway_tasks::render_task(
        &slipway_fetch::Fetcher::system(),
        &text,
        &data,
        &args.context,
        &Default::default(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let plan = &rendered.plan;
    let steps: Vec<Value> = plan
        .task
        .steps
        .iter()
        .zip(&plan.deps)
        .map(|(step, deps)| {
            let (kind, what) = match (&step.build, &step.cmd) {
                (Some(b), _) => ("build", b.clone()),
                (None, Some(c)) => ("cmd", c.clone()),
                (None, None) => ("push", step.push.join(" ")),
            };
            let after: Vec<&str> = deps
                .iter()
                .map(|&d| plan.task.steps[d].id.as_str())
                .collect();
            json!({"id": step.id, "after": after, "kind": kind, "what": what, "timeout": step.timeout})
        })
        .collect();
    let doc = json!({"yaml": rendered.yaml, "steps": steps});
    emit(output, &doc, |d| {
        let table: Vec<Value> = steps
            .iter()
            .map(|s| {
                json!({"STEP": s["id"], "AFTER": s["after"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")).unwrap_or_default(),
                       "KIND": s["kind"], "WHAT": s["what"], "TIMEOUT": s["timeout"]})
            })
            .collect();
        format!(
            "{}\n# plan: {} step(s)\n{}",
            d["yaml"].as_str().unwrap_or_default().trim_end(),
            steps.len(),
            rows(&table, &["STEP", "AFTER", "KIND", "WHAT", "TIMEOUT"])
        )
    });
    Ok(ExitCode::SUCCESS)
}
