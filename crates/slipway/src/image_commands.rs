//! `slipway image build` (like `az acr build`) and `slipway task …` (like
//! `az acr task`): container image tasks from the command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::{json, Value};
use slipway_core::tasks::TaskRunStatus;
use slipway_wire::tasks::TaskRun;

use crate::api_client::ApiClient;
use crate::output::{any_table, emit, rows, value_list};
use crate::OutputFormat;

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build an image from a context and push it (a quick task).
    #[command(
        after_help = "Example: slipway image build ./app -t app:{{.Run.ID}} --build-arg VERSION=1.2 --secret-build-arg NPM_TOKEN=abc"
    )]
    Build {
        /// A local folder (uploaded as a tarball, honouring .dockerignore),
        /// a git URL `https://…/repo.git#ref:folder`, or a tarball URL.
        context: String,
        /// Image name, templated (`app:{{.Run.ID}}`); names without a
        /// registry go to the embedded registry. Repeatable.
        #[arg(short = 't', long = "image")]
        images: Vec<String>,
        /// Dockerfile path in the context.
        #[arg(short = 'f', long)]
        file: Option<String>,
        /// `NAME=VALUE` build argument. Repeatable.
        #[arg(long = "build-arg")]
        build_args: Vec<String>,
        /// `NAME=VALUE` build argument whose value never shows in logs. Repeatable.
        #[arg(long = "secret-build-arg")]
        secret_build_args: Vec<String>,
        /// Stage to build.
        #[arg(long)]
        target: Option<String>,
        /// `os/arch[/variant]`.
        #[arg(long)]
        platform: Option<String>,
        /// Build only.
        #[arg(long)]
        no_push: bool,
        /// Run timeout in seconds (300–28800; default 3600).
        #[arg(long)]
        timeout: Option<u64>,
        /// Do not follow the log; print the run id.
        #[arg(long)]
        no_logs: bool,
        /// Dev-center secret (kind `token` or `sshKey`) that fetches a git
        /// context (ACR `--git-access-token`).
        #[arg(long)]
        context_secret: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// A login for the embedded registry, for pushing and pulling your own
    /// images: the password alone on stdout (pipe it to `docker login
    /// --password-stdin` or `podman login --password-stdin`), the full
    /// command on stderr; `-o json` prints `{loginServer, username, password}`.
    /// DevCenter Admins only; every hand-out is audited.
    #[command(after_help = "Example: slipway registry login")]
    Login,
}

