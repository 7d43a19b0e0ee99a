//! `slipway vm-image …`: VM image templates (like `az image builder`) and
//! the one-shot `slipway vm-image build`, modelled on the Azure DevOps
//! "Azure VM Image Builder" task (`../shared/reference/image-builder.md` §2).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::{json, Value};
use slipway_core::images::run::RunState;
use slipway_wire::vm_images::ImageRun;

use crate::api_client::{escape, ApiClient};
use crate::output::{any_table, emit};
use crate::OutputFormat;

/// `slipway vm-image` subcommands.
#[derive(Debug, Subcommand)]
pub enum VmImageCommand {
    /// Image templates and their runs.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// One shot, like the DevOps task: pack a build folder, make a template
    /// `t_<ms>` that copies it to `/tmp/<folder>` and runs an inline script,
    /// run it, download file outputs and print the output variables.
    #[command(
        after_help = "Example: slipway vm-image build --source Debian:debian-12:12:latest --package-path ./site --inline-script \"cp -r /tmp/site /var/www\" --distribute VHD"
    )]
    Build(Box<BuildArgs>),
    /// The image store: managed images and gallery image versions.
    #[command(after_help = "Example: slipway vm-image list")]
    List,
    /// Built base images that `PlatformImage` sources resolve to.
    #[command(after_help = "Example: slipway vm-image platform-images")]
    PlatformImages,
    /// `SourceImage` triggers: rebuild a template when a newer version of
    /// its source is stored (like `az image builder trigger`).
    #[command(subcommand)]
    Trigger(TriggerCommand),
}

/// `slipway vm-image trigger` subcommands.
#[derive(Debug, Subcommand)]
pub enum TriggerCommand {
    /// Create or replace a trigger on a template whose source is
    /// `…/versions/latest` of a gallery image or a managed image.
    #[command(
        after_help = "Example: slipway vm-image trigger create --template web-app --name on-base"
    )]
    Create {
        /// Image template.
        #[arg(long)]
        template: String,
        /// Trigger name.
        #[arg(long)]
        name: String,
        /// Trigger kind (AIB knows only `SourceImage`).
        #[arg(long, default_value = "SourceImage")]
        kind: String,
    },
    /// Show a trigger and what it last did.
    #[command(
        after_help = "Example: slipway vm-image trigger show --template web-app --name on-base"
    )]
    Show {
        /// Image template.
        #[arg(long)]
        template: String,
        /// Trigger name.
        #[arg(long)]
        name: String,
    },
    /// List a template's triggers.
    #[command(after_help = "Example: slipway vm-image trigger list --template web-app")]
    List {
        /// Image template.
        #[arg(long)]
        template: String,
    },
    /// Delete a trigger.
    #[command(
        after_help = "Example: slipway vm-image trigger delete --template web-app --name on-base"
    )]
    Delete {
        /// Image template.
        #[arg(long)]
        template: String,
        /// Trigger name.
        #[arg(long)]
        name: String,
    },
}

/// `slipway vm-image template` subcommands.
#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Create or replace a template from an AIB template document (JSON).
    #[command(after_help = "Example: slipway vm-image template create web-base -f template.json")]
    Create {
        /// Template name (`^[A-Za-z0-9-_.]{1,64}$`).
        name: String,
        /// The template document.
        #[arg(long, short = 'f')]
        file: PathBuf,
    },
    /// Show a template and its last run status.
    #[command(after_help = "Example: slipway vm-image template show web-base")]
    Show {
        /// Template name.
        name: String,
    },
    /// List templates.
    #[command(after_help = "Example: slipway vm-image template list")]
    List,
    /// Run a template; waits and follows customization.log unless --no-wait.
    #[command(after_help = "Example: slipway vm-image template run web-base")]
    Run {
        /// Template name.
        name: String,
        /// Return once the run has started.
        #[arg(long)]
        no_wait: bool,
    },
    /// Cancel the run in progress.
    #[command(after_help = "Example: slipway vm-image template cancel web-base")]
    Cancel {
        /// Template name.
        name: String,
    },
    /// Delete a template (its outputs and images stay).
    #[command(after_help = "Example: slipway vm-image template delete web-base")]
    Delete {
        /// Template name.
        name: String,
    },
    /// List a template's runs, newest first.
    #[command(after_help = "Example: slipway vm-image template list-runs web-base")]
    ListRuns {
        /// Template name.
        name: String,
    },
    /// Show run outputs; with --download, save the artifact of one.
    #[command(
        after_help = "Example: slipway vm-image template output web-base --output-name vhd --download ./web-base.vhd"
    )]
    Output {
        /// Template name.
        name: String,
        /// A runOutputName; all outputs without it.
        #[arg(long)]
        output_name: Option<String>,
        /// Save the artifact (VHD, qcow2, raw file or stored image disk) here.
        #[arg(long, requires = "output_name")]
        download: Option<PathBuf>,
    },
    /// Print a run's customization.log (the last run by default).
    #[command(after_help = "Example: slipway vm-image template log web-base --run r3")]
    Log {
        /// Template name.
        name: String,
        /// Run id.
        #[arg(long)]
        run: Option<String>,
    },
}

