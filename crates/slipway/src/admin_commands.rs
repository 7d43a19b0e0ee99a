//! `slipway admin …`: projects, environment types, project environment
//! types, role assignments, tokens, secrets.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::Subcommand;
use serde_json::{json, Map, Value};

use crate::api_client::{escape, ApiClient};
use crate::output::{emit, present_rows, rows, s, value_list};
use crate::OutputFormat;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Projects.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Dev-center environment types.
    #[command(subcommand, name = "environment-type")]
    EnvironmentType(NamedCreate),
    /// Project environment types.
    #[command(subcommand, name = "project-environment-type")]
    ProjectEnvironmentType(PetCommand),
    /// Secrets (catalog tokens, SSH keys, deployment identities, registry credentials); values are write-only.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Role assignments.
    #[command(subcommand)]
    Role(RoleCommand),
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The audit log (newest first).
    #[command(
        after_help = "Example: slipway admin audit --project demo --since 2026-12-01T00:00:00Z"
    )]
    Audit {
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
        /// Only this user.
        #[arg(long)]
        user: Option<String>,
        /// Only events at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only events before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Assign a role: 'DevCenter Admin' (scope /), 'Project Admin' (scope
    /// /projects/P), 'Deployment Environments User' or '… Reader' (a project
    /// or /projects/P/environmentTypes/T).
    #[command(
        after_help = "Example: slipway admin role assign alice --role \"Deployment Environments User\" --scope /projects/demo/environmentTypes/Dev"
    )]
    Assign {
        /// User id.
        user: String,
        /// Role name.
        #[arg(long)]
        role: String,
        /// Scope path.
        #[arg(long)]
        scope: String,
    },
    /// List assignments (all, or of one project).
    #[command(after_help = "Example: slipway admin role list --project demo")]
    List {
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
    },
    /// Remove an assignment by id.
    #[command(
        after_help = "Example: slipway admin role remove 6f1c2d3e-0000-4000-8000-000000000000"
    )]
    Remove {
        /// Assignment id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token (for yourself, or for any user as DevCenter Admin); it is shown once.
    #[command(
        after_help = "Example: slipway admin token create --user alice --name laptop --expires-in-days 30"
    )]
    Create {
        /// User the token authenticates as (default: yourself).
        #[arg(long)]
        user: Option<String>,
        /// Label.
        #[arg(long)]
        name: Option<String>,
        /// Days until it expires (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List tokens (metadata only).
    #[command(after_help = "Example: slipway admin token list --user alice")]
    List {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a token by id.
    #[command(after_help = "Example: slipway admin token revoke 0123456789abcdef")]
    Revoke {
        /// Token id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create or update a project.
    #[command(
        after_help = "Example: slipway admin project create demo --description \"Team demo\" --location westeurope"
    )]
    Create {
        /// Project name.
        name: String,
        /// Description.
        #[arg(long)]
        description: Option<String>,
        /// Location given to runners as ADE_ENVIRONMENT_LOCATION.
        #[arg(long)]
        location: Option<String>,
    },
    /// List projects.
    #[command(after_help = "Example: slipway admin project list -o json")]
    List,
}