/// `slipway registry …`.
pub fn run_registry(
    client: &ApiClient,
    output: OutputFormat,
    cmd: RegistryCommand,
) -> anyhow::Result<ExitCode> {
    let RegistryCommand::Login = cmd;
    let v: Value = client
        .send("POST", "/imageTasks/registry/login", None)?
        .json()?;
    match output {
        OutputFormat::Json | OutputFormat::Yaml => emit(output, &v, |_| String::new()),
        OutputFormat::Table => {
            let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            eprintln!(
                "slipway registry login | docker login {} --username {} --password-stdin",
                field("loginServer"),
                field("username")
            );
            println!("{}", field("password"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `slipway task create` arguments.
#[derive(Debug, clap::Args)]
pub struct TaskCreate {
    /// Task name.
    name: String,
    /// Context: a local folder (uploaded now), a git URL or a tarball URL;
    /// omit with `--task-file-inline`.
    #[arg(short = 'c', long)]
    context: Option<String>,
    /// Dev-center secret (kind `token` or `sshKey`) that fetches a git
    /// context (ACR `--git-access-token`).
    #[arg(long)]
    context_secret: Option<String>,
    /// Task file (acb YAML) in the context, default `acb.yaml`; a name
    /// without a YAML extension is a Dockerfile (then `-t` applies).
    #[arg(short = 'f', long)]
    file: Option<String>,
    /// A local task file sent inline (a task without a context).
    #[arg(long)]
    task_file_inline: Option<PathBuf>,
    /// Images of a Dockerfile task. Repeatable.
    #[arg(short = 't', long = "image")]
    images: Vec<String>,
    /// Values file in the context.
    #[arg(long)]
    values: Option<String>,
    /// `key=value`. Repeatable.
    #[arg(long)]
    set: Vec<String>,
    /// `key=value` read as `{{.Values.key}}`, stored sealed, masked in
    /// logs and never shown. Repeatable.
    #[arg(long)]
    set_secret: Vec<String>,
    /// `[name:]cron` (5 fields, UTC). Repeatable.
    #[arg(long)]
    schedule: Vec<String>,
    /// Source-commit trigger: the secret that signs webhook deliveries
    /// (GitHub/Gitea HMAC key, GitLab token) sent to
    /// `POST /imageTasks/webhooks/<name>`.
    #[arg(long)]
    webhook_secret: Option<String>,
    /// Source-commit trigger: poll the git remote every N seconds (5–86400).
    #[arg(long)]
    poll_interval: Option<u64>,
    /// Base-image trigger type `Runtime` or `All`; `none` disables it.
    #[arg(long, default_value = "Runtime")]
    base_image_trigger_type: String,
    /// Run timeout in seconds.
    #[arg(long)]
    timeout: Option<u64>,
    /// Grant the task's steps `--privileged` (stepPermissions.privileged;
    /// recorded in the audit log).
    #[arg(long)]
    grant_privileged: bool,
    /// Grant the task's steps `--network host` (stepPermissions.hostNetwork).
    #[arg(long)]
    grant_host_network: bool,
    /// Grant the task's steps bind mounts of this host folder or beneath it
    /// (stepPermissions.hostPaths). Repeatable.
    #[arg(long)]
    grant_host_path: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Create or replace a task.
    #[command(
        after_help = "Example: slipway task create nightly -c https://github.com/example/app.git#main -f acb.yaml --schedule \"0 2 * * *\""
    )]
    Create(Box<TaskCreate>),
    /// Show a task.
    #[command(after_help = "Example: slipway task show nightly")]
    Show { name: String },
    /// List tasks.
    #[command(after_help = "Example: slipway task list")]
    List,
    /// Delete a task.
    #[command(after_help = "Example: slipway task delete nightly")]
    Delete { name: String },
    /// Run a task now and follow its log.
    #[command(after_help = "Example: slipway task run nightly --set tag=v2")]
    Run {
        name: String,
        /// `key=value`. Repeatable.
        #[arg(long)]
        set: Vec<String>,
        /// `key=value` read as `{{.Values.key}}`, masked in logs. Repeatable.
        #[arg(long)]
        set_secret: Vec<String>,
        /// Do not follow the log.
        #[arg(long)]
        no_logs: bool,
    },
    /// List runs, newest first.
    #[command(
        after_help = "Example: slipway task list-runs -n nightly --run-status Failed --top 5"
    )]
    ListRuns {
        /// Only this task's runs.
        #[arg(short = 'n', long)]
        name: Option<String>,
        /// Only runs in this status.
        #[arg(long)]
        run_status: Option<String>,
        #[arg(long, default_value_t = 15)]
        top: u32,
    },
    /// Show a run.
    #[command(after_help = "Example: slipway task show-run ca3")]
    ShowRun { run_id: String },
    /// Print a run's log (following it until the run ends).
    #[command(after_help = "Example: slipway task logs ca3")]
    Logs { run_id: String },
    /// Cancel a run.
    #[command(after_help = "Example: slipway task cancel-run ca3")]
    CancelRun { run_id: String },
    /// Render a task file as a run would (like `acb render`) and print the
    /// YAML and the planned steps; nothing runs, no server is asked.
    #[command(
        after_help = "Example: slipway task render -c ./app -f acb.yaml --values values.yaml --set tag=v2"
    )]
    Render(Box<crate::task_render_command::TaskRender>),
}

