//! `slipway catalog …` and `slipway definition …`: catalogs, their sync
//! and error details, environment definitions.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::{json, Value};

use crate::api_client::ApiClient;
use crate::output::{emit, rows, s, value_list};
use crate::OutputFormat;

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

pub fn run_catalog(
    client: &ApiClient,
    output: OutputFormat,
    cmd: CatalogCommand,
) -> anyhow::Result<()> {
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

pub fn run_definition(
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
