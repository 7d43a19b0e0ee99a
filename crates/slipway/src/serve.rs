//! `slipway serve`: store + container engine + scheduler + HTTP server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use slipway_api::{AppState, ServerConfig};
use slipway_catalog::SyncScheduler;
use slipway_core::access::{Role, Scope};
use slipway_runner::{Engine, RunnerImages, Scheduler, SchedulerConfig};
use slipway_store::{SecretKey, Store};

/// Options of `slipway serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Data directory (SQLite database and blobs).
    #[arg(long, env = "SLIPWAY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on; loopback only unless you put a proxy in front.
    #[arg(long, env = "SLIPWAY_LISTEN", default_value = "127.0.0.1:7878")]
    pub listen: SocketAddr,
    /// Operations that may run at once.
    #[arg(long, default_value_t = 4)]
    pub max_concurrent: usize,
    /// Runtime limit per operation, in minutes.
    #[arg(long, default_value_t = 60)]
    pub max_runtime_minutes: u64,
    /// Storage limit per environment, in MiB (uploads beyond it fail with ADE exit code 14).
    #[arg(long, default_value_t = 256)]
    pub max_storage_mib: u64,
    /// Image for runner `Core`.
    #[arg(
        long,
        env = "SLIPWAY_RUNNER_CORE",
        default_value = "localhost/slipway/runner-core:latest"
    )]
    pub runner_core: String,
    /// Image for runner `Terraform`.
    #[arg(
        long,
        env = "SLIPWAY_RUNNER_TERRAFORM",
        default_value = "localhost/slipway/runner-terraform:latest"
    )]
    pub runner_terraform: String,
    /// Image for runners `ARM` and `Bicep` (and definitions without
    /// `runner:`, ADE's default).
    #[arg(
        long,
        env = "SLIPWAY_RUNNER_ARM",
        default_value = "localhost/slipway/runner-arm:latest"
    )]
    pub runner_arm: String,
    /// User made DevCenter Admin on first start (when nobody holds the role);
    /// a token for it is written to `<data-dir>/admin.token` (mode 0600).
    #[arg(long, env = "SLIPWAY_ADMIN_USER", default_value = "admin")]
    pub admin_user: String,
    /// Grace period between SIGTERM and SIGKILL when an operation is canceled, in seconds.
    #[arg(long, default_value_t = 10)]
    pub cancel_grace_seconds: u64,
    /// How long a client may take to send a request's head, in seconds,
    /// on the API listener and every runner's API address; a connection
    /// that takes longer (or idles that long between requests) is closed.
    #[arg(long, env = "SLIPWAY_HTTP_HEADER_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub http_header_timeout_seconds: u64,
    /// Connections the API listener holds open at once; beyond that new
    /// ones wait in the kernel's backlog until one closes (log followers
    /// hold theirs while they follow).
    #[arg(long, env = "SLIPWAY_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_connections: u64,
    /// File holding the key that seals stored secrets (64 hex digits). Default:
    /// `<data-dir>/secret.key`, created on first start; keep your own outside
    /// the data directory in production.
    #[arg(long, env = "SLIPWAY_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// Scratch folder for temporary catalog clones and key files. Default: a
    /// folder on /dev/shm when present (fast, never on disk), else `<data-dir>/work`.
    #[arg(long, env = "SLIPWAY_SCRATCH_DIR")]
    pub scratch_dir: Option<PathBuf>,
    /// Interval of the scheduled sync of `Scheduled` catalogs, in seconds (ADE: 30 minutes).
    #[arg(long, env = "SLIPWAY_CATALOG_SYNC_INTERVAL", default_value_t = 1800)]
    pub catalog_sync_interval_seconds: u64,
    /// Port of the embedded OCI registry on 127.0.0.1 (0 = a free port).
    #[arg(long, env = "SLIPWAY_REGISTRY_PORT", default_value_t = 0)]
    pub registry_port: u16,
    /// Image task runs executing at once.
    #[arg(long, default_value_t = 4)]
    pub max_concurrent_task_runs: usize,
    /// Base images outside the embedded registry are polled at a random
    /// interval in `MIN-MAX` seconds (ACR polls every 10–60 minutes).
    #[arg(long, default_value = "600-3600", value_parser = parse_range)]
    pub base_image_poll_seconds: (u64, u64),
    /// Image task run logs are deleted this many days after the run ends.
    #[arg(long, default_value_t = 30)]
    pub task_log_retention_days: u64,
    /// Where `PlatformImage` base images are built and cached (shared by
    /// every server on the host).
    #[arg(
        long,
        env = "SLIPWAY_BASE_IMAGE_DIR",
        default_value = "/var/cache/slipway/base-images"
    )]
    pub base_image_dir: PathBuf,
    /// Debian mirror that base images are built from.
    #[arg(
        long,
        env = "SLIPWAY_DEBIAN_MIRROR",
        default_value = "http://deb.debian.org/debian"
    )]
    pub debian_mirror: String,
    /// Ubuntu mirror that Ubuntu base images (`Canonical` platform images)
    /// are built from; without one only Debian is offered.
    #[arg(long, env = "SLIPWAY_UBUNTU_MIRROR")]
    pub ubuntu_mirror: Option<String>,
    /// The Ubuntu archive keyring an Ubuntu mirror's signatures are checked
    /// with (Ubuntu's `ubuntu-keyring` package); read at start when
    /// `--ubuntu-mirror` is given.
    #[arg(
        long,
        env = "SLIPWAY_UBUNTU_KEYRING",
        default_value = "/usr/share/keyrings/ubuntu-archive-keyring.gpg"
    )]
    pub ubuntu_keyring: PathBuf,
    /// A base image built on this host whose newest version is older than
    /// this many days is rebuilt from the mirror (a newer `PlatformImage`
    /// version, which starts the runs of templates whose `SourceImage`
    /// trigger follows it); 0 never refreshes.
    #[arg(long, env = "SLIPWAY_BASE_IMAGE_MAX_AGE_DAYS", default_value_t = 30)]
    pub base_image_max_age_days: u32,
    /// How many versions of a base image a refresh keeps (the newest; at
    /// least 1); a template pinned to a removed one is refused naming those
    /// left.
    #[arg(long, env = "SLIPWAY_BASE_IMAGE_KEEP_VERSIONS", default_value_t = 3)]
    pub base_image_keep_versions: usize,
    /// VM image builds at once.
    #[arg(long, default_value_t = 2)]
    pub max_concurrent_image_builds: usize,
    /// qemu accelerator of full-boot VM image builds: `auto` (KVM when
    /// /dev/kvm works, TCG otherwise), `kvm` or `tcg`.
    #[arg(long, env = "SLIPWAY_VM_ACCEL", default_value = "auto")]
    pub vm_accel: slipway_vm_images::vm::AccelMode,
    /// PEM file of extra CA certificates trusted for https URLs the server
    /// fetches (task contexts, other registries, VM image sources, scripts
    /// and files), on top of the system's CA store.
    #[arg(long, env = "SLIPWAY_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// An IPv4 network (`a.b.c.d/n`, repeatable) the server may fetch URLs
    /// users name from (task contexts and alias files, VM image sources,
    /// scripts and files) although the isolation policy blocks it:
    /// self-hosted artifact stores and mirrors on private networks or
    /// loopback. Default none: a URL whose host resolves only to loopback,
    /// link-local (the metadata service), private or other blocked
    /// addresses is refused before any connection, at every redirect.
    #[arg(long, env = "SLIPWAY_FETCH_ALLOWED_CIDR", value_delimiter = ',')]
    pub fetch_allowed_cidr: Vec<slipway_core::isolation::Ipv4Cidr>,
    /// IPv4 pool of the runners' own networks: each operation takes a /30
    /// from it (the host end is where its runner API listens). Choose a
    /// range no real network of this host uses.
    #[arg(long, env = "SLIPWAY_RUNNER_NETWORK", default_value = slipway_runner::netns::DEFAULT_POOL)]
    pub runner_network: slipway_core::isolation::Ipv4Cidr,
    /// The static `ade` CLI mounted read-only at `/adecli/ade` in every
    /// runner, so images built FROM Microsoft's core image (whose own `ade`
    /// speaks to Azure) talk to Slipway. Default: `ade` beside this
    /// `slipway` executable when it is a static build; otherwise runners
    /// keep their image's `ade`.
    #[arg(long, env = "SLIPWAY_RUNNER_ADE", value_name = "FILE")]
    pub runner_ade: Option<PathBuf>,
    /// Azure region of the resource groups Slipway creates for
    /// environments whose type deploys to an Azure subscription with an
    /// Entra deployment identity.
    #[arg(
        long,
        env = "SLIPWAY_AZURE_LOCATION",
        default_value = "eastus",
        value_name = "REGION"
    )]
    pub azure_location: String,
    /// A host folder beneath which `local` catalogs (DevCenter Admins only),
    /// `file://` git URLs of catalogs and task contexts, and the host paths
    /// of VM image templates (DiskImage sources, scripts, files, VHD
    /// outputs) may point; repeatable. Without one, all are refused.
    #[arg(long = "local-catalog-root", value_name = "DIR")]
    pub local_catalog_roots: Vec<PathBuf>,
    /// No start-up lines on stdout (a server embedded in another command,
    /// `slipway runner test`); not a command-line flag.
    #[arg(skip)]
    pub quiet: bool,
}