/// `slipway vm-image build` inputs (the DevOps task's, by their meaning).
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// `Publisher:Offer:Sku[:Version]` of a platform image (`Debian:debian-12:12`),
    /// an image-store id (`/slipway/images/<n>`, `…/galleries/<g>/images/<d>/versions/<v>|latest`),
    /// or a disk file path or URL (qcow2, raw or VHD).
    #[arg(long)]
    source: String,
    /// The build folder: packed as tar.gz, copied to `/tmp/<folder>.tar.gz`
    /// and unpacked into `/tmp/<folder>` before the inline script runs.
    #[arg(long)]
    package_path: PathBuf,
    /// Shell commands run after unpacking (run with `/bin/sh -e`).
    #[arg(long)]
    inline_script: String,
    /// `vhd=PATH`, `qcow2=PATH`, `raw=PATH`, `managedimage=ID` or
    /// `sharedimage=ID`. Repeatable.
    #[arg(long, required = true)]
    distribute: Vec<String>,
    /// Build timeout in minutes (0 = 240, at most 960).
    #[arg(long, default_value_t = 0)]
    build_timeout: u32,
    /// Azure VM size (recorded; maps to vCPUs/memory for full-boot builds).
    #[arg(long)]
    vm_size: Option<String>,
    /// Grow the OS disk to this many GiB.
    #[arg(long)]
    os_disk_size_gb: Option<u32>,
    /// Where the scripts run: `Chroot` (default; no boot) or `FullBoot`
    /// (the image boots under qemu; `vmProfile.executor`).
    #[arg(long)]
    executor: Option<String>,
    /// Keep the template after a successful build.
    #[arg(long)]
    keep_template: bool,
}

/// Runs a `slipway vm-image` command.
pub fn run(
    client: &ApiClient,
    output: OutputFormat,
    cmd: VmImageCommand,
) -> anyhow::Result<ExitCode> {
    let print_json = |v: &Value| {
        emit(output, v, any_table);
        Ok(ExitCode::SUCCESS)
    };
    match cmd {
        VmImageCommand::Template(t) => template(client, output, t),
        VmImageCommand::Build(b) => build(client, &b),
        VmImageCommand::List => print_json(&client.get("/vmImages")?),
        VmImageCommand::PlatformImages => print_json(&client.get("/vmImages/platformImages")?),
        VmImageCommand::Trigger(t) => trigger(client, output, t),
    }
}

