//! `ade`: the in-container CLI of the ADE extensibility model, speaking
//! Slipway's runner API.
//!
//! Commands, flags, output shapes and exit codes follow ADE's CLI reference
//! (reference `ade.md` §2): `init`, `environment`, `definitions list|download`,
//! `files list|download|upload`, `log`, `execute`, `outputs upload`,
//! `operation-result`, `upgrade`, `info client-id|tenant-id`.
//! Configuration comes from `ADE_HTTP__ENDPOINT`, `ADE_HTTP__OPERATIONID`,
//! `ADE_HTTP__DEVCENTERID` and `ADE_HTTP__TOKEN` (see `slipway_core::protocol`).
//!
//! Built as a static binary (`-C target-feature=+crt-static`); the endpoint
//! is an IP literal, so no DNS lookup (and no glibc NSS) is ever needed.

mod client;
mod execute;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use slipway_core::protocol::{
    AdeExitCode, LogEntry, LogType, OperationResult, RunnerDefinition, RunnerEnvironment,
    RunnerIdentity,
};

use client::{CliError, Client};

#[derive(Debug, Parser)]
#[command(
    name = "ade",
    version,
    about = "Azure Deployment Environments runner CLI (Slipway)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print `export` lines for every ADE_* variable and place the definition under /ade/repository.
    Init,
    /// Print the environment as JSON.
    Environment,
    /// Environment definition commands.
    #[command(subcommand)]
    Definitions(DefinitionsCommand),
    /// Per-environment file storage.
    #[command(subcommand)]
    Files(FilesCommand),
    /// Append to the operation log.
    Log {
        /// The content to log.
        #[arg(long, allow_hyphen_values = true)]
        content: String,
        /// Allowed values are 'log', 'verbose', and 'error'.
        #[arg(long = "type", default_value = "log")]
        log_type: String,
        /// The operation which is creating the log (accepted for compatibility).
        #[arg(long)]
        operation: Option<String>,
        /// Custom log file name (accepted for compatibility; all lines go to the operation log).
        #[arg(long)]
        file: Option<String>,
    },
    /// Run a command, streaming its output to the operation log.
    Execute {
        /// The operation name (`deploy`/`delete`; accepted for compatibility).
        #[arg(long)]
        operation: Option<String>,
        /// The command and its arguments.
        #[arg(long, num_args = 1.., allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Outputs commands.
    #[command(subcommand)]
    Outputs(OutputsCommand),
    /// Report the operation's error; the last call a runner makes.
    OperationResult {
        /// Error code, e.g. DeploymentError.
        #[arg(long)]
        code: String,
        /// Error message.
        #[arg(long, allow_hyphen_values = true)]
        message: String,
    },
    /// Print a download URL for a newer CLI, or nothing.
    Upgrade,
    /// Identity information.
    Info {
        /// `client-id` or `tenant-id`.
        what: String,
    },
}