/// `--set-secret k=v` arguments → `[{name, value}]`.
fn secret_values(args: &[String]) -> anyhow::Result<Vec<Value>> {
    args.iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok(json!({"name": k, "value": v})),
            _ => bail!(
                "--set-secret '{}': expected name=value",
                a.split('=').next().unwrap_or_default()
            ),
        })
        .collect()
}

/// Uploads `dir` as a context tarball; returns `upload:<sha256>`.
fn upload(client: &ApiClient, dir: &Path, dockerfile: Option<&str>) -> anyhow::Result<String> {
    let tar = slipway_tasks::context::tar_dir(dir, dockerfile)
        .with_context(|| format!("packing the context '{}'", dir.display()))?;
    eprintln!(
        "Packing source code into tar to upload... ({} bytes)",
        tar.len()
    );
    let v = client
        .send_bytes("PUT", "/imageTasks/contexts", &tar)?
        .json()?;
    v["context"]
        .as_str()
        .map(str::to_string)
        .context("the server did not return a context id")
}

fn context_arg(
    client: &ApiClient,
    context: &str,
    dockerfile: Option<&str>,
) -> anyhow::Result<String> {
    let p = Path::new(context);
    if p.is_dir() {
        upload(client, p, dockerfile)
    } else if context.contains("://") || context.starts_with("git@") {
        Ok(context.to_string())
    } else {
        bail!("context '{context}' is neither a folder nor a URL")
    }
}

