//! `slipway env …`: environments and their operations, logs, outputs,
//! actions.

use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use slipway_core::parameters::coerce_cli_value;
use slipway_core::{OperationStatus, ParameterType};
use slipway_wire::ade::{
    Environment, EnvironmentDefinition, EnvironmentOperation, EnvironmentOutputs, EnvironmentPatch,
    EnvironmentRequest, OperationDetails, Paged,
};

use crate::api_client::{escape, ApiClient};
use crate::output::{emit, rows, s, value_list};
use crate::OutputFormat;

/// Parameters from the command line.
#[derive(Debug, Args, Clone)]
pub struct ParamArgs {
    /// A parameter `id=value` (typed by the definition), repeatable.
    #[arg(long = "param", short = 'p', value_name = "ID=VALUE")]
    pub params: Vec<String>,
    /// A JSON object of parameters, inline or `@file.json`.
    #[arg(long)]
    pub parameters: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Create an environment and deploy it.
    #[command(
        after_help = "Example: slipway env create web --project demo --environment-type Dev --catalog examples --definition HelloTerraform -p name=web --expiration 2026-12-31T18:00:00Z"
    )]
    Create {
        /// Environment name.
        name: String,
        /// Project.
        #[arg(long, env = "SLIPWAY_PROJECT")]
        project: String,
        /// Project environment type.
        #[arg(long)]
        environment_type: String,
        /// Catalog.
        #[arg(long)]
        catalog: String,
        /// Environment definition.
        #[arg(long)]
        definition: String,
        #[command(flatten)]
        params: ParamArgs,
        /// Expiration (RFC 3339): the environment is deleted then.
        #[arg(long)]
        expiration: Option<String>,
        /// Return once queued.
        #[arg(long)]
        no_wait: bool,
    },
    /// Redeploy an environment; given parameters override its current ones.
    #[command(after_help = "Example: slipway env deploy web --project demo -p name=web2")]
    Deploy {
        /// Environment name.
        name: String,
        /// Project.
        #[arg(long, env = "SLIPWAY_PROJECT")]
        project: String,
        #[command(flatten)]
        params: ParamArgs,
        /// Return once queued.
        #[arg(long)]
        no_wait: bool,
    },
    /// Show an environment.
    #[command(after_help = "Example: slipway env show web --project demo")]
    Show {
        /// Environment name.
        name: String,
        /// Project.
        #[arg(long, env = "SLIPWAY_PROJECT")]
        project: String,
    },
    /// List environments.
    #[command(after_help = "Example: slipway env list --project demo --all")]
    List {
        /// Project.
        #[arg(long, env = "SLIPWAY_PROJECT")]
        project: String,
        /// Every user's environments, not just mine.
        #[arg(long)]
        all: bool,
    },
    /// Delete an environment (runs the definition's delete operation).
    #[command(after_help = "Example: slipway env delete web --project demo")]
    Delete {
        /// Environment name.
        name: String,
        /// Project.
        #[arg(long, env = "SLIPWAY_PROJECT")]
        project: String,
        /// Remove the record even if the delete fails, and at once when the definition is gone.
        #[arg(long)]
        force: bool,
        /// Return once queued.
        #[arg(long)]
        no_wait: bool,
    },
    /// Set or clear (`--expiration none`) the expiration date.
    #[command(
        after_help = "Example: slipway env update-expiration web --project demo --expiration 2026-12-31T18:00:00Z"
    )]
    UpdateExpiration {
        /// Environment name.
        name: String,
        /// Project.
        #[arg(long, env = "SLIPWAY_PROJECT")]
        project: String,
        /// RFC 3339 time, or `none`.
        #[arg(long)]
        expiration: String,
    },
    /// List scheduled actions.
    #[command(after_help = "Example: slipway env list-actions web --project demo")]
    ListActions {
        /// Environment name.
        name: String,
        /// Project.
        #[arg(long, env = "SLIPWAY_PROJECT")]
        project: String,
    },
    /// Skip the scheduled delete.
    #[command(after_help = "Example: slipway env skip-action web --project demo")]
    SkipAction {
        /// Environment name.
        name: String,
        /// Project.
        #[arg(long, env = "SLIPWAY_PROJECT")]
        project: String,
        /// Action name (default `<env>-Delete`).
        #[arg(long)]
        action: Option<String>,
    },
    /// Move the scheduled delete to a later time.
    #[command(
        after_help = "Example: slipway env delay-action web --project demo --until 2027-01-07T18:00:00Z"
    )]
    DelayAction {
        /// Environment name.
        name: String,
        /// Project.
        #[arg(long, env = "SLIPWAY_PROJECT")]
        project: String,
        /// Action name (default `<env>-Delete`).
        #[arg(long)]
        action: Option<String>,
        /// New time (RFC 3339).
        #[arg(long)]
        until: String,
    },
    /// Cancel the running or queued operation (default: the latest).
    #[command(after_help = "Example: slipway env cancel web --project demo")]
    Cancel {
        /// Environment name.
        name: String,
        /// Project.
        #[arg(long, env = "SLIPWAY_PROJECT")]
        project: String,
        /// Operation id.
        #[arg(long)]
        operation: Option<String>,
    },
    /// Print an operation's log (default: the latest operation).
    #[command(after_help = "Example: slipway env logs web --project demo --follow")]
    Logs {
        /// Environment name.
        name: String,
        /// Project.
        #[arg(long, env = "SLIPWAY_PROJECT")]
        project: String,
        /// Operation id.
        #[arg(long)]
        operation: Option<String>,
        /// Keep printing until the operation ends.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Show outputs.
    #[command(after_help = "Example: slipway env outputs web --project demo -o json")]
    Outputs {
        /// Environment name.
        name: String,
        /// Project.
        #[arg(long, env = "SLIPWAY_PROJECT")]
        project: String,
    },
    /// List operations.
    #[command(after_help = "Example: slipway env operations web --project demo")]
    Operations {
        /// Environment name.
        name: String,
        /// Project.
        #[arg(long, env = "SLIPWAY_PROJECT")]
        project: String,
    },
}