#[derive(Debug, Subcommand)]
pub enum NamedCreate {
    /// Create or update.
    #[command(
        after_help = "Example: slipway admin environment-type create Dev --display-name Development"
    )]
    Create {
        /// Name.
        name: String,
        /// Display name.
        #[arg(long)]
        display_name: Option<String>,
    },
    /// List.
    #[command(after_help = "Example: slipway admin environment-type list")]
    List,
    /// Delete (refused while a project enables it).
    #[command(after_help = "Example: slipway admin environment-type delete Dev")]
    Delete {
        /// Name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PetCommand {
    /// Enable an environment type in a project.
    #[command(
        after_help = "Example: slipway admin project-environment-type create Dev --project demo --deployment-target-id /subscriptions/00000000-0000-0000-0000-000000000000 --deployment-identity dev-deployer --user-role \"alice=Deployment Environments User\""
    )]
    Create {
        /// Environment type name.
        name: String,
        /// Project.
        #[arg(long, env = "SLIPWAY_PROJECT")]
        project: String,
        /// Deployment target (e.g. `/subscriptions/<id>`).
        #[arg(long)]
        deployment_target_id: Option<String>,
        /// Enabled or Disabled.
        #[arg(long, default_value = "Enabled")]
        status: String,
        /// Display name.
        #[arg(long)]
        display_name: Option<String>,
        /// Name of a `deploymentIdentity` secret given to this type's runners.
        #[arg(long)]
        deployment_identity: Option<String>,
        /// Runtime limit per operation, in minutes.
        #[arg(long)]
        max_runtime_minutes: Option<i64>,
        /// Storage limit per environment, in MiB.
        #[arg(long)]
        max_storage_mb: Option<i64>,
        /// Most environments of this type per user.
        #[arg(long)]
        max_environments_per_user: Option<i64>,
        /// `USER=ROLE` assignments at this type's scope (replaces them), repeatable.
        #[arg(long = "user-role", value_name = "USER=ROLE")]
        user_roles: Vec<String>,
    },
    /// List a project's environment types.
    #[command(after_help = "Example: slipway admin project-environment-type list --project demo")]
    List {
        /// Project.
        #[arg(long, env = "SLIPWAY_PROJECT")]
        project: String,
    },
    /// Remove an environment type from a project (refused while environments of it exist).
    #[command(
        after_help = "Example: slipway admin project-environment-type delete Dev --project demo"
    )]
    Delete {
        /// Environment type name.
        name: String,
        /// Project.
        #[arg(long, env = "SLIPWAY_PROJECT")]
        project: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Create or replace a secret. The value is read from a file, standard
    /// input or an environment variable, never from the command line.
    #[command(
        after_help = "Example: slipway admin secret set gh-token --kind token --from-env GITHUB_TOKEN --host github.com"
    )]
    Set {
        /// Secret name.
        name: String,
        /// `token` (git https), `sshKey` (git ssh), `generic`, or the JSON
        /// kinds `deploymentIdentity` (`{clientId, tenantId, subscriptionId?,
        /// variables?}`) and `registry` (`{server, username, password}`:
        /// pulls runner images from a private registry).
        #[arg(long, default_value = "generic")]
        kind: String,
        /// File holding the value (`-` = standard input).
        #[arg(
            long,
            conflicts_with = "from_env",
            required_unless_present = "from_env"
        )]
        value_file: Option<PathBuf>,
        /// Environment variable holding the value.
        #[arg(long)]
        from_env: Option<String>,
        /// A project's secret (its Project Admins manage it; only that
        /// project's catalogs use it) instead of a dev-center one.
        #[arg(long)]
        project: Option<String>,
        /// A host a `token` may be sent to (repeatable); without, any
        /// https host. Tokens never travel over plain http except to loopback.
        #[arg(long = "host")]
        hosts: Vec<String>,
    },
    /// List secrets (names and kinds; values are never shown).
    #[command(after_help = "Example: slipway admin secret list --project demo")]
    List {
        /// A project's secrets instead of the dev center's.
        #[arg(long)]
        project: Option<String>,
    },
    /// Delete a secret.
    #[command(after_help = "Example: slipway admin secret delete gh-token")]
    Delete {
        /// Secret name.
        name: String,
        /// A project's secret instead of a dev-center one.
        #[arg(long)]
        project: Option<String>,
    },
}

/// The API path of the secrets of `project` (or the dev center).
fn secrets_path(project: Option<&str>) -> String {
    match project {
        Some(p) => format!("/admin/projects/{p}/secrets"),
        None => "/admin/secrets".to_string(),
    }
}