#[derive(Debug, Subcommand)]
enum DefinitionsCommand {
    /// Print the environment definition as JSON.
    List,
    /// Download the definition's files.
    Download {
        /// Target folder.
        #[arg(long, default_value = "./EnvironmentDefinition")]
        folder_path: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum FilesCommand {
    /// Print stored file names as a JSON array.
    List,
    /// Download a stored file.
    Download {
        /// Stored file name.
        #[arg(long)]
        file_name: String,
        /// Target folder (default: current directory).
        #[arg(long)]
        folder_path: Option<PathBuf>,
        /// Extract the (zip) file into the folder instead of saving it.
        #[arg(long, num_args = 0..=1, default_missing_value = "true")]
        unzip: Option<bool>,
    },
    /// Upload a file, or a folder zipped as `<last-dir>.zip`.
    Upload {
        /// File to upload.
        #[arg(
            long,
            conflicts_with = "folder_path",
            required_unless_present = "folder_path"
        )]
        file_path: Option<PathBuf>,
        /// Folder to zip and upload.
        #[arg(long)]
        folder_path: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum OutputsCommand {
    /// Upload `{"outputs": {...}}`.
    Upload {
        /// The outputs file.
        #[arg(long)]
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(AdeExitCode::InvalidCliInput.code() as u8),
            };
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("ade: {}", e.message);
            ExitCode::from(e.code.code() as u8)
        }
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<(), CliError> {
    let s = serde_json::to_string_pretty(v)
        .map_err(|e| CliError::new(AdeExitCode::UnknownError, e.to_string()))?;
    println!("{s}");
    Ok(())
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> CliError {
    CliError::new(
        AdeExitCode::FileOperationError,
        format!("{}: {e}", path.display()),
    )
}

fn run(cli: Cli) -> Result<u8, CliError> {
    let client = Client::from_env()?;
    match cli.command {
        Command::Init => init(&client)?,
        Command::Environment => print_json(&client.get_json::<RunnerEnvironment>("environment")?)?,
        Command::Definitions(DefinitionsCommand::List) => {
            print_json(&client.get_json::<RunnerDefinition>("definition")?)?
        }
        Command::Definitions(DefinitionsCommand::Download { folder_path }) => {
            let zip = client.get_bytes("definition/content")?;
            slipway_archive::unzip_into(&zip, &folder_path)
                .map_err(|e| file_err(&folder_path, e))?;
        }
        Command::Files(FilesCommand::List) => {
            print_json(&client.get_json::<Vec<String>>("files")?)?
        }
        Command::Files(FilesCommand::Download {
            file_name,
            folder_path,
            unzip,
        }) => {
            let folder = folder_path.unwrap_or_else(|| PathBuf::from("."));
            let bytes = client.get_bytes(&format!("files/{file_name}"))?;
            if unzip.unwrap_or(false) {
                slipway_archive::unzip_into(&bytes, &folder).map_err(|e| file_err(&folder, e))?;
            } else {
                std::fs::create_dir_all(&folder).map_err(|e| file_err(&folder, e))?;
                let dest = folder.join(&file_name);
                std::fs::write(&dest, bytes).map_err(|e| file_err(&dest, e))?;
            }
        }
        Command::Files(FilesCommand::Upload {
            file_path,
            folder_path,
        }) => {
            let (name, bytes) = match (file_path, folder_path) {
                (Some(f), _) => {
                    let name = f
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .ok_or_else(|| {
                            CliError::new(
                                AdeExitCode::InvalidCliInput,
                                format!("--file-path '{}' names no file", f.display()),
                            )
                        })?;
                    (name, std::fs::read(&f).map_err(|e| file_err(&f, e))?)
                }
                (None, Some(d)) => {
                    let canonical = d.canonicalize().map_err(|e| file_err(&d, e))?;
                    let last = canonical
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .ok_or_else(|| {
                            CliError::new(
                                AdeExitCode::InvalidCliInput,
                                format!("--folder-path '{}' has no last folder name", d.display()),
                            )
                        })?;
                    (
                        format!("{last}.zip"),
                        slipway_archive::zip_folder(&canonical, &[])
                            .map_err(|e| file_err(&d, e))?,
                    )
                }
                (None, None) => {
                    return Err(CliError::new(
                        AdeExitCode::InvalidCliInput,
                        "one of --file-path or --folder-path is required",
                    ))
                }
            };
            client.put_bytes(&format!("files/{name}"), &bytes)?;
        }
        Command::Log {
            content, log_type, ..
        } => {
            let log_type = match log_type.as_str() {
                "log" => LogType::Log,
                "verbose" => LogType::Verbose,
                "error" => LogType::Error,
                other => {
                    return Err(CliError::new(
                        AdeExitCode::InvalidCliInput,
                        format!(
                            "--type '{other}': allowed values are 'log', 'verbose', and 'error'"
                        ),
                    ))
                }
            };
            client.post_json("logs", &LogEntry { log_type, content })?;
        }
        Command::Execute { command, .. } => return execute::execute(&client, &command),
        Command::Outputs(OutputsCommand::Upload { file }) => {
            let text = std::fs::read_to_string(&file).map_err(|e| file_err(&file, e))?;
            let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                CliError::new(
                    AdeExitCode::InvalidCliInput,
                    format!("{} is not valid JSON: {e}", file.display()),
                )
            })?;
            client.put_json("outputs", &doc)?;
        }
        Command::OperationResult { code, message } => {
            client.post_json("result", &OperationResult { code, message })?;
        }
        Command::Upgrade => {
            let url = client.get_bytes("upgrade")?;
            let url = String::from_utf8_lossy(&url);
            if !url.trim().is_empty() {
                println!("{}", url.trim());
            }
        }
        Command::Info { what } => {
            let id: RunnerIdentity = client.get_json("identity")?;
            match what.as_str() {
                "client-id" => println!("{}", id.client_id),
                "tenant-id" => println!("{}", id.tenant_id),
                other => {
                    return Err(CliError::new(
                        AdeExitCode::InvalidCliInput,
                        format!("unknown info '{other}': expected 'client-id' or 'tenant-id'"),
                    ))
                }
            }
        }
    }
    Ok(0)
}

/// `ade init`: fetch definition, environment and identity; place the
/// definition's files under `<root>/<contentSourcePath>` (root:
/// `ADE_REPOSITORY_ROOT`, default `/ade/repository`); print `export` lines.
fn init(client: &Client) -> Result<(), CliError> {
    let def: RunnerDefinition = client.get_json("definition")?;
    let env: RunnerEnvironment = client.get_json("environment")?;
    let id: RunnerIdentity = client.get_json("identity")?;
    let root = PathBuf::from(
        std::env::var("ADE_REPOSITORY_ROOT").unwrap_or_else(|_| "/ade/repository".into()),
    );
    let manifest_folder = root.join(&def.content_source_path);
    let zip = client.get_bytes("definition/content")?;
    slipway_archive::unzip_into(&zip, &manifest_folder)
        .map_err(|e| file_err(&manifest_folder, e))?;
    let rg_name = env
        .resource_group_id
        .split('/')
        .nth(4)
        .unwrap_or_default()
        .to_string();
    let env_or = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let params = serde_json::Value::Object(env.parameters.clone()).to_string();
    let vars: Vec<(&str, String)> = vec![
        ("ADE_OPERATION_NAME", env_or("ADE_OPERATION_NAME", "")),
        ("ADE_STORAGE", env_or("ADE_STORAGE", "/ade/storage")),
        (
            "ADE_OUTPUTS",
            env_or("ADE_OUTPUTS", "/ade/temp/output.json"),
        ),
        (
            "ADE_ERROR_LOG",
            env_or("ADE_ERROR_LOG", "/ade/temp/error.log"),
        ),
        ("ADE_CLIENT_ID", id.client_id),
        ("ADE_TENANT_ID", id.tenant_id),
        ("ADE_SUBSCRIPTION_ID", id.subscription_id),
        (
            "ADE_TEMPLATE_FILE",
            root.join(&def.template_path).display().to_string(),
        ),
        ("ADE_MANIFEST_FOLDER", manifest_folder.display().to_string()),
        ("ADE_ENVIRONMENT_NAME", env.name),
        ("ADE_ENVIRONMENT_LOCATION", env.location),
        ("ADE_ENVIRONMENT_TYPE", env.environment_type),
        ("ADE_RESOURCE_GROUP_NAME", rg_name),
        ("ADE_OPERATION_PARAMETERS", params),
    ];
    for (k, v) in vars {
        println!("export {k}={}", slipway_core::shell::quote(&v));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_shapes() {
        assert!(Cli::try_parse_from([
            "ade",
            "files",
            "download",
            "--file-name",
            "storage.zip",
            "--folder-path",
            "/x",
            "--unzip"
        ])
        .is_ok());
        assert!(Cli::try_parse_from([
            "ade",
            "files",
            "download",
            "--file-name",
            "s.zip",
            "--unzip",
            "true"
        ])
        .is_ok());
        assert!(Cli::try_parse_from(["ade", "files", "upload"]).is_err());
        assert!(Cli::try_parse_from([
            "ade",
            "files",
            "upload",
            "--file-path",
            "a",
            "--folder-path",
            "b"
        ])
        .is_err());
        assert!(Cli::try_parse_from([
            "ade",
            "log",
            "--content",
            "\n>>> x",
            "--type",
            "verbose",
            "--operation",
            "deploy"
        ])
        .is_ok());
        let c = Cli::try_parse_from([
            "ade",
            "execute",
            "--operation",
            "deploy",
            "--command",
            "/scripts/deploy.sh",
            "-x",
        ])
        .unwrap();
        match c.command {
            Command::Execute { command, .. } => assert_eq!(command, ["/scripts/deploy.sh", "-x"]),
            other => panic!("{other:?}"),
        }
    }
}