/// Follows a run's log until it ends; exit code 0 only when it Succeeded.
fn follow(client: &ApiClient, run_id: &str) -> anyhow::Result<ExitCode> {
    client.follow_log(
        &format!("/imageTasks/runs/{run_id}/logs"),
        &mut std::io::stdout(),
    )?;
    let run: TaskRun = client.get_as(&format!("/imageTasks/runs/{run_id}"))?;
    Ok(if run.status == TaskRunStatus::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn started(client: &ApiClient, run: &TaskRun, no_logs: bool) -> anyhow::Result<ExitCode> {
    let id = &run.run_id;
    if no_logs {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    follow(client, id)
}

pub fn run_image(client: &ApiClient, cmd: ImageCommand) -> anyhow::Result<ExitCode> {
    let ImageCommand::Build {
        context,
        images,
        file,
        build_args,
        secret_build_args,
        target,
        platform,
        no_push,
        timeout,
        no_logs,
        context_secret,
    } = cmd;
    if images.is_empty() && !no_push {
        eprintln!("WARNING: '--image or -t' is not provided. Skipping image push after build.");
    }
    let ctx = context_arg(client, &context, file.as_deref())?;
    let body = json!({
        "context": ctx, "images": images, "file": file, "buildArgs": build_args,
        "secretBuildArgs": secret_build_args, "target": target, "platform": platform,
        "noPush": no_push || images.is_empty(), "timeout": timeout.unwrap_or(0),
        "contextSecret": context_secret,
    });
    let run: TaskRun = client
        .send("POST", "/imageTasks/builds", Some(&body))?
        .parse()?;
    started(client, &run, no_logs)
}

pub fn run_task(
    client: &ApiClient,
    output: OutputFormat,
    cmd: TaskCommand,
) -> anyhow::Result<ExitCode> {
    let print = |v: Value| {
        emit(output, &v, any_table);
        Ok(ExitCode::SUCCESS)
    };
    match cmd {
        TaskCommand::Create(args) => {
            let TaskCreate {
                name,
                context,
                context_secret,
                file,
                task_file_inline,
                images,
                values,
                set,
                set_secret,
                schedule,
                webhook_secret,
                poll_interval,
                base_image_trigger_type,
                timeout,
                grant_privileged,
                grant_host_network,
                grant_host_path,
            } = *args;
            let is_yaml = |f: &str| [".yaml", ".yml"].iter().any(|e| f.ends_with(e));
            let dockerfile = file.as_deref().filter(|f| !is_yaml(f));
            let ctx = context
                .as_deref()
                .map(|c| context_arg(client, c, dockerfile))
                .transpose()?;
            let mut body = json!({"context": ctx, "contextSecret": context_secret, "set": set, "setSecret": secret_values(&set_secret)?, "valuesFile": values, "timeout": timeout.unwrap_or(0)});
            if webhook_secret.is_some() || poll_interval.is_some() {
                body["sourceTrigger"] =
                    json!({"webhookSecret": webhook_secret, "pollIntervalSeconds": poll_interval});
            }
            if let Some(p) = task_file_inline {
                body["encodedTask"] = json!(std::fs::read_to_string(&p)
                    .with_context(|| format!("reading '{}'", p.display()))?);
            } else if dockerfile.is_some() || !images.is_empty() {
                body["docker"] = json!({"images": images, "file": dockerfile});
            } else {
                body["taskFile"] = json!(file.unwrap_or_else(|| "acb.yaml".into()));
            }
            body["timers"] = json!(schedule
                .iter()
                .map(|s| {
                    // `name:cron`; a cron never contains ':'.
                    match s.split_once(':') {
                        Some((n, c)) => json!({"name": n, "schedule": c.trim()}),
                        None => json!({"name": "", "schedule": s}),
                    }
                })
                .collect::<Vec<_>>());
            if base_image_trigger_type != "none" {
                body["baseImageTrigger"] = json!({"baseImageTriggerType": base_image_trigger_type});
            }
            let grants = slipway_core::isolation::StepPermissions {
                privileged: grant_privileged,
                host_network: grant_host_network,
                host_paths: grant_host_path,
            };
            if !grants.is_empty() {
                body["stepPermissions"] = json!(grants);
            }
            print(
                client
                    .send("PUT", &format!("/imageTasks/tasks/{name}"), Some(&body))?
                    .json()?,
            )
        }
        TaskCommand::Show { name } => print(client.get(&format!("/imageTasks/tasks/{name}"))?),
        TaskCommand::List => {
            let v = client.get("/imageTasks/tasks")?;
            emit(output, &v, |v| rows(&value_list(v), &["name", "status"]));
            Ok(ExitCode::SUCCESS)
        }
        TaskCommand::Delete { name } => {
            client.send("DELETE", &format!("/imageTasks/tasks/{name}"), None)?;
            println!("task '{name}' deleted");
            Ok(ExitCode::SUCCESS)
        }
        TaskCommand::Run {
            name,
            set,
            set_secret,
            no_logs,
        } => {
            let run = client
                .send(
                    "POST",
                    &format!("/imageTasks/tasks/{name}/runs"),
                    Some(&json!({"set": set, "setSecret": secret_values(&set_secret)?})),
                )?
                .parse::<TaskRun>()?;
            started(client, &run, no_logs)
        }
        TaskCommand::ListRuns {
            name,
            run_status,
            top,
        } => {
            let mut q = format!("/imageTasks/runs?top={top}");
            if let Some(n) = name {
                q.push_str(&format!("&task={n}"));
            }
            if let Some(s) = run_status {
                q.push_str(&format!("&status={s}"));
            }
            let v = client.get(&q)?;
            emit(output, &v, |v| {
                // The trigger type is nested: flatten it for the table.
                let items: Vec<Value> = value_list(v)
                    .into_iter()
                    .map(|mut r| {
                        r["trigger"] = r["trigger"]["type"].clone();
                        r
                    })
                    .collect();
                rows(
                    &items,
                    &[
                        "runId",
                        "task",
                        "status",
                        "trigger",
                        "startTime",
                        "finishTime",
                    ],
                )
            });
            Ok(ExitCode::SUCCESS)
        }
        TaskCommand::ShowRun { run_id } => {
            print(client.get(&format!("/imageTasks/runs/{run_id}"))?)
        }
        TaskCommand::Logs { run_id } => follow(client, &run_id),
        TaskCommand::Render(args) => crate::task_render_command::run(output, *args),
        TaskCommand::CancelRun { run_id } => {
            client.send("POST", &format!("/imageTasks/runs/{run_id}/cancel"), None)?;
            println!("run '{run_id}' cancel requested");
            Ok(ExitCode::SUCCESS)
        }
    }
}
