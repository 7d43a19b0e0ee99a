//! `slipway runner test`: the local runner loop. A runner image runs
//! against a definition folder with the whole runner protocol — the same
//! scheduler, runner network, runner API and `ade` as `slipway serve` —
//! served by a server embedded in this process, with no catalog to publish
//! and no server to run. The state folder keeps the embedded server's data
//! (one environment per definition, its `/ade/storage` archive, logs)
//! between runs, so a second `deploy` redeploys with the stored state and
//! `delete` deletes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::json;
use slipway_wire::catalogs::{CatalogRequest, CatalogResource};

use crate::api_client::ApiClient;
use crate::env_commands::{self, EnvCommand, ParamArgs};
use crate::output::OutputFormat;
use crate::serve::ServeArgs;

/// The project, environment type, catalog and environment the embedded
/// server holds (its data is the state folder's own).
const PROJECT: &str = "runner-test";
const ENVIRONMENT_TYPE: &str = "Test";
const CATALOG: &str = "local";

/// The environment of definition `name`: its name where ADE allows it as
/// an environment name (3–63 of letters, digits, `-`, `_`, `.`, starting
/// with a letter or digit), so one state folder holds one environment per
/// definition; `runner-test` otherwise.
fn environment_name(definition: &str) -> String {
    match slipway_core::names::validate_resource_name("environment", definition) {
        Ok(()) => definition.to_string(),
        Err(_) => "runner-test".into(),
    }
}

#[derive(Debug, Subcommand)]
pub enum RunnerCommand {
    /// Run a runner image against a definition folder, with no server and
    /// no catalog: prints the operation's log, outputs and result, and
    /// keeps the environment's state in `--state` between runs.
    #[command(
        after_help = "Example: slipway runner test localhost/slipway/runner-terraform:latest --definition examples/catalog/HelloTerraform -p name=demo"
    )]
    Test(Box<TestArgs>),
}

/// Options of `slipway runner test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Runner image: `Core`, `Terraform` or an image reference (replaces
    /// the definition's `runner:`).
    image: String,
    /// The definition folder (holding `environment.yaml` and its template).
    #[arg(long)]
    definition: PathBuf,
    /// The operation to run.
    #[arg(long, value_enum, default_value = "deploy")]
    operation: Operation,
    #[command(flatten)]
    params: ParamArgs,
    /// Folder that keeps the environment and its state between runs.
    #[arg(long, default_value = ".slipway-runner-test")]
    state: PathBuf,
}

/// `deploy` or `delete`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Operation {
    Deploy,
    Delete,
}

/// `ServeArgs` from command-line words (its defaults included).
#[derive(Parser)]
struct Embedded {
    #[command(flatten)]
    serve: ServeArgs,
}

/// Runs `cmd`.
///
/// Errors: a definition folder without `environment.yaml`, a state folder
/// that cannot be written, the embedded server not starting (e.g. not
/// root: runner networks need it), or the API refusing the setup.
pub fn run(output: OutputFormat, cmd: RunnerCommand) -> anyhow::Result<ExitCode> {
    let RunnerCommand::Test(args) = cmd;
    let TestArgs {
        image,
        definition,
        operation,
        params,
        state,
    } = *args;
    std::fs::create_dir_all(&state)
        .with_context(|| format!("state folder '{}'", state.display()))?;
    let state = state
        .canonicalize()
        .with_context(|| format!("state folder '{}'", state.display()))?;
    let name = stage_definition(&definition, &state.join("catalog"), &image)?;
    let client = start_embedded_server(&state)?;
    client.send(
        "PUT",
        &format!("/admin/projects/{PROJECT}"),
        Some(&json!({"description": "slipway runner test"})),
    )?;
    client.send(
        "PUT",
        &format!("/admin/environmentTypes/{ENVIRONMENT_TYPE}"),
        Some(&json!({})),
    )?;
    client.send(
        "PUT",
        &format!("/admin/projects/{PROJECT}/environmentTypes/{ENVIRONMENT_TYPE}"),
        Some(&json!({"status": "Enabled"})),
    )?;
    let catalog = CatalogRequest {
        kind: Some("local".into()),
        uri: state.join("catalog").display().to_string(),
        ..Default::default()
    };
    client.send_typed("PUT", &format!("/admin/catalogs/{CATALOG}"), &catalog)?;
    // Read the fresh copy (a PUT of an unchanged catalog does not sync).
    let synced: CatalogResource = client
        .send("POST", &format!("/admin/catalogs/{CATALOG}:sync"), None)?
        .parse()?;
    if synced.sync_state != "Succeeded" {
        bail!(
            "the definition could not be read: {}",
            serde_json::to_string(&synced).unwrap_or_default()
        );
    }
    let command = match operation {
        Operation::Deploy => EnvCommand::Create {
            name: environment_name(&name),
            project: PROJECT.into(),
            environment_type: ENVIRONMENT_TYPE.into(),
            catalog: CATALOG.into(),
            definition: name,
            params,
            expiration: None,
            no_wait: false,
        },
        Operation::Delete => EnvCommand::Delete {
            name: environment_name(&name),
            project: PROJECT.into(),
            force: false,
            no_wait: false,
        },
    };
    env_commands::run(&client, output, command)
}