/// The `ade` mounted into runners: `flag` (which must be a static
/// executable), else a static `ade` beside this executable, else none.
///
/// Errors: `--runner-ade` naming a file that is not a static executable.
fn runner_ade(flag: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    use slipway_runner::ade_cli::check_runner_ade;
    if let Some(path) = flag {
        return check_runner_ade(path)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("--runner-ade: {e}"));
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("ade")));
    match beside.as_deref().map(check_runner_ade) {
        Some(Ok(path)) => {
            tracing::info!(ade = %path.display(), "runners get this ade at /adecli/ade");
            Ok(Some(path))
        }
        _ => {
            tracing::info!("no static ade beside slipway (pass --runner-ade): runners keep their image's own ade");
            Ok(None)
        }
    }
}

/// `MIN-MAX` seconds, `1 <= MIN <= MAX`.
fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let bad = || format!("'{s}' is not a range: expected MIN-MAX seconds, e.g. 600-3600");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (u64, u64) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// Runs the server until the process is stopped.
pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(run(args))
}

async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let fetcher = match &args.ca_file {
        Some(f) => {
            let fetcher = slipway_fetch::Fetcher::with_ca_file(f).context("--ca-file")?;
            tracing::info!(file = %f.display(), certificates = fetcher.extra_cas(), "trusting extra CA certificates");
            fetcher
        }
        None => slipway_fetch::Fetcher::system(),
    }
    .allowing(&args.fetch_allowed_cidr);
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(crate::default_data_dir);
    let store = Store::open(&data_dir)
        .await
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;
    // Absolute from here on: the folder is recorded on runners and task
    // steps, and a later server checks whether it still exists.
    let data_dir = data_dir.canonicalize().unwrap_or(data_dir);
    let key_file = args
        .secret_key_file
        .clone()
        .unwrap_or_else(|| data_dir.join("secret.key"));
    let secret_key = match &args.secret_key_file {
        Some(f) => SecretKey::from_file(f),
        None => SecretKey::load_or_create(&key_file),
    }
    .with_context(|| format!("loading the secret key from {}", key_file.display()))?;
    bootstrap_admin(&store, &args.admin_user, &data_dir.join("admin.token")).await?;
    for c in store.cancel_interrupted_syncs().await? {
        tracing::warn!(catalog = %c, "a sync was interrupted by the last shutdown; its previous snapshot stays");
    }
    let work_dir = args
        .scratch_dir
        .clone()
        .unwrap_or_else(|| slipway_catalog::default_scratch_dir(&data_dir));
    slipway_catalog::clean_scratch(&work_dir)
        .with_context(|| format!("cleaning the scratch folder {}", work_dir.display()))?;
    let local_roots = slipway_catalog::LocalRoots::new(&args.local_catalog_roots)
        .context("--local-catalog-root")?;
    let catalog_scheduler = SyncScheduler::new(
        store.clone(),
        work_dir.clone(),
        secret_key.clone(),
        local_roots.clone(),
        args.fetch_allowed_cidr.clone(),
        Duration::from_secs(args.catalog_sync_interval_seconds.max(1)),
    );
    let catalog_sync = catalog_scheduler.trigger();
    catalog_scheduler.spawn();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let base_url = format!("http://{addr}");
    let engine = Engine::connect(&data_dir)
        .await
        .context("connecting to the container engine")?;
    let task_engine = engine.clone();
    let devcenter_id = "slipway-local".to_string();
    let identity_tokens = Arc::new(slipway_runner::identity::TokenBroker::new(fetcher.clone()));
    let scheduler = Scheduler::new(
        store.clone(),
        engine,
        SchedulerConfig {
            max_concurrent: args.max_concurrent.max(1),
            max_runtime: Duration::from_secs(args.max_runtime_minutes.max(1) * 60),
            stop_grace: Duration::from_secs(args.cancel_grace_seconds),
            network_pool: slipway_runner::NetworkPool::new(args.runner_network),
            devcenter_id: devcenter_id.clone(),
            instance_id: slipway_runner::instance_id_for(&data_dir),
            data_dir: data_dir.clone(),
            secret_key: secret_key.clone(),
            runner_ade: runner_ade(args.runner_ade.as_deref())?,
            identity_tokens: Arc::clone(&identity_tokens),
            resource_groups: slipway_runner::azure::ResourceGroups::new(
                Arc::clone(&identity_tokens),
                fetcher.clone(),
            ),
            azure_location: args.azure_location.clone(),
        },
    );
    // Image tasks: the embedded registry notifies this server of pushes.
    let registry_events_token = {
        let mut b = [0u8; 24];
        rand::fill(&mut b);
        hex::encode(b)
    };
    let registry_port = match args.registry_port {
        0 => std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .context("choosing a port for the embedded registry")?,
        p => p,
    };
    let (registry, tasks) = match slipway_tasks::registry::EmbeddedRegistry::start(
        &data_dir,
        registry_port,
        &format!("{base_url}/registry/events"),
        &registry_events_token,
        &secret_key.derive("embedded-registry-user"),
    )
    .await
    {
        Ok(r) => {
            // Slipway's own pulls, pushes and digest look-ups on the embedded
            // registry authenticate like any `registry` credential, by host.
            store.set_builtin_registry_credentials(vec![r.own_account.clone()]);
            let svc = slipway_tasks::TaskService::new(
                store.clone(),
                task_engine,
                slipway_tasks::TaskConfig {
                    max_concurrent_runs: args.max_concurrent_task_runs,
                    base_image_poll: args.base_image_poll_seconds,
                    log_retention_days: args.task_log_retention_days,
                    registry_login: Some(r.user_account.clone()),
                    local_roots: local_roots.clone(),
                    network_pool: slipway_runner::NetworkPool::new(args.runner_network),
                    ..slipway_tasks::TaskConfig::new(
                        data_dir.clone(),
                        r.host.clone(),
                        secret_key.clone(),
                        fetcher.clone().allowing_socket(std::net::SocketAddr::from((
                            [127, 0, 0, 1],
                            registry_port,
                        ))),
                    )
                },
            );
            svc.start().await.context("starting image tasks")?;
            if !args.quiet {
                println!("slipway registry on {}", r.host);
            }
            (Some(r), Some(svc))
        }
        Err(e) => {
            tracing::warn!(error = %e, "image tasks are off");
            (None, None)
        }
    };
    let mut image_config = slipway_vm_images::ImageConfig {
        max_concurrent_runs: args.max_concurrent_image_builds,
        accel: args.vm_accel,
        network_pool: Some(slipway_runner::NetworkPool::new(args.runner_network)),
        local_roots: local_roots.clone(),
        ..slipway_vm_images::ImageConfig::new(
            &data_dir,
            args.base_image_dir.clone(),
            args.debian_mirror.clone(),
            fetcher,
        )
    };
    if let Some(url) = &args.ubuntu_mirror {
        image_config.base_images = image_config
            .base_images
            .with_ubuntu_mirror(slipway_vm_images::base::UbuntuMirror {
                url: url.clone(),
                keyring: args.ubuntu_keyring.clone(),
            })
            .context("--ubuntu-mirror/--ubuntu-keyring")?;
    }
    let images = slipway_vm_images::ImageService::new(store.clone(), image_config);
    images.recover().await.context("recovering VM image runs")?;
    images.spawn_platform_image_watch(args.base_image_max_age_days, args.base_image_keep_versions);
    let environments = Arc::new(slipway_environments::EnvironmentService::new(
        store.clone(),
        RunnerImages {
            core: args.runner_core,
            terraform: args.runner_terraform,
            arm: args.runner_arm,
        },
        Arc::clone(&scheduler) as Arc<dyn slipway_environments::OperationQueue>,
    ));
    let state = AppState {
        environments: Arc::clone(&environments),
        images,
        store,
        config: Arc::new(ServerConfig {
            base_url: base_url.clone(),
            devcenter_id,
            work_dir,
            max_storage_bytes: args.max_storage_mib * 1024 * 1024,
            local_roots,
            fetch_allowed_cidrs: args.fetch_allowed_cidr.clone(),
            header_read_timeout: Duration::from_secs(args.http_header_timeout_seconds),
            max_connections: args.max_connections as usize,
        }),
        secret_key,
        catalog_sync,
        tasks,
        registry_events_token,
        identity_tokens,
    };
    scheduler.set_runner_api(Arc::new(slipway_api::RunnerApiServer::new(state.clone())));
    scheduler.spawn().await.context("recovering operations")?;
    environments.spawn_expiration_timer();
    if !args.quiet {
        println!(
            "slipway listening on {base_url} (data in {})",
            data_dir.display()
        );
    }
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        stop_signal().await;
        tracing::info!("stopping: no new requests; ending VM image builds");
        stop_tx.send_replace(true);
    });
    let stopped = |mut stop: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let http = slipway_api::serve(listener, state.clone(), stopped(stop.clone()));
    // Requests in flight get a grace period; a follower of a log stream
    // does not hold the stop up.
    tokio::select! {
        r = http => r.context("serving HTTP")?,
        _ = async {
            stopped(stop).await;
            tokio::time::sleep(HTTP_GRACE).await;
        } => tracing::warn!("open HTTP connections cut after {} s", HTTP_GRACE.as_secs()),
    }
    let left = state.images.shutdown(IMAGE_BUILD_GRACE).await;
    if left > 0 {
        tracing::warn!(
            runs = left,
            "VM image builds still ending after the grace period"
        );
    }
    scheduler.remove_spare().await;
    drop(registry);
    tracing::info!("stopped");
    Ok(())
}