fn template(
    client: &ApiClient,
    output: OutputFormat,
    cmd: TemplateCommand,
) -> anyhow::Result<ExitCode> {
    let print_json = |v: &Value| {
        emit(output, v, any_table);
        Ok(ExitCode::SUCCESS)
    };
    match cmd {
        TemplateCommand::Create { name, file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading the template {}", file.display()))?;
            let doc: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            print_json(
                &client
                    .send(
                        "PUT",
                        &format!("/imageTemplates/{}", escape(&name)),
                        Some(&doc),
                    )?
                    .json()?,
            )
        }
        TemplateCommand::Show { name } => {
            print_json(&client.get(&format!("/imageTemplates/{}", escape(&name)))?)
        }
        TemplateCommand::List => print_json(&client.get("/imageTemplates")?),
        TemplateCommand::Run { name, no_wait } => {
            let run = client
                .send(
                    "POST",
                    &format!("/imageTemplates/{}/run", escape(&name)),
                    None,
                )?
                .json()?;
            let id = run["runId"].as_str().unwrap_or_default().to_string();
            if no_wait {
                return print_json(&run);
            }
            let end = follow(client, &name, &id, true)?;
            Ok(if end.run_state == RunState::Succeeded {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        TemplateCommand::Cancel { name } => print_json(
            &client
                .send(
                    "POST",
                    &format!("/imageTemplates/{}/cancel", escape(&name)),
                    None,
                )?
                .json()?,
        ),
        TemplateCommand::Delete { name } => {
            client.send(
                "DELETE",
                &format!("/imageTemplates/{}", escape(&name)),
                None,
            )?;
            println!("deleted image template {name}");
            Ok(ExitCode::SUCCESS)
        }
        TemplateCommand::ListRuns { name } => {
            print_json(&client.get(&format!("/imageTemplates/{}/runs", escape(&name)))?)
        }
        TemplateCommand::Output {
            name,
            output_name,
            download,
        } => match (output_name, download) {
            (Some(o), Some(dest)) => {
                let n = client.download(
                    &format!(
                        "/imageTemplates/{}/runOutputs/{}/content",
                        escape(&name),
                        escape(&o)
                    ),
                    &dest,
                )?;
                println!("saved {} ({n} bytes)", dest.display());
                Ok(ExitCode::SUCCESS)
            }
            (Some(o), None) => print_json(&client.get(&format!(
                "/imageTemplates/{}/runOutputs/{}",
                escape(&name),
                escape(&o)
            ))?),
            (None, _) => {
                print_json(&client.get(&format!("/imageTemplates/{}/runOutputs", escape(&name)))?)
            }
        },
        TemplateCommand::Log { name, run } => {
            let id = match run {
                Some(r) => r,
                None => client.get(&format!("/imageTemplates/{}/runs", escape(&name)))?["value"][0]
                    ["runId"]
                    .as_str()
                    .context("the template has no runs")?
                    .to_string(),
            };
            let r = client.send(
                "GET",
                &format!("/imageTemplates/{}/runs/{id}/log", escape(&name)),
                None,
            )?;
            print!("{}", r.body);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Follows run `id` until it ends, printing its `customization.log` to
/// stderr as it grows when `show_log`; returns the final run.
fn follow(client: &ApiClient, name: &str, id: &str, show_log: bool) -> anyhow::Result<ImageRun> {
    let log = format!("/imageTemplates/{}/runs/{id}/log", escape(name));
    if show_log {
        client.follow_log(&log, &mut std::io::stderr())?;
    } else {
        client.follow_log(&log, &mut std::io::sink())?;
    }
    let run: ImageRun = client.get_as(&format!("/imageTemplates/{}/runs/{id}", escape(name)))?;
    eprintln!(
        "run {id}: {}{}",
        run.run_state,
        if run.message.is_empty() {
            String::new()
        } else {
            format!(": {}", run.message)
        }
    );
    Ok(run)
}

fn source_of(s: &str) -> anyhow::Result<Value> {
    if s.starts_with('/') && s.contains("/images/") {
        return Ok(if s.contains("/galleries/") {
            json!({"type": "SharedImageVersion", "imageVersionId": s})
        } else {
            json!({"type": "ManagedImage", "imageId": s})
        });
    }
    if s.contains("://") || s.starts_with('/') {
        return Ok(json!({"type": "DiskImage", "uri": s}));
    }
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [p, o, k] => Ok(json!({"type": "PlatformImage", "publisher": p, "offer": o, "sku": k, "version": "latest"})),
        [p, o, k, v] => Ok(json!({"type": "PlatformImage", "publisher": p, "offer": o, "sku": k, "version": v})),
        _ => bail!("--source '{s}': expected Publisher:Offer:Sku[:Version], an image id (/…/images/…) or a disk file path or URL"),
    }
}

/// File outputs to download after the run: (runOutputName, local path).
type Downloads = Vec<(String, PathBuf)>;

fn distributors(specs: &[String]) -> anyhow::Result<(Vec<Value>, Downloads)> {
    let mut out = Vec::new();
    let mut downloads = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let (kind, target) = spec
            .split_once('=')
            .with_context(|| format!("--distribute '{spec}': expected KIND=TARGET (vhd=PATH, qcow2=PATH, raw=PATH, managedimage=ID, sharedimage=ID)"))?;
        let suffix = if i == 0 {
            String::new()
        } else {
            format!("_{i}")
        };
        let d = match kind.to_ascii_lowercase().as_str() {
            k @ ("vhd" | "qcow2" | "raw") => {
                let (ty, ron) = match k {
                    "vhd" => ("VHD", "VHD_distribute"),
                    "qcow2" => ("Qcow2", "Qcow2_distribute"),
                    _ => ("Raw", "Raw_distribute"),
                };
                let ron = format!("{ron}{suffix}");
                let path = std::path::absolute(target).with_context(|| format!("--distribute '{spec}'"))?;
                downloads.push((ron.clone(), path));
                json!({"type": ty, "runOutputName": ron})
            }
            "managedimage" => json!({"type": "ManagedImage", "runOutputName": format!("ManagedImage_distribute{suffix}"), "imageId": target, "location": "local"}),
            "sharedimage" | "sig" => json!({"type": "SharedImage", "runOutputName": format!("SharedImage_distribute{suffix}"), "galleryImageId": target}),
            other => bail!("--distribute '{spec}': unknown kind '{other}' (expected vhd, qcow2, raw, managedimage or sharedimage)"),
        };
        out.push(d);
    }
    Ok((out, downloads))
}

fn pack(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let tar = slipway_tasks::context::tar_dir(dir, None)
        .with_context(|| format!("packing {}", dir.display()))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
    gz.write_all(&tar)?;
    Ok(gz.finish()?)
}

fn build(client: &ApiClient, b: &BuildArgs) -> anyhow::Result<ExitCode> {
    if !b.package_path.is_dir() {
        bail!(
            "--package-path '{}' is not a folder",
            b.package_path.display()
        );
    }
    let folder = std::path::absolute(&b.package_path)?
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .context("--package-path has no folder name")?;
    let source = source_of(&b.source)?;
    let (distribute, downloads) = distributors(&b.distribute)?;
    let archive = pack(&b.package_path)?;
    eprintln!(
        "Packed {} as {folder}.tar.gz ({} bytes)",
        b.package_path.display(),
        archive.len()
    );
    let up = client
        .send_bytes("PUT", "/vmImages/artifacts", &archive)?
        .json()?;
    let uri = up["uri"]
        .as_str()
        .context("the server gave no artifact uri")?;
    let mut inline = vec![
        "#".to_string(),
        format!("mkdir -p /tmp/{folder}"),
        format!("sudo tar -xzf /tmp/{folder}.tar.gz -C /tmp/{folder}"),
    ];
    inline.extend(b.inline_script.lines().map(str::to_string));
    let mut props = json!({
        "source": source,
        "customize": [
            {"type": "File", "name": "vststask_file_copy", "sourceUri": uri, "destination": format!("/tmp/{folder}.tar.gz")},
            {"type": "Shell", "name": "vststask_inline", "inline": inline},
        ],
        "distribute": distribute,
        "buildTimeoutInMinutes": b.build_timeout,
    });
    if b.vm_size.is_some() || b.os_disk_size_gb.is_some() || b.executor.is_some() {
        props["vmProfile"] = json!({});
        if let Some(x) = &b.executor {
            props["vmProfile"]["executor"] = json!(x);
        }
        if let Some(v) = &b.vm_size {
            props["vmProfile"]["vmSize"] = json!(v);
        }
        if let Some(g) = b.os_disk_size_gb {
            props["vmProfile"]["osDiskSizeGB"] = json!(g);
        }
    }
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let name = format!("t_{millis}");
    client.send(
        "PUT",
        &format!("/imageTemplates/{name}"),
        Some(&json!({"properties": props})),
    )?;
    eprintln!("Created image template {name}");
    let run = client
        .send("POST", &format!("/imageTemplates/{name}/run"), None)?
        .json()?;
    let id = run["runId"]
        .as_str()
        .context("the server gave no run id")?
        .to_string();
    let end = follow(client, &name, &id, true)?;
    if end.run_state != RunState::Succeeded {
        eprintln!("The template {name} and its staging area are kept for inspection (slipway vm-image template log {name}).");
        return Ok(ExitCode::FAILURE);
    }
    let outputs = client.get(&format!("/imageTemplates/{name}/runOutputs"))?;
    let mut image_uri = String::new();
    for (ron, path) in &downloads {
        let n = client.download(
            &format!("/imageTemplates/{name}/runOutputs/{ron}/content"),
            path,
        )?;
        eprintln!("Saved {ron} to {} ({n} bytes)", path.display());
        if image_uri.is_empty() {
            image_uri = path.to_string_lossy().into_owned();
        }
    }
    if image_uri.is_empty() {
        image_uri = outputs["value"][0]["properties"]["artifactId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
    }
    let src = &end.source;
    println!("## task output variables ##");
    println!("$(imageUri) = {image_uri}");
    println!("$(templateName) = {name}");
    println!("$(templateId) = /slipway/imageTemplates/{name}");
    if src["type"] == "PlatformImage" {
        for (var, key) in [
            ("pirPublisher", "publisher"),
            ("pirOffer", "offer"),
            ("pirSku", "sku"),
            ("pirVersion", "version"),
        ] {
            println!("$({var}) = {}", src[key].as_str().unwrap_or_default());
        }
    }
    if !b.keep_template {
        client.send("DELETE", &format!("/imageTemplates/{name}"), None)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn trigger(
    client: &ApiClient,
    output: OutputFormat,
    cmd: TriggerCommand,
) -> anyhow::Result<ExitCode> {
    let path = |t: &str, n: &str| format!("/imageTemplates/{}/triggers/{}", escape(t), escape(n));
    let v = match cmd {
        TriggerCommand::Create {
            template,
            name,
            kind,
        } => client
            .send(
                "PUT",
                &path(&template, &name),
                Some(&json!({"properties": {"kind": kind}})),
            )?
            .json()?,
        TriggerCommand::Show { template, name } => client.get(&path(&template, &name))?,
        TriggerCommand::List { template } => {
            client.get(&format!("/imageTemplates/{}/triggers", escape(&template)))?
        }
        TriggerCommand::Delete { template, name } => {
            client.send("DELETE", &path(&template, &name), None)?;
            println!("deleted trigger {name} of image template {template}");
            return Ok(ExitCode::SUCCESS);
        }
    };
    emit(output, &v, any_table);
    Ok(ExitCode::SUCCESS)
}