/// Copies the definition folder `from` to `catalog/<folder name>` (a fresh
/// copy each run, so edits show) with `runner: image` in its manifest;
/// returns the definition's name.
///
/// Errors: no `environment.yaml`/`environment.yml`, a manifest that is not
/// a YAML mapping, a symlink in the folder, or I/O.
fn stage_definition(from: &Path, catalog: &Path, image: &str) -> anyhow::Result<String> {
    let from = from
        .canonicalize()
        .with_context(|| format!("--definition '{}'", from.display()))?;
    let manifest_name = ["environment.yaml", "environment.yml"]
        .into_iter()
        .find(|m| from.join(m).is_file())
        .ok_or_else(|| {
            anyhow!(
                "--definition '{}' holds no environment.yaml",
                from.display()
            )
        })?;
    let folder = from
        .file_name()
        .ok_or_else(|| anyhow!("--definition '{}' names no folder", from.display()))?;
    let to = catalog.join(folder);
    if to.exists() {
        std::fs::remove_dir_all(&to).with_context(|| format!("{}", to.display()))?;
    }
    copy_tree(&from, &to)?;
    let text = std::fs::read_to_string(from.join(manifest_name))?;
    let mut manifest: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{}", from.join(manifest_name).display()))?;
    let map = manifest.as_mapping_mut().ok_or_else(|| {
        anyhow!(
            "{}: expected a YAML mapping",
            from.join(manifest_name).display()
        )
    })?;
    map.insert("runner".into(), image.into());
    let name = map
        .get("name")
        .and_then(|n| n.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| folder.to_string_lossy().into_owned());
    std::fs::write(to.join(manifest_name), serde_yaml_ng::to_string(&manifest)?)?;
    Ok(name)
}

/// Copies the regular files and folders beneath `from` to `to`.
///
/// Errors: a symlink (named) or I/O.
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("{}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("{}", from.display()))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("{}", entry.path().display()))?;
        } else {
            bail!(
                "{} is not a regular file or folder: the definition is copied as files only",
                entry.path().display()
            );
        }
    }
    Ok(())
}

/// Starts `slipway serve` in this process on a free loopback port with its
/// data in `state/data` and `state` as the local catalog root; returns a
/// client holding its admin token once it answers.
///
/// Errors: the server failing to start (its message) or not answering
/// within 2 minutes.
fn start_embedded_server(state: &Path) -> anyhow::Result<ApiClient> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let data = state.join("data");
    let mut serve = Embedded::try_parse_from([
        "slipway".into(),
        "--data-dir".into(),
        data.display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--local-catalog-root".into(),
        state.display().to_string(),
        "--max-concurrent".into(),
        "1".into(),
    ])?
    .serve;
    serve.quiet = true;
    let server = std::thread::spawn(move || crate::serve::serve(serve));
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if server.is_finished() {
            return match server.join() {
                Ok(Err(e)) => Err(e.context("the embedded server did not start")),
                _ => Err(anyhow!("the embedded server ended")),
            };
        }
        if ApiClient::new(&base, None)
            .send("GET", "/healthz", None)
            .is_ok()
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("the embedded server did not answer within 2 minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let token = std::fs::read_to_string(data.join("admin.token"))
        .with_context(|| format!("{}", data.join("admin.token").display()))?;
    Ok(ApiClient::new(&base, Some(token.trim().to_string())))
}

#[cfg(test)]
mod tests {
    use super::environment_name;

    #[test]
    fn a_definition_names_its_environment_where_ade_allows_it() {
        assert_eq!(environment_name("HelloTerraform"), "HelloTerraform");
        assert_eq!(environment_name("web.app_v2"), "web.app_v2");
        for odd in ["ab", "-lead", "has space", &"x".repeat(64)] {
            assert_eq!(environment_name(odd), "runner-test", "{odd}");
        }
    }
}