fn env_path(project: &str, name: &str) -> String {
    format!("/projects/{project}/users/me/environments/{name}")
}

fn latest_operation(client: &ApiClient, project: &str, name: &str) -> anyhow::Result<String> {
    let ops: Paged<EnvironmentOperation> =
        client.get_as(&format!("{}/operations", env_path(project, name)))?;
    ops.value
        .first()
        .map(|o| o.operation_id.clone())
        .ok_or_else(|| anyhow!("environment '{name}' has no operations"))
}

/// Builds the parameters object from `--parameters` and `--param`, typing
/// each `--param` by the definition's declared type.
fn collect_params(
    args: &ParamArgs,
    definition: &EnvironmentDefinition,
    base: Map<String, Value>,
) -> anyhow::Result<Map<String, Value>> {
    let mut out = base;
    if let Some(p) = &args.parameters {
        let text = match p.strip_prefix('@') {
            Some(file) => std::fs::read_to_string(file)
                .with_context(|| format!("reading --parameters file '{file}'"))?,
            None => p.clone(),
        };
        let v: Value = serde_json::from_str(&text).context("--parameters must be a JSON object")?;
        let Value::Object(m) = v else {
            bail!(
                "--parameters must be a JSON object, found {}",
                slipway_core::manifest::describe_value(&v)
            );
        };
        out.extend(m);
    }
    for kv in &args.params {
        let (k, raw) = kv
            .split_once('=')
            .ok_or_else(|| anyhow!("--param '{kv}': expected ID=VALUE"))?;
        let ty = definition
            .parameters
            .iter()
            .find(|d| d.id == k)
            .and_then(|d| ParameterType::parse(&d.parameter_type))
            .unwrap_or(ParameterType::String);
        let v = coerce_cli_value(k, ty, raw).map_err(|e| anyhow!("--param {e}"))?;
        out.insert(k.to_string(), v);
    }
    Ok(out)
}

fn env_table(env: &Environment) -> String {
    let mut out = format!(
        "{}  {}  type={} definition={}/{}\n",
        env.name,
        env.provisioning_state.as_str(),
        env.environment_type,
        env.catalog_name,
        env.environment_definition_name
    );
    out.push_str(&format!(
        "  parameters: {}\n",
        Value::Object(env.parameters.clone())
    ));
    if let Some(e) = &env.error {
        out.push_str(&format!("  error: {}: {}\n", e.code, e.message));
    }
    out
}

fn outputs_table(v: &EnvironmentOutputs) -> String {
    let mut out = String::new();
    for (k, o) in &v.outputs {
        out.push_str(&format!("{k} ({}) = {}\n", o.output_type, o.value));
    }
    if out.is_empty() {
        out.push_str("(no outputs)\n");
    }
    out
}

