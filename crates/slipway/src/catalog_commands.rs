//! `slipway catalog …` and `slipway definition …`: catalogs, their sync
//! and error details, environment definitions.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::{json, Value};
use slipway_wire::ade::{EnvironmentDefinition, Paged};
use slipway_wire::catalogs::{CatalogRequest, CatalogResource, SyncErrorDetails};

use crate::api_client::ApiClient;
use crate::output::{cell, emit, rows, s, value_list};
use crate::OutputFormat;

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Register (or update) a catalog; it syncs at once when new or when its source changed.
    #[command(
        after_help = "Example: slipway catalog add examples --git https://github.com/example/catalog.git --branch main --folder /Environments --secret gh-token"
    )]
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
    #[command(after_help = "Example: slipway catalog sync examples")]
    Sync {
        /// Catalog name.
        name: String,
    },
    /// Show a catalog, its last sync and its errors.
    #[command(after_help = "Example: slipway catalog show examples")]
    Show {
        /// Catalog name.
        name: String,
    },
    /// List catalogs.
    #[command(after_help = "Example: slipway catalog list --project demo")]
    List {
        /// Only the catalogs of this project.
        #[arg(long)]
        project: Option<String>,
    },
    /// Delete a catalog and its definitions.
    #[command(after_help = "Example: slipway catalog delete examples")]
    Delete {
        /// Catalog name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DefinitionCommand {
    /// List the deployable environment definitions of a project.
    #[command(after_help = "Example: slipway definition list --project demo --catalog examples")]
    List {
        /// Project.
        #[arg(long, env = "SLIPWAY_PROJECT")]
        project: String,
        /// Only this catalog.
        #[arg(long)]
        catalog: Option<String>,
    },
    /// Show one definition.
    #[command(
        after_help = "Example: slipway definition show HelloTerraform --project demo --catalog examples"
    )]
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
    #[command(after_help = "Example: slipway definition validation --catalog examples")]
    Validation {
        /// Catalog.
        #[arg(long)]
        catalog: String,
    },
    /// Show a definition's validation error details (ADE getErrorDetails).
    #[command(after_help = "Example: slipway definition errors Broken --catalog examples")]
    Errors {
        /// Definition name.
        name: String,
        /// Catalog.
        #[arg(long)]
        catalog: String,
    },
}

fn catalog_table(c: &CatalogResource) -> String {
    let mut out = format!(
        "catalog {}: sync {} at {} (commit {})\n",
        c.name,
        c.sync_state,
        cell(&c.last_sync_time),
        cell(&c.last_sync_commit)
    );
    if let Some(stats) = &c.last_sync_stats {
        out.push_str(&format!("  stats: {stats}\n"));
    }
    let details: Option<SyncErrorDetails> = c
        .sync_error_details
        .clone()
        .and_then(|v| serde_json::from_value(v).ok());
    if let Some(errs) = details {
        if let Some(op) = &errs.operation_error {
            out.push_str(&format!(
                "  error: {} {}\n",
                s(op, "code"),
                s(op, "message")
            ));
        }
        for c in &errs.conflicts {
            out.push_str(&format!("  conflict: {} {}\n", s(c, "path"), s(c, "name")));
        }
        for e in &errs.errors {
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
    let all: Paged<CatalogResource> = client.get_as("/admin/catalogs")?;
    let found = all
        .value
        .into_iter()
        .find(|c| c.name == name)
        .with_context(|| format!("catalog '{name}' not found"))?;
    Ok(match found.project {
        Some(p) => format!("/admin/projects/{p}"),
        None => "/admin".to_string(),
    })
}

pub fn run_catalog(
    client: &ApiClient,
    output: OutputFormat,
    cmd: CatalogCommand,
) -> anyhow::Result<()> {
    let failed = |c: &CatalogResource| c.sync_state == "Failed";
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
                    CatalogRequest {
                        kind: Some("local".into()),
                        uri: abs.display().to_string(),
                        path: folder,
                        sync_type: Some(sync_type),
                        ..Default::default()
                    }
                }
                (None, Some(g)) => CatalogRequest {
                    kind: Some("git".into()),
                    uri: g,
                    branch,
                    path: folder,
                    secret_identifier: secret,
                    sync_type: Some(sync_type),
                },
                (None, None) => bail!("one of --path or --git is required"),
            };
            let scope = match project {
                Some(p) => format!("/admin/projects/{p}"),
                None => "/admin".to_string(),
            };
            let c: CatalogResource = client
                .send_typed("PUT", &format!("{scope}/catalogs/{name}"), &body)?
                .parse()?;
            emit(output, &json!(c), |_| catalog_table(&c));
            if failed(&c) {
                bail!("sync of catalog '{name}' failed");
            }
        }
        CatalogCommand::Sync { name } => {
            let scope = catalog_scope(client, &name)?;
            let c: CatalogResource = client
                .send("POST", &format!("{scope}/catalogs/{name}:sync"), None)?
                .parse()?;
            emit(output, &json!(c), |_| catalog_table(&c));
            if failed(&c) {
                bail!("sync of catalog '{name}' failed");
            }
        }
        CatalogCommand::Show { name } => {
            let scope = catalog_scope(client, &name)?;
            let c: CatalogResource = client.get_as(&format!("{scope}/catalogs/{name}"))?;
            emit(output, &json!(c), |_| catalog_table(&c));
        }
        CatalogCommand::List { project } => {
            let path = match project {
                Some(p) => format!("/admin/projects/{p}/catalogs"),
                None => "/admin/catalogs".to_string(),
            };
            let list: Paged<CatalogResource> = client.get_as(&path)?;
            emit(output, &json!(list), |_| {
                list.value.iter().map(catalog_table).collect()
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
            let d: EnvironmentDefinition = client.get_as(&format!(
                "/projects/{project}/catalogs/{catalog}/environmentDefinitions/{name}"
            ))?;
            let v = json!(d);
            emit(output, &v, |v| {
                let mut out = format!(
                    "{} ({}): runner {}, template {}, commit {}\n",
                    d.name,
                    d.catalog_name,
                    cell(&d.runner),
                    d.template_path,
                    cell(&d.catalog_commit)
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
