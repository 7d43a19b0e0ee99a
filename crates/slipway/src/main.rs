//! The `slipway` binary: `slipway serve` runs the server; every other
//! command is a client of its HTTP API (`--server`, default
//! `http://127.0.0.1:7878`).

mod admin_commands;
mod api_client;
mod catalog_commands;
mod env_commands;
mod image_commands;
mod output;
mod runner_commands;
mod serve;
mod task_render_command;
mod vm_image_commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use output::OutputFormat;

/// The `slipway` command line: global options and one command.
#[derive(Debug, Parser)]
#[command(
    long_about = None,
    name = "slipway",
    version,
    about = "Self-hosted deployment environments, image tasks and VM image templates",
    after_help = "Exit codes: 0 ok; 1 an operation or run ended Failed or Canceled (or another error); \
2 usage (bad arguments, or HTTP 400); 3 not found (404); 4 not signed in or not allowed (401/403); \
5 conflict with the current state (409); 6 server unreachable or failing (5xx).\n\
Example: slipway env create web --environment-type Dev --catalog examples --definition HelloTerraform"
)]
pub struct Cli {
    /// Server base URL.
    #[arg(
        long,
        global = true,
        env = "SLIPWAY_SERVER",
        default_value = "http://127.0.0.1:7878"
    )]
    pub server: String,
    /// API token (`slw_…`); see `slipway admin token create`. Prefer the
    /// environment variable or --token-file over the command line.
    #[arg(long, global = true, env = "SLIPWAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the API token (e.g. `<data-dir>/admin.token`, written on first start).
    #[arg(
        long,
        global = true,
        env = "SLIPWAY_TOKEN_FILE",
        conflicts_with = "token"
    )]
    pub token_file: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "table")]
    pub output: OutputFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands: the server and one group per product area.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    #[command(
        after_help = "Example: slipway serve --data-dir /var/lib/slipway --listen 127.0.0.1:7878 --local-catalog-root /srv/catalogs"
    )]
    Serve(Box<serve::ServeArgs>),
    /// Administration: projects, environment types, project environment types.
    #[command(subcommand)]
    Admin(admin_commands::AdminCommand),
    /// Catalogs of environment definitions.
    #[command(subcommand)]
    Catalog(catalog_commands::CatalogCommand),
    /// Environment definitions.
    #[command(subcommand)]
    Definition(catalog_commands::DefinitionCommand),
    /// Environments.
    #[command(subcommand)]
    Env(env_commands::EnvCommand),
    /// Container images: quick builds (like `az acr build`).
    #[command(subcommand)]
    Image(image_commands::ImageCommand),
    /// Container image tasks and their runs (like `az acr task`).
    #[command(subcommand)]
    Task(image_commands::TaskCommand),
    /// VM images: image templates, runs, outputs and the image store (like
    /// Azure VM Image Builder), and the one-shot `vm-image build`.
    #[command(subcommand)]
    VmImage(vm_image_commands::VmImageCommand),
    /// The embedded OCI registry (like `az acr login`).
    #[command(subcommand)]
    Registry(image_commands::RegistryCommand),
    /// Runner images: `runner test` runs one against a definition folder
    /// with no server (the local runner loop).
    #[command(subcommand)]
    Runner(runner_commands::RunnerCommand),
    /// Prints a shell completion script, e.g.
    /// `slipway completion bash > /etc/bash_completion.d/slipway`.
    #[command(after_help = "Example: slipway completion bash")]
    Completion {
        /// Shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Default data directory: `$XDG_DATA_HOME/slipway`, else `~/.local/share/slipway`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("slipway");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/slipway")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                // Colour only on a terminal: a server.log holds plain text.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            match serve::serve(*args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("slipway serve: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Completion { shell } => {
            use clap::CommandFactory;
            use std::io::Write;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "slipway", &mut script);
            // A closed pipe (`| head`) is the reader's choice, not a failure.
            match std::io::stdout().write_all(&script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("error: writing the completion script: {e}");
                    ExitCode::FAILURE
                }
                _ => ExitCode::SUCCESS,
            }
        }
        command => {
            let token = match (&cli.token, &cli.token_file) {
                (Some(t), _) => Some(t.trim().to_string()),
                (None, Some(f)) => match std::fs::read_to_string(f) {
                    Ok(t) => Some(t.trim().to_string()),
                    Err(e) => {
                        eprintln!("error: reading the token file '{}': {e}", f.display());
                        return ExitCode::FAILURE;
                    }
                },
                (None, None) => None,
            };
            let client = api_client::ApiClient::new(&cli.server, token);
            let result = match command {
                Command::Image(c) => image_commands::run_image(&client, c),
                Command::Task(c) => image_commands::run_task(&client, cli.output, c),
                Command::VmImage(c) => vm_image_commands::run(&client, cli.output, c),
                Command::Registry(c) => image_commands::run_registry(&client, cli.output, c),
                Command::Admin(c) => {
                    admin_commands::run(&client, cli.output, c).map(|()| ExitCode::SUCCESS)
                }
                Command::Catalog(c) => catalog_commands::run_catalog(&client, cli.output, c)
                    .map(|()| ExitCode::SUCCESS),
                Command::Definition(c) => catalog_commands::run_definition(&client, cli.output, c)
                    .map(|()| ExitCode::SUCCESS),
                Command::Env(c) => env_commands::run(&client, cli.output, c),
                // Its own embedded server: --server and --token do not apply.
                Command::Runner(c) => runner_commands::run(cli.output, c),
                Command::Serve(_) | Command::Completion { .. } => unreachable!("handled above"),
            };
            match result {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(
                        e.downcast_ref::<api_client::ApiFailure>()
                            .map_or(api_client::exit::FAILED, api_client::ApiFailure::exit_code),
                    )
                }
            }
        }
    }
}

#[cfg(test)]
mod help_tests {
    use clap::{CommandFactory, Parser};

    use super::Cli;

    /// Every command a user can run, as `["slipway", "env", "create"]`.
    fn leaves(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<(Vec<String>, clap::Command)>) {
        let subs: Vec<&clap::Command> = cmd
            .get_subcommands()
            .filter(|c| c.get_name() != "help")
            .collect();
        if subs.is_empty() {
            out.push((path.clone(), cmd.clone()));
        }
        for c in subs {
            let mut p = path.clone();
            p.push(c.get_name().to_string());
            leaves(c, p, out);
        }
    }

    #[test]
    fn every_command_shows_an_example_that_parses() {
        let mut all = Vec::new();
        leaves(&Cli::command(), vec!["slipway".into()], &mut all);
        let mut missing = Vec::new();
        for (path, cmd) in &all {
            let help = cmd
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            let Some(example) = help
                .lines()
                .find_map(|l| l.trim().strip_prefix("Example: "))
            else {
                missing.push(path.join(" "));
                continue;
            };
            let words =
                shell_words::split(example).unwrap_or_else(|e| panic!("{}: {e}", path.join(" ")));
            assert_eq!(
                &words[..path.len()],
                &path[..],
                "the example of '{}' runs another command",
                path.join(" ")
            );
            if let Err(e) = Cli::try_parse_from(&words) {
                panic!(
                    "the example of '{}' does not parse: {example}\n{e}",
                    path.join(" ")
                );
            }
        }
        assert!(
            missing.is_empty(),
            "commands without an example: {missing:#?}"
        );
    }
}
