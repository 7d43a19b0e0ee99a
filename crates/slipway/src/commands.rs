//! Client commands: `admin`, `catalog`, `definition`, `env`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use slipway_core::parameters::coerce_cli_value;
use slipway_core::ParameterType;

use crate::api_client::ApiClient;
use crate::output::{emit, present_rows, rows, s, value_list};
use crate::{Command, OutputFormat};

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
    List {
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
    },
    /// Remove an assignment by id.
    Remove {
        /// Assignment id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token (for yourself, or for any user as DevCenter Admin); it is shown once.
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
    List {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a token by id.
    Revoke {
        /// Token id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Create or update a project.
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
    List,
}

#[derive(Debug, Subcommand)]
pub enum NamedCreate {
    /// Create or update.
    Create {
        /// Name.
        name: String,
        /// Display name.
        #[arg(long)]
        display_name: Option<String>,
    },
    /// List.
    List,
    /// Delete (refused while a project enables it).
    Delete {
        /// Name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PetCommand {
    /// Enable an environment type in a project.
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
    List {
        /// Project.
        #[arg(long, env = "SLIPWAY_PROJECT")]
        project: String,
    },
    /// Remove an environment type from a project (refused while environments of it exist).
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
    List {
        /// A project's secrets instead of the dev center's.
        #[arg(long)]
        project: Option<String>,
    },
    /// Delete a secret.
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

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Register (or update) a catalog; it syncs at once when new or when its source changed.
    Add {
        /// Catalog name (unique per server).
        name: String,
        /// A local folder holding definition folders.
        #[arg(long, conflicts_with = "git", required_unless_present = "git")]
        path: Option<PathBuf>,
        /// A git URL (https://, ssh://, user@host:repo, git://, file://).
        #[arg(long)]
        git: Option<String>,
        /// Git branch (default: the remote's default branch).
        #[arg(long)]
        branch: Option<String>,
        /// Folder inside the source that holds the definitions (leading `/` optional).
        #[arg(long)]
        folder: Option<String>,
        /// Make it a project catalog, visible only in this project.
        #[arg(long)]
        project: Option<String>,
        /// Secret (kind token or sshKey) used to fetch the git source.
        #[arg(long)]
        secret: Option<String>,
        /// `Scheduled` (synced every interval) or `Manual`.
        #[arg(long, default_value = "Scheduled")]
        sync_type: String,
    },
    /// Sync a catalog now.
    Sync {
        /// Catalog name.
        name: String,
    },
    /// Show a catalog, its last sync and its errors.
    Show {
        /// Catalog name.
        name: String,
    },
    /// List catalogs.
    List {
        /// Only the catalogs of this project.
        #[arg(long)]
        project: Option<String>,
    },
    /// Delete a catalog and its definitions.
    Delete {
        /// Catalog name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DefinitionCommand {
    /// List the deployable environment definitions of a project.
    List {
        /// Project.
        #[arg(long, env = "SLIPWAY_PROJECT")]
        project: String,
        /// Only this catalog.
        #[arg(long)]
        catalog: Option<String>,
    },
    /// Show one definition.
    Show {
        /// Definition name.
        name: String,
        /// Project.
        #[arg(long, env = "SLIPWAY_PROJECT")]
        project: String,
        /// Catalog.
        #[arg(long)]
        catalog: String,
    },
    /// List every definition of a catalog with its validation status (admin view).
    Validation {
        /// Catalog.
        #[arg(long)]
        catalog: String,
    },
    /// Show a definition's validation error details (ADE getErrorDetails).
    Errors {
        /// Definition name.
        name: String,
        /// Catalog.
        #[arg(long)]
        catalog: String,
    },
}

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
    Show {
        /// Environment name.
        name: String,
        /// Project.
        #[arg(long, env = "SLIPWAY_PROJECT")]
        project: String,
    },
    /// List environments.
    List {
        /// Project.
        #[arg(long, env = "SLIPWAY_PROJECT")]
        project: String,
        /// Every user's environments, not just mine.
        #[arg(long)]
        all: bool,
    },
    /// Delete an environment (runs the definition's delete operation).
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
    ListActions {
        /// Environment name.
        name: String,
        /// Project.
        #[arg(long, env = "SLIPWAY_PROJECT")]
        project: String,
    },
    /// Skip the scheduled delete.
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
    Outputs {
        /// Environment name.
        name: String,
        /// Project.
        #[arg(long, env = "SLIPWAY_PROJECT")]
        project: String,
    },
    /// List operations.
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
    let ops = client.get(&format!("{}/operations", env_path(project, name)))?;
    value_list(&ops)
        .first()
        .map(|o| s(o, "operationId"))
        .ok_or_else(|| anyhow!("environment '{name}' has no operations"))
}

/// Runs a client command.
pub fn run(client: &ApiClient, output: OutputFormat, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(_)
        | Command::Image(_)
        | Command::Task(_)
        | Command::VmImage(_)
        | Command::Registry(_)
        | Command::Completion { .. } => {
            unreachable!("serve, image, task and completion are handled by main")
        }
        Command::Admin(a) => admin(client, output, a)?,
        Command::Catalog(c) => catalog(client, output, c)?,
        Command::Definition(d) => definition(client, output, d)?,
        Command::Env(e) => return env(client, output, e),
    }
    Ok(ExitCode::SUCCESS)
}

fn admin(client: &ApiClient, output: OutputFormat, cmd: AdminCommand) -> anyhow::Result<()> {
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
            .filter_map(|(k, v)| v.map(|v| format!("{k}={}", query_escape(&v))))
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

fn catalog_table(v: &Value) -> String {
    let mut out = format!(
        "catalog {}: sync {} at {} (commit {})\n",
        s(v, "name"),
        s(v, "syncState"),
        s(v, "lastSyncTime"),
        s(v, "lastSyncCommit")
    );
    if let Some(stats) = v.get("lastSyncStats").filter(|x| !x.is_null()) {
        out.push_str(&format!("  stats: {stats}\n"));
    }
    if let Some(errs) = v.get("syncErrorDetails").filter(|x| !x.is_null()) {
        if let Some(op) = errs.get("operationError").filter(|x| !x.is_null()) {
            out.push_str(&format!(
                "  error: {} {}\n",
                s(op, "code"),
                s(op, "message")
            ));
        }
        for c in errs
            .get("conflicts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            out.push_str(&format!("  conflict: {} {}\n", s(c, "path"), s(c, "name")));
        }
        for e in errs
            .get("errors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for d in e
                .get("errorDetails")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out.push_str(&format!(
                    "  invalid: {} {}: {}\n",
                    s(e, "path"),
                    s(d, "code"),
                    s(d, "message")
                ));
            }
        }
    }
    out
}

/// `/admin` or `/admin/projects/{p}`: where catalog `name` lives.
fn catalog_scope(client: &ApiClient, name: &str) -> anyhow::Result<String> {
    let all = client.get("/admin/catalogs")?;
    let found = value_list(&all)
        .into_iter()
        .find(|c| s(c, "name") == name)
        .with_context(|| format!("catalog '{name}' not found"))?;
    Ok(match found.get("project").and_then(Value::as_str) {
        Some(p) => format!("/admin/projects/{p}"),
        None => "/admin".to_string(),
    })
}

fn catalog(client: &ApiClient, output: OutputFormat, cmd: CatalogCommand) -> anyhow::Result<()> {
    let failed = |v: &Value| s(v, "syncState") == "Failed";
    match cmd {
        CatalogCommand::Add {
            name,
            path,
            git,
            branch,
            folder,
            project,
            secret,
            sync_type,
        } => {
            let body = match (path, git) {
                (Some(p), _) => {
                    let abs = std::fs::canonicalize(&p)
                        .with_context(|| format!("catalog folder '{}'", p.display()))?;
                    json!({"kind": "local", "uri": abs.display().to_string(), "path": folder, "syncType": sync_type})
                }
                (None, Some(g)) => {
                    json!({"kind": "git", "uri": g, "branch": branch, "path": folder, "secretIdentifier": secret, "syncType": sync_type})
                }
                (None, None) => bail!("one of --path or --git is required"),
            };
            let scope = match project {
                Some(p) => format!("/admin/projects/{p}"),
                None => "/admin".to_string(),
            };
            let v = client
                .send("PUT", &format!("{scope}/catalogs/{name}"), Some(&body))?
                .json()?;
            emit(output, &v, catalog_table);
            if failed(&v) {
                bail!("sync of catalog '{name}' failed");
            }
        }
        CatalogCommand::Sync { name } => {
            let scope = catalog_scope(client, &name)?;
            let v = client
                .send("POST", &format!("{scope}/catalogs/{name}:sync"), None)?
                .json()?;
            emit(output, &v, catalog_table);
            if failed(&v) {
                bail!("sync of catalog '{name}' failed");
            }
        }
        CatalogCommand::Show { name } => {
            let scope = catalog_scope(client, &name)?;
            let v = client.get(&format!("{scope}/catalogs/{name}"))?;
            emit(output, &v, catalog_table);
        }
        CatalogCommand::List { project } => {
            let path = match project {
                Some(p) => format!("/admin/projects/{p}/catalogs"),
                None => "/admin/catalogs".to_string(),
            };
            let v = client.get(&path)?;
            emit(output, &v, |v| {
                value_list(v).iter().map(catalog_table).collect()
            });
        }
        CatalogCommand::Delete { name } => {
            let scope = catalog_scope(client, &name)?;
            client.send("DELETE", &format!("{scope}/catalogs/{name}"), None)?;
            println!("catalog '{name}' deleted");
        }
    }
    Ok(())
}

fn definition(
    client: &ApiClient,
    output: OutputFormat,
    cmd: DefinitionCommand,
) -> anyhow::Result<()> {
    match cmd {
        DefinitionCommand::List { project, catalog } => {
            let path = match catalog {
                Some(c) => format!("/projects/{project}/catalogs/{c}/environmentDefinitions"),
                None => format!("/projects/{project}/environmentDefinitions"),
            };
            let v = client.get(&path)?;
            emit(output, &v, |v| {
                rows(
                    &value_list(v),
                    &["catalogName", "name", "runner", "templatePath"],
                )
            });
        }
        DefinitionCommand::Show {
            name,
            project,
            catalog,
        } => {
            let v = client.get(&format!(
                "/projects/{project}/catalogs/{catalog}/environmentDefinitions/{name}"
            ))?;
            emit(output, &v, |v| {
                let mut out = format!(
                    "{} ({}): runner {}, template {}, commit {}\n",
                    s(v, "name"),
                    s(v, "catalogName"),
                    s(v, "runner"),
                    s(v, "templatePath"),
                    s(v, "catalogCommit")
                );
                let params: Vec<Value> = v
                    .get("parameters")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                out.push_str(&rows(
                    &params,
                    &["id", "type", "required", "readOnly", "default", "allowed"],
                ));
                out
            });
        }
        DefinitionCommand::Validation { catalog } => {
            let scope = catalog_scope(client, &catalog)?;
            let v = client.get(&format!(
                "{scope}/catalogs/{catalog}/environmentDefinitions"
            ))?;
            emit(output, &v, |v| {
                rows(
                    &value_list(v),
                    &["name", "validationStatus", "folder", "templatePath"],
                )
            });
        }
        DefinitionCommand::Errors { name, catalog } => {
            let scope = catalog_scope(client, &catalog)?;
            let v = client
                .send(
                    "POST",
                    &format!(
                        "{scope}/catalogs/{catalog}/environmentDefinitions/{name}/getErrorDetails"
                    ),
                    None,
                )?
                .json()?;
            emit(output, &v, |v| {
                rows(
                    v.get("errors")
                        .and_then(Value::as_array)
                        .map(Vec::as_slice)
                        .unwrap_or_default(),
                    &["code", "message"],
                )
            });
        }
    }
    Ok(())
}

/// Builds the parameters object from `--parameters` and `--param`, typing
/// each `--param` by the definition's declared type.
fn collect_params(
    args: &ParamArgs,
    definition: &Value,
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
    let declared: Vec<Value> = definition
        .get("parameters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for kv in &args.params {
        let (k, raw) = kv
            .split_once('=')
            .ok_or_else(|| anyhow!("--param '{kv}': expected ID=VALUE"))?;
        let ty = declared
            .iter()
            .find(|d| d.get("id").and_then(Value::as_str) == Some(k))
            .and_then(|d| d.get("type").and_then(Value::as_str))
            .and_then(ParameterType::parse)
            .unwrap_or(ParameterType::String);
        let v = coerce_cli_value(k, ty, raw).map_err(|e| anyhow!("--param {e}"))?;
        out.insert(k.to_string(), v);
    }
    Ok(out)
}

fn env_table(v: &Value) -> String {
    let mut out = format!(
        "{}  {}  type={} definition={}/{}\n",
        s(v, "name"),
        s(v, "provisioningState"),
        s(v, "environmentType"),
        s(v, "catalogName"),
        s(v, "environmentDefinitionName")
    );
    if let Some(p) = v.get("parameters") {
        out.push_str(&format!("  parameters: {p}\n"));
    }
    if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
        out.push_str(&format!("  error: {}: {}\n", s(e, "code"), s(e, "message")));
    }
    out
}

fn outputs_table(v: &Value) -> String {
    let mut out = String::new();
    if let Some(m) = v.get("outputs").and_then(Value::as_object) {
        for (k, o) in m {
            out.push_str(&format!(
                "{k} ({}) = {}\n",
                s(o, "type"),
                o.get("value").map(|x| x.to_string()).unwrap_or_default()
            ));
        }
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
) -> anyhow::Result<Value> {
    let logs = format!("{}/operations/{op_id}/logs", env_path(project, name));
    if show_log {
        client.follow_log(&logs, &mut std::io::stdout())?;
    } else {
        // The stream ends when the operation has ended.
        client.follow_log(&logs, &mut std::io::sink())?;
    }
    client.get(&format!("/projects/{project}/operationstatuses/{op_id}"))
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
    let st = s(&status, "status");
    if output != OutputFormat::Table {
        emit(output, &status, |_| String::new());
    } else {
        eprintln!("operation {op_id}: {st}");
    }
    if st != "Succeeded" {
        if let Some(e) = status.get("error").filter(|e| !e.is_null()) {
            eprintln!("error: {}: {}", s(e, "code"), s(e, "message"));
        }
        return Ok(ExitCode::FAILURE);
    }
    if show_outputs && output == OutputFormat::Table {
        let v = client.get(&format!("{}/outputs", env_path(project, name)))?;
        print!("outputs:\n{}", outputs_table(&v));
    }
    Ok(ExitCode::SUCCESS)
}

fn env(client: &ApiClient, output: OutputFormat, cmd: EnvCommand) -> anyhow::Result<ExitCode> {
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
            let def = client.get(&format!(
                "/projects/{project}/catalogs/{catalog}/environmentDefinitions/{definition}"
            ))?;
            let parameters = collect_params(&params, &def, Map::new())?;
            let mut body = json!({
                "environmentType": environment_type,
                "catalogName": catalog,
                "environmentDefinitionName": definition,
                "parameters": parameters,
            });
            if let Some(x) = expiration {
                body["expirationDate"] = json!(x);
            }
            let reply = client.send("PUT", &env_path(&project, &name), Some(&body))?;
            let op = op_id_from(&reply)?;
            finish_operation(client, output, &project, &name, &op, no_wait, true)
        }
        EnvCommand::Deploy {
            name,
            project,
            params,
            no_wait,
        } => {
            let current = client.get(&env_path(&project, &name))?;
            let def = client.get(&format!(
                "/projects/{project}/catalogs/{}/environmentDefinitions/{}",
                s(&current, "catalogName"),
                s(&current, "environmentDefinitionName")
            ))?;
            let base = current
                .get("parameters")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let parameters = collect_params(&params, &def, base)?;
            let body = json!({
                "environmentType": current.get("environmentType"),
                "catalogName": current.get("catalogName"),
                "environmentDefinitionName": current.get("environmentDefinitionName"),
                "parameters": parameters,
            });
            let reply = client.send("PUT", &env_path(&project, &name), Some(&body))?;
            let op = op_id_from(&reply)?;
            finish_operation(client, output, &project, &name, &op, no_wait, true)
        }
        EnvCommand::Show { name, project } => {
            let v = client.get(&env_path(&project, &name))?;
            emit(output, &v, env_table);
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
            let value = if expiration == "none" {
                Value::Null
            } else {
                json!(expiration)
            };
            let v = client
                .send(
                    "PATCH",
                    &env_path(&project, &name),
                    Some(&json!({ "expirationDate": value })),
                )?
                .json()?;
            emit(output, &v, env_table);
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
                        query_escape(&until)
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
            let v = client.get(&format!("{}/outputs", env_path(&project, &name)))?;
            emit(output, &v, outputs_table);
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

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
fn query_escape(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