/// Follows an operation: prints its log as it grows (when `show_log`),
/// waits for its end and returns the final operation status.
fn follow(
    client: &ApiClient,
    project: &str,
    name: &str,
    op_id: &str,
    show_log: bool,
) -> anyhow::Result<OperationDetails> {
    let logs = format!("{}/operations/{op_id}/logs", env_path(project, name));
    if show_log {
        client.follow_log(&logs, &mut std::io::stdout())?;
    } else {
        // The stream ends when the operation has ended.
        client.follow_log(&logs, &mut std::io::sink())?;
    }
    client.get_as(&format!("/projects/{project}/operationstatuses/{op_id}"))
}

fn op_id_from(reply: &crate::api_client::Reply) -> anyhow::Result<String> {
    reply
        .operation_location
        .as_deref()
        .and_then(|l| l.rsplit('/').next())
        .map(str::to_string)
        .ok_or_else(|| anyhow!("the server did not return an Operation-Location header"))
}

/// Waits for an operation (unless `no_wait`) and reports the result.
fn finish_operation(
    client: &ApiClient,
    output: OutputFormat,
    project: &str,
    name: &str,
    op_id: &str,
    no_wait: bool,
    show_outputs: bool,
) -> anyhow::Result<ExitCode> {
    if no_wait {
        println!("operation {op_id} queued");
        return Ok(ExitCode::SUCCESS);
    }
    let show_log = output == OutputFormat::Table;
    let status = follow(client, project, name, op_id, show_log)?;
    if output != OutputFormat::Table {
        emit(output, &json!(status), |_| String::new());
    } else {
        eprintln!("operation {op_id}: {}", status.status.as_str());
    }
    if status.status != OperationStatus::Succeeded {
        if let Some(e) = &status.error {
            eprintln!("error: {}: {}", e.code, e.message);
        }
        return Ok(ExitCode::FAILURE);
    }
    if show_outputs && output == OutputFormat::Table {
        let v: EnvironmentOutputs =
            client.get_as(&format!("{}/outputs", env_path(project, name)))?;
        print!("outputs:\n{}", outputs_table(&v));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(client: &ApiClient, output: OutputFormat, cmd: EnvCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        EnvCommand::Create {
            name,
            project,
            environment_type,
            catalog,
            definition,
            params,
            expiration,
            no_wait,
        } => {
            let def: EnvironmentDefinition = client.get_as(&format!(
                "/projects/{project}/catalogs/{catalog}/environmentDefinitions/{definition}"
            ))?;
            let parameters = collect_params(&params, &def, Map::new())?;
            let body = EnvironmentRequest {
                environment_type: Some(environment_type),
                catalog_name: Some(catalog),
                environment_definition_name: Some(definition),
                parameters: Some(Value::Object(parameters)),
                expiration_date: expiration,
            };
            let reply = client.send_typed("PUT", &env_path(&project, &name), &body)?;
            let op = op_id_from(&reply)?;
            finish_operation(client, output, &project, &name, &op, no_wait, true)
        }
        EnvCommand::Deploy {
            name,
            project,
            params,
            no_wait,
        } => {
            let current: Environment = client.get_as(&env_path(&project, &name))?;
            let def: EnvironmentDefinition = client.get_as(&format!(
                "/projects/{project}/catalogs/{}/environmentDefinitions/{}",
                current.catalog_name, current.environment_definition_name
            ))?;
            let parameters = collect_params(&params, &def, current.parameters)?;
            let body = EnvironmentRequest {
                environment_type: Some(current.environment_type),
                catalog_name: Some(current.catalog_name),
                environment_definition_name: Some(current.environment_definition_name),
                parameters: Some(Value::Object(parameters)),
                expiration_date: None,
            };
            let reply = client.send_typed("PUT", &env_path(&project, &name), &body)?;
            let op = op_id_from(&reply)?;
            finish_operation(client, output, &project, &name, &op, no_wait, true)
        }
        EnvCommand::Show { name, project } => {
            let env: Environment = client.get_as(&env_path(&project, &name))?;
            emit(output, &json!(env), |_| env_table(&env));
            Ok(ExitCode::SUCCESS)
        }
        EnvCommand::List { project, all } => {
            let path = if all {
                format!("/projects/{project}/environments")
            } else {
                format!("/projects/{project}/users/me/environments")
            };
            let v = client.get(&path)?;
            emit(output, &v, |v| {
                rows(
                    &value_list(v),
                    &[
                        "name",
                        "provisioningState",
                        "environmentType",
                        "environmentDefinitionName",
                        "user",
                    ],
                )
            });
            Ok(ExitCode::SUCCESS)
        }
        EnvCommand::Delete {
            name,
            project,
            force,
            no_wait,
        } => {
            let path = if force {
                format!("{}?force=true", env_path(&project, &name))
            } else {
                env_path(&project, &name)
            };
            let reply = client.send("DELETE", &path, None)?;
            if reply.operation_location.is_none() {
                println!("environment '{name}' removed");
                return Ok(ExitCode::SUCCESS);
            }
            let op = op_id_from(&reply)?;
            finish_operation(client, output, &project, &name, &op, no_wait, false)
        }
        EnvCommand::UpdateExpiration {
            name,
            project,
            expiration,
        } => {
            let patch = EnvironmentPatch {
                expiration_date: (expiration != "none").then_some(expiration),
            };
            let env: Environment = client
                .send_typed("PATCH", &env_path(&project, &name), &patch)?
                .parse()?;
            emit(output, &json!(env), |_| env_table(&env));
            Ok(ExitCode::SUCCESS)
        }
        EnvCommand::ListActions { name, project } => {
            let v = client.get(&format!("{}/actions", env_path(&project, &name)))?;
            emit(output, &v, |v| {
                let items: Vec<Value> = value_list(v)
                    .into_iter()
                    .map(|mut a| {
                        a["scheduledTime"] = a["next"]["scheduledTime"].clone();
                        a
                    })
                    .collect();
                rows(
                    &items,
                    &["name", "actionType", "scheduledTime", "lastModifiedBy"],
                )
            });
            Ok(ExitCode::SUCCESS)
        }
        EnvCommand::SkipAction {
            name,
            project,
            action,
        } => {
            let a = action.unwrap_or_else(|| format!("{name}-Delete"));
            client.send(
                "POST",
                &format!("{}/actions/{a}:skip", env_path(&project, &name)),
                None,
            )?;
            println!("action '{a}' skipped");
            Ok(ExitCode::SUCCESS)
        }
        EnvCommand::DelayAction {
            name,
            project,
            action,
            until,
        } => {
            let a = action.unwrap_or_else(|| format!("{name}-Delete"));
            let v = client
                .send(
                    "POST",
                    &format!(
                        "{}/actions/{a}:delay?until={}",
                        env_path(&project, &name),
                        escape(&until)
                    ),
                    None,
                )?
                .json()?;
            emit(output, &v, |v| {
                format!(
                    "{} now at {}\n",
                    s(v, "name"),
                    s(&v["next"], "scheduledTime")
                )
            });
            Ok(ExitCode::SUCCESS)
        }
        EnvCommand::Cancel {
            name,
            project,
            operation,
        } => {
            let op = match operation {
                Some(o) => o,
                None => latest_operation(client, &project, &name)?,
            };
            let v = client
                .send(
                    "POST",
                    &format!("{}/operations/{op}:cancel", env_path(&project, &name)),
                    None,
                )?
                .json()?;
            emit(output, &v, |v| {
                format!("operation {op}: {}\n", s(v, "status"))
            });
            Ok(ExitCode::SUCCESS)
        }
        EnvCommand::Logs {
            name,
            project,
            operation,
            follow: keep,
        } => {
            let op = match operation {
                Some(o) => o,
                None => latest_operation(client, &project, &name)?,
            };
            if keep {
                follow(client, &project, &name, &op, true)?;
            } else {
                let reply = client.send(
                    "GET",
                    &format!("{}/operations/{op}/logs", env_path(&project, &name)),
                    None,
                )?;
                print!("{}", reply.body);
            }
            Ok(ExitCode::SUCCESS)
        }
        EnvCommand::Outputs { name, project } => {
            let v: EnvironmentOutputs =
                client.get_as(&format!("{}/outputs", env_path(&project, &name)))?;
            emit(output, &json!(v), |_| outputs_table(&v));
            Ok(ExitCode::SUCCESS)
        }
        EnvCommand::Operations { name, project } => {
            let v = client.get(&format!("{}/operations", env_path(&project, &name)))?;
            emit(output, &v, |v| {
                rows(
                    &value_list(v),
                    &[
                        "operationId",
                        "kind",
                        "status",
                        "startTime",
                        "endTime",
                        "catalogCommit",
                    ],
                )
            });
            Ok(ExitCode::SUCCESS)
        }
    }
}