pub fn run(client: &ApiClient, output: OutputFormat, cmd: AdminCommand) -> anyhow::Result<()> {
    let (method, path, body) = match cmd {
        AdminCommand::Project(ProjectCommand::Create {
            name,
            description,
            location,
        }) => (
            "PUT",
            format!("/admin/projects/{name}"),
            Some(json!({"description": description, "location": location})),
        ),
        AdminCommand::Project(ProjectCommand::List) => ("GET", "/admin/projects".to_string(), None),
        AdminCommand::EnvironmentType(NamedCreate::Create { name, display_name }) => (
            "PUT",
            format!("/admin/environmentTypes/{name}"),
            Some(json!({"displayName": display_name})),
        ),
        AdminCommand::ProjectEnvironmentType(PetCommand::Create {
            name,
            project,
            deployment_target_id,
            status,
            display_name,
            deployment_identity,
            max_runtime_minutes,
            max_storage_mb,
            max_environments_per_user,
            user_roles,
        }) => {
            let mut body = json!({
                "deploymentTargetId": deployment_target_id,
                "status": status,
                "displayName": display_name,
                "deploymentIdentity": deployment_identity,
                "limits": {
                    "maxRuntimeMinutes": max_runtime_minutes,
                    "maxStorageMB": max_storage_mb,
                    "maxEnvironmentsPerUser": max_environments_per_user,
                },
            });
            if !user_roles.is_empty() {
                let mut users = Map::new();
                for ur in &user_roles {
                    let (u, r) = ur
                        .split_once('=')
                        .ok_or_else(|| anyhow!("--user-role '{ur}': expected USER=ROLE"))?;
                    users
                        .entry(u.to_string())
                        .or_insert_with(|| json!({"roles": {}}))["roles"][r] = json!({});
                }
                body["userRoleAssignments"] = Value::Object(users);
            }
            (
                "PUT",
                format!("/admin/projects/{project}/environmentTypes/{name}"),
                Some(body),
            )
        }
        AdminCommand::ProjectEnvironmentType(PetCommand::List { project }) => (
            "GET",
            format!("/admin/projects/{project}/environmentTypes"),
            None,
        ),
        AdminCommand::ProjectEnvironmentType(PetCommand::Delete { name, project }) => {
            client.send(
                "DELETE",
                &format!("/admin/projects/{project}/environmentTypes/{name}"),
                None,
            )?;
            println!("environment type '{name}' removed from project '{project}'");
            return Ok(());
        }
        AdminCommand::EnvironmentType(NamedCreate::List) => {
            ("GET", "/admin/environmentTypes".to_string(), None)
        }
        AdminCommand::EnvironmentType(NamedCreate::Delete { name }) => {
            client.send("DELETE", &format!("/admin/environmentTypes/{name}"), None)?;
            println!("environment type '{name}' deleted");
            return Ok(());
        }
        AdminCommand::Role(RoleCommand::Assign { user, role, scope }) => (
            "POST",
            "/admin/roleAssignments".to_string(),
            Some(json!({"principalId": user, "role": role, "scope": scope})),
        ),
        AdminCommand::Role(RoleCommand::List { project }) => (
            "GET",
            match project {
                Some(p) => format!("/admin/roleAssignments?project={p}"),
                None => "/admin/roleAssignments".to_string(),
            },
            None,
        ),
        AdminCommand::Role(RoleCommand::Remove { id }) => {
            client.send("DELETE", &format!("/admin/roleAssignments/{id}"), None)?;
            println!("role assignment '{id}' removed");
            return Ok(());
        }
        AdminCommand::Token(TokenCommand::Create {
            user,
            name,
            expires_in_days,
        }) => {
            let v = client
                .send(
                    "POST",
                    "/admin/tokens",
                    Some(&json!({"user": user, "name": name, "expiresInDays": expires_in_days})),
                )?
                .json()?;
            match output {
                OutputFormat::Json | OutputFormat::Yaml => emit(output, &v, |_| String::new()),
                OutputFormat::Table => {
                    eprintln!(
                        "token '{}' for user '{}' (expires {}); it is shown only once:",
                        s(&v, "id"),
                        s(&v, "user"),
                        s(&v, "expiresAt")
                    );
                    println!("{}", s(&v, "token"));
                }
            }
            return Ok(());
        }
        AdminCommand::Token(TokenCommand::List { user }) => (
            "GET",
            match user {
                Some(u) => format!("/admin/tokens?user={u}"),
                None => "/admin/tokens".to_string(),
            },
            None,
        ),
        AdminCommand::Token(TokenCommand::Revoke { id }) => {
            client.send("DELETE", &format!("/admin/tokens/{id}"), None)?;
            println!("token '{id}' revoked");
            return Ok(());
        }
        AdminCommand::Audit {
            project,
            user,
            since,
            until,
        } => {
            let q: Vec<String> = [
                ("project", project),
                ("user", user),
                ("since", since),
                ("until", until),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k}={}", escape(&v))))
            .collect();
            let v = client.get(&format!("/audit?{}", q.join("&")))?;
            emit(output, &v, |v| {
                rows(
                    &value_list(v),
                    &["time", "user", "action", "project", "source", "result"],
                )
            });
            return Ok(());
        }
        AdminCommand::Secret(SecretCommand::Set {
            name,
            kind,
            value_file,
            from_env,
            project,
            hosts,
        }) => {
            let value = match (value_file, from_env) {
                (Some(f), _) if f.as_os_str() == "-" => {
                    let mut v = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut v)
                        .context("reading the secret from standard input")?;
                    v
                }
                (Some(f), _) => std::fs::read_to_string(&f)
                    .with_context(|| format!("reading the secret from '{}'", f.display()))?,
                (None, Some(var)) => std::env::var(&var)
                    .with_context(|| format!("environment variable '{var}' is not set"))?,
                (None, None) => bail!("one of --value-file or --from-env is required"),
            };
            let value = match kind.as_str() {
                "sshKey" => json!(value),
                "deploymentIdentity" | "registry" => {
                    serde_json::from_str::<serde_json::Value>(&value).with_context(|| {
                        format!("the value of a '{kind}' secret must be a JSON object")
                    })?
                }
                _ => json!(value.trim()),
            };
            let mut body = json!({"kind": kind, "value": value});
            if !hosts.is_empty() {
                body["hosts"] = json!(hosts);
            }
            (
                "PUT",
                format!("{}/{name}", secrets_path(project.as_deref())),
                Some(body),
            )
        }
        AdminCommand::Secret(SecretCommand::List { project }) => {
            ("GET", secrets_path(project.as_deref()), None)
        }
        AdminCommand::Secret(SecretCommand::Delete { name, project }) => {
            client.send(
                "DELETE",
                &format!("{}/{name}", secrets_path(project.as_deref())),
                None,
            )?;
            println!("secret '{name}' deleted");
            return Ok(());
        }
    };
    let v = client.send(method, &path, body.as_ref())?.json()?;
    emit(output, &v, |v| {
        match v.get("value").and_then(Value::as_array) {
            Some(items) => present_rows(
                items,
                &[
                    "id",
                    "name",
                    "kind",
                    "status",
                    "location",
                    "description",
                    "principalId",
                    "role",
                    "scope",
                    "user",
                    "expiresAt",
                    "revokedAt",
                ],
            ),
            None => format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default()),
        }
    });
    Ok(())
}