/// How long requests in flight may take once the server is stopping.
const HTTP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);
/// How long VM image builds get to release their mounts, loop devices,
/// processes and networks once the server is stopping.
const IMAGE_BUILD_GRACE: std::time::Duration = std::time::Duration::from_secs(120);

/// Resolves at SIGINT (Ctrl-C) or SIGTERM (`systemctl stop`, `podman
/// stop`, Kubernetes): what stops the server gracefully. Operations'
/// runners keep running and are picked up again at the next start.
async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "SIGTERM cannot be caught; only Ctrl-C stops gracefully");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// First start: makes `user` DevCenter Admin and writes a token for it to
/// `token_file` (0600, temp file + rename). Does nothing once anybody holds
/// the role.
async fn bootstrap_admin(store: &Store, user: &str, token_file: &Path) -> anyhow::Result<()> {
    if store.has_devcenter_admin().await? {
        return Ok(());
    }
    let (_, token) = store
        .create_token(user, Some("bootstrap"), None)
        .await
        .context("creating the first admin token")?;
    slipway_store::write_private_file(token_file, token.as_bytes())
        .with_context(|| format!("writing {}", token_file.display()))?;
    store
        .assign_role(user, Role::DevCenterAdmin, &Scope::DevCenter)
        .await?;
    tracing::info!(user, file = %token_file.display(), "first start: DevCenter Admin token written");
    Ok(())
}
