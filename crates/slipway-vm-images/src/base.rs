//! The local base-image catalog: what `PlatformImage` sources resolve to.
//! Vendor cloud images cannot be downloaded offline, so Slipway builds its
//! own with debootstrap, from the configured Debian mirror and, when one
//! is configured, an Ubuntu mirror: a 2 GiB raw disk — generation 1 skus
//! with an MBR, one ext4 partition at 1 MiB (label `rootfs`) and extlinux
//! (BIOS); generation 2 skus with a GPT, an EFI System Partition at 1 MiB
//! holding a standalone GRUB and the ext4 root after it (UEFI) — the
//! distribution's kernel, systemd, systemd-networkd (DHCP on `e*`),
//! openssh-server, sudo, cloud-init (NoCloud datasource, network left to
//! networkd) and the serial console on `ttyS0`.
//!
//! Layout: `<dir>/<publisher>/<offer>/<sku>/<version>/{disk.raw,image.json}`;
//! versions are `<release>.<yyyymmdd>` — Debian's `debian_version`
//! (`12.15.20261121`), Ubuntu's `VERSION_ID` (`22.04.20261121`) — so
//! `latest` is the highest. One debootstrap makes both generations of a
//! release (Azure publishes them under one version). A build holds
//! `<dir>/.build.lock`, so several
//! servers (or test processes) sharing a cache build once. `image.json`
//! records the [`RECIPE`] that built the disk; disks of an older recipe
//! are not offered and are rebuilt on first use.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use slipway_core::images::ids::parse_version;

use crate::disk::{run, tail, Firmware};
use crate::BuildError;
use Distro::{Debian, Ubuntu};
use Firmware::{Bios, Uefi};

/// Virtual size of a freshly built base disk, bytes (2 GiB).
pub const BASE_DISK_BYTES: u64 = 2 << 30;
/// Partition start, bytes (1 MiB, sector 2048).
pub const PARTITION_OFFSET: u64 = 1 << 20;
/// Filesystem label of the root partition.
pub const ROOT_LABEL: &str = "rootfs";
/// Revision of what goes into a base image; raised when it changes (2:
/// sudo and cloud-init for the full-boot executor).
pub const RECIPE: u32 = 2;
/// Packages debootstrap installs on top of its `minbase` variant, besides
/// the distribution's kernel ([`Distro::kernel`]).
const PACKAGES: &str =
    "systemd-sysv,udev,kmod,initramfs-tools,e2fsprogs,ca-certificates,openssh-server,apt-utils";
/// Packages installed with apt afterwards: debootstrap's resolver cannot
/// satisfy cloud-init's virtual dependencies (`python3-cffi-backend-api-*`).
const APT_PACKAGES: &[&str] = &["sudo", "cloud-init"];
/// cloud-init settings of base images: only the NoCloud datasource (else
/// None, so a VM without a seed boots without probing clouds), networking
/// left to systemd-networkd, and no locale step (only C.UTF-8 exists).
const CLOUD_CFG: &str = "# slipway base image\ndatasource_list: [ NoCloud, None ]\nnetwork: {config: disabled}\nlocale: false\n";

/// The distribution an offer is built from; it says which mirror, keyring,
/// kernel package and release file a build uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distro {
    /// From the Debian mirror (`serve --debian-mirror`), checked against
    /// debootstrap's Debian keyring.
    Debian,
    /// From the Ubuntu mirror (`serve --ubuntu-mirror`), checked against
    /// the Ubuntu archive keyring given with it; not offered without one.
    Ubuntu,
}

impl Distro {
    /// The kernel package debootstrap installs.
    fn kernel(self) -> &'static str {
        match self {
            Distro::Debian => "linux-image-amd64",
            Distro::Ubuntu => "linux-image-virtual",
        }
    }

    /// The image's host name.
    fn hostname(self) -> &'static str {
        match self {
            Distro::Debian => "debian",
            Distro::Ubuntu => "ubuntu",
        }
    }
}

/// An offered base image (publisher, offer, sku), as Azure's marketplace
/// names it, and the suite that builds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// `Debian`, `Canonical`.
    pub publisher: &'static str,
    /// `debian-12`, `0001-com-ubuntu-server-jammy`.
    pub offer: &'static str,
    /// `12`, `12-gen2`, `22_04-lts`, `22_04-lts-gen2`.
    pub sku: &'static str,
    /// debootstrap suite, `bookworm`, `jammy`.
    pub suite: &'static str,
    /// Which distribution's mirror builds it.
    pub distro: Distro,
    /// How its disk boots: BIOS for Azure's generation 1 skus, UEFI for
    /// generation 2 (`-gen2`; and `ubuntu-24_04-lts:server`, whose BIOS
    /// sku is `server-gen1`).
    pub firmware: Firmware,
}

const fn offer(
    publisher: &'static str,
    offer: &'static str,
    sku: &'static str,
    suite: &'static str,
    distro: Distro,
    firmware: Firmware,
) -> Offer {
    Offer {
        publisher,
        offer,
        sku,
        suite,
        distro,
        firmware,
    }
}

/// Every base image Slipway can build, offered when the configured mirror
/// serves its suite (or an image of it is already built): the Debian
/// releases with security support and the Ubuntu LTS releases still in
/// use on Azure (18.04 for Image Builder's quickstart samples), each as
/// generation 1 (BIOS) and generation 2 (UEFI), under the names Azure's
/// marketplace gives them.
pub const OFFERS: &[Offer] = &[
    offer("Debian", "debian-11", "11", "bullseye", Debian, Bios),
    offer("Debian", "debian-11", "11-gen2", "bullseye", Debian, Uefi),
    offer("Debian", "debian-12", "12", "bookworm", Debian, Bios),
    offer("Debian", "debian-12", "12-gen2", "bookworm", Debian, Uefi),
    offer("Debian", "debian-13", "13", "trixie", Debian, Bios),
    offer("Debian", "debian-13", "13-gen2", "trixie", Debian, Uefi),
    offer(
        "Canonical",
        "UbuntuServer",
        "18.04-LTS",
        "bionic",
        Ubuntu,
        Bios,
    ),
    offer(
        "Canonical",
        "UbuntuServer",
        "18_04-lts-gen2",
        "bionic",
        Ubuntu,
        Uefi,
    ),
    offer(
        "Canonical",
        "0001-com-ubuntu-server-focal",
        "20_04-lts",
        "focal",
        Ubuntu,
        Bios,
    ),
    offer(
        "Canonical",
        "0001-com-ubuntu-server-focal",
        "20_04-lts-gen2",
        "focal",
        Ubuntu,
        Uefi,
    ),
    offer(
        "Canonical",
        "0001-com-ubuntu-server-jammy",
        "22_04-lts",
        "jammy",
        Ubuntu,
        Bios,
    ),
    offer(
        "Canonical",
        "0001-com-ubuntu-server-jammy",
        "22_04-lts-gen2",
        "jammy",
        Ubuntu,
        Uefi,
    ),
    offer(
        "Canonical",
        "ubuntu-24_04-lts",
        "server-gen1",
        "noble",
        Ubuntu,
        Bios,
    ),
    offer(
        "Canonical",
        "ubuntu-24_04-lts",
        "server",
        "noble",
        Ubuntu,
        Uefi,
    ),
];

/// The debootstrap script every Ubuntu release since 7.10 uses (Debian 12's
/// debootstrap has no `noble` link yet; the script is the same).
const UBUNTU_SCRIPT: &str = "/usr/share/debootstrap/scripts/gutsy";

/// An Ubuntu mirror and the keyring its `Release` files are checked with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UbuntuMirror {
    /// `http://archive.ubuntu.com/ubuntu`.
    pub url: String,
    /// The Ubuntu archive keyring (`ubuntu-archive-keyring.gpg`).
    pub keyring: PathBuf,
}

/// How long an answer about the mirror serving a suite is kept.
const SERVED_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// Whether the mirror serves a suite (`dists/<suite>/Release`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    /// 200.
    Yes,
    /// 404 (or 410): the mirror does not carry it.
    No,
    /// No answer (network, https, other status): debootstrap will tell.
    Unknown,
}

/// A built base image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BaseImage {
    /// `Debian`.
    pub publisher: String,
    /// `debian-12`.
    pub offer: String,
    /// `12`.
    pub sku: String,
    /// `12.15.20261121`.
    pub version: String,
    /// The raw disk.
    pub path: PathBuf,
    /// The [`RECIPE`] that built it (0 in images built before recipes).
    #[serde(default)]
    pub recipe: u32,
}

/// The catalog in a folder shared by servers on this host.
#[derive(Debug, Clone)]
pub struct BaseCatalog {
    dir: PathBuf,
    mirror: String,
    ubuntu: Option<UbuntuMirror>,
    /// Suite → (whether the mirror serves it, when that was learnt).
    served: std::sync::Arc<
        std::sync::Mutex<std::collections::HashMap<&'static str, (Served, std::time::Instant)>>,
    >,
    /// Signalled after every version this process builds.
    built: std::sync::Arc<tokio::sync::Notify>,
    /// The build step running now, and whether builds are stopped.
    steps: std::sync::Arc<std::sync::Mutex<BuildSteps>>,
}

/// What [`BaseCatalog::stop_builds`] needs: the process group of the build
/// step (debootstrap, apt-get in the chroot) running now, if any.
#[derive(Debug, Default)]
struct BuildSteps {
    stopped: bool,
    running: Option<u32>,
}

/// Removes a build's work folder — after unmounting whatever is still
/// mounted beneath it (deepest first) and detaching loop devices backed
/// there: removing a folder with `/dev` bound into it would delete the
/// host's device nodes. A folder that stays mounted is left in place.
fn remove_work_folder(path: &Path) {
    match crate::disk::release_leftovers(path) {
        Ok(_) if crate::disk::mounts_beneath(path).is_empty() => {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(_) => {
            tracing::error!(dir = %path.display(), "a base-image build folder is still mounted; left in place")
        }
        Err(e) => {
            tracing::error!(dir = %path.display(), error = %e, "releasing a base-image build folder")
        }
    }
}

fn name(o: &Offer) -> String {
    format!("{}:{}:{}", o.publisher, o.offer, o.sku)
}

impl BaseCatalog {
    /// A catalog in `dir`, built from Debian `mirror` (`http://deb.debian.org/debian`).
    pub fn new(dir: impl Into<PathBuf>, mirror: impl Into<String>) -> BaseCatalog {
        BaseCatalog {
            dir: dir.into(),
            mirror: mirror.into(),
            ubuntu: None,
            served: Default::default(),
            built: Default::default(),
            steps: Default::default(),
        }
    }

    /// This catalog offering Ubuntu too, built from `mirror`.
    ///
    /// Errors: [`BuildError::Source`] when `mirror.keyring` is not a
    /// readable file — without it debootstrap would install whatever the
    /// mirror serves, unchecked.
    pub fn with_ubuntu_mirror(mut self, mirror: UbuntuMirror) -> Result<BaseCatalog, BuildError> {
        if let Err(e) = std::fs::File::open(&mirror.keyring).and_then(|f| f.metadata()) {
            return Err(BuildError::Source(format!(
                "the Ubuntu archive keyring '{}' cannot be read ({e}): Ubuntu base images are only built from a mirror whose signatures can be checked",
                mirror.keyring.display()
            )));
        }
        self.ubuntu = Some(mirror);
        Ok(self)
    }

    /// The mirror `o` is built from; `None` for Ubuntu without an Ubuntu
    /// mirror.
    fn mirror_of(&self, o: &Offer) -> Option<&str> {
        match o.distro {
            Distro::Debian => Some(&self.mirror),
            Distro::Ubuntu => self.ubuntu.as_ref().map(|u| u.url.as_str()),
        }
    }

    /// Stops this process's base-image builds, as the server stops: the
    /// step running now is killed, with every process in its PID namespace
    /// (SIGKILL: `unshare` blocks SIGTERM, and the namespace's first
    /// process ignores it), its build fails and removes its work folder
    /// after releasing what the step left mounted, and no later build
    /// starts. A build left running would hold the stop up for minutes, or
    /// outlive the server writing into a folder the next build removes.
    pub fn stop_builds(&self) {
        let mut steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        steps.stopped = true;
        if let Some(group) = steps.running {
            tracing::warn!(pid = group, "stopping a base-image build");
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{group}")])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }

    /// Runs one long build step, `program args`, in a process group of its
    /// own that [`BaseCatalog::stop_builds`] can stop, and in a PID
    /// namespace of its own that dies with the server: `unshare` gets
    /// SIGKILL when the server dies however it dies (SIGKILL included), and
    /// takes the namespace's first process (`--kill-child`) and so every
    /// process the step started with it — a debootstrap left running would
    /// write on into a folder the next build removes. Its stdout.
    ///
    /// Call from a thread that lives until the step ends (this one waits).
    ///
    /// Errors: [`BuildError::Builder`] once builds are stopped; as
    /// [`crate::disk::run`] otherwise.
    fn run_step(&self, program: &str, args: &[&str]) -> Result<String, BuildError> {
        use std::os::unix::process::CommandExt;
        let child = {
            let mut steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
            if steps.stopped {
                return Err(BuildError::Builder(format!(
                    "{program} not started: the server is stopping"
                )));
            }
            let mut cmd = std::process::Command::new("unshare");
            slipway_runner::process::killed_with_server(&mut cmd);
            let child = cmd
                .args(["--pid", "--fork", "--kill-child", "--", program])
                .args(args)
                .process_group(0)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .map_err(|source| BuildError::ToolMissing {
                    program: "unshare".into(),
                    source,
                })?;
            steps.running = Some(child.id());
            child
        };
        let out = child.wait_with_output();
        let mut steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        steps.running = None;
        let out = out.map_err(BuildError::io(format!("waiting for {program}")))?;
        if steps.stopped {
            return Err(BuildError::Builder(format!(
                "{program} stopped: the server is stopping"
            )));
        }
        crate::disk::output_of(program, args, out)
    }

    /// Signalled (one stored permit) after this process builds a version;
    /// versions other processes sharing the folder build are only seen by
    /// listing [`BaseCatalog::versions`].
    pub fn built(&self) -> &tokio::sync::Notify {
        &self.built
    }

    /// The offers built on this host whose newest version was built more
    /// than `max_age_days` days before `today` (its version's last field,
    /// `yyyymmdd`): due for a refresh from the mirror. Blocking.
    pub fn stale(&self, max_age_days: u32, today: chrono::NaiveDate) -> Vec<&'static Offer> {
        OFFERS
            .iter()
            .filter(|o| {
                let newest = self
                    .versions(o.publisher, o.offer, o.sku)
                    .ok()
                    .and_then(|v| v.last().cloned());
                newest.is_some_and(|b| {
                    built_on(&b.version)
                        .is_none_or(|d| (today - d).num_days() > i64::from(max_age_days))
                })
            })
            .collect()
    }

    /// The catalog's offer; an unknown one is refused naming the available.
    fn offer(&self, publisher: &str, offer: &str, sku: &str) -> Result<&'static Offer, BuildError> {
        OFFERS
            .iter()
            .find(|o| {
                o.publisher.eq_ignore_ascii_case(publisher)
                    && o.offer.eq_ignore_ascii_case(offer)
                    && o.sku.eq_ignore_ascii_case(sku)
            })
            .ok_or_else(|| {
                self.not_available(format!("'{publisher}:{offer}:{sku}' is not in the catalog"))
            })
    }

    /// Whether the mirror serves `o`'s suite, asked at most every
    /// [`SERVED_TTL`]. Blocking.
    fn served(&self, o: &'static Offer) -> Served {
        if let Ok(cache) = self.served.lock() {
            if let Some((s, at)) = cache.get(o.suite) {
                if at.elapsed() < SERVED_TTL {
                    return *s;
                }
            }
        }
        let Some(mirror) = self.mirror_of(o) else {
            return Served::No;
        };
        let url = format!("{}/dists/{}/Release", mirror.trim_end_matches('/'), o.suite);
        let s = if !url.starts_with("http://") {
            Served::Unknown
        } else {
            match ureq::head(&url)
                .timeout(std::time::Duration::from_secs(10))
                .call()
            {
                Ok(_) => Served::Yes,
                Err(ureq::Error::Status(404 | 410, _)) => Served::No,
                Err(_) => Served::Unknown,
            }
        };
        if let Ok(mut cache) = self.served.lock() {
            cache.insert(o.suite, (s, std::time::Instant::now()));
        }
        s
    }

    /// The offers a template can use now: built on this host, or served by
    /// the mirror (or the mirror could not be asked). Blocking.
    pub fn available(&self) -> Vec<&'static Offer> {
        OFFERS
            .iter()
            .filter(|o| {
                self.versions(o.publisher, o.offer, o.sku)
                    .is_ok_and(|v| !v.is_empty())
                    || self.served(o) != Served::No
            })
            .collect()
    }

    fn not_available(&self, what: String) -> BuildError {
        let list: Vec<String> = self.available().into_iter().map(name).collect();
        BuildError::Source(format!(
            "platform image {what}: available are {} (publisher:offer:sku)",
            if list.is_empty() {
                "none".to_string()
            } else {
                list.join(", ")
            }
        ))
    }

    fn offer_dir(&self, o: &Offer) -> PathBuf {
        self.dir.join(o.publisher).join(o.offer).join(o.sku)
    }

    /// Built versions of an offer, lowest first.
    pub fn versions(
        &self,
        publisher: &str,
        offer: &str,
        sku: &str,
    ) -> Result<Vec<BaseImage>, BuildError> {
        let o = self.offer(publisher, offer, sku)?;
        let dir = self.offer_dir(o);
        let mut found = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let v = e.file_name().to_string_lossy().into_owned();
                let path = e.path().join("disk.raw");
                let recipe = std::fs::read(e.path().join("image.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<BaseImage>(&b).ok())
                    .map_or(0, |b| b.recipe);
                if parse_version(&v).is_some() && path.is_file() && recipe >= RECIPE {
                    found.push(BaseImage {
                        publisher: o.publisher.into(),
                        offer: o.offer.into(),
                        sku: o.sku.into(),
                        version: v,
                        path,
                        recipe,
                    });
                }
            }
        }
        found.sort_by_key(|b| parse_version(&b.version));
        Ok(found)
    }

    /// Resolves a `PlatformImage` source: `latest` is the highest built
    /// version, building one first when there is none (minutes: debootstrap
    /// from the mirror). Blocking; call from `spawn_blocking`.
    ///
    /// Errors: an unknown publisher/offer/sku or one whose suite the mirror
    /// does not serve (both name the available ones), an exact version that
    /// is not built (names the built ones), build failures.
    pub fn resolve(
        &self,
        publisher: &str,
        offer: &str,
        sku: &str,
        version: &str,
    ) -> Result<BaseImage, BuildError> {
        let have = self.versions(publisher, offer, sku)?;
        if version.eq_ignore_ascii_case("latest") {
            if let Some(b) = have.last() {
                return Ok(b.clone());
            }
            let o = self.offer(publisher, offer, sku)?;
            let Some(mirror) = self.mirror_of(o) else {
                return Err(self.not_available(format!(
                    "'{}' is built from an Ubuntu mirror, and none is configured (serve --ubuntu-mirror)",
                    name(o)
                )));
            };
            if self.served(o) == Served::No {
                return Err(self.not_available(format!(
                    "'{}' needs suite '{}', which the mirror {mirror} does not serve",
                    name(o),
                    o.suite,
                )));
            }
            return self.build(o);
        }
        have.iter()
            .find(|b| b.version == version)
            .cloned()
            .ok_or_else(|| {
                let list: Vec<&str> = have.iter().map(|b| b.version.as_str()).collect();
                BuildError::Source(format!(
                    "platform image '{publisher}:{offer}:{sku}' has no version '{version}': built versions are [{}] (or use 'latest')",
                    list.join(", ")
                ))
            })
    }

    /// Builds today's version of `o` unless it exists. Blocking.
    pub fn build(&self, o: &Offer) -> Result<BaseImage, BuildError> {
        let _lock = self.lock()?;
        self.remove_abandoned_builds();
        let work = self
            .dir
            .join(format!(".work-{}", uuid::Uuid::new_v4().simple()));
        let r = self.build_locked(o, &work);
        remove_work_folder(&work);
        r
    }

    /// Holds the catalog folder's build lock (shared by every process on
    /// the host) until the file is dropped. Blocking.
    fn lock(&self) -> Result<std::fs::File, BuildError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(BuildError::io(format!("creating {}", self.dir.display())))?;
        let lock = std::fs::File::create(self.dir.join(".build.lock"))
            .map_err(BuildError::io("base-image lock"))?;
        lock.lock().map_err(BuildError::io("base-image lock"))?;
        Ok(lock)
    }

    /// Removes the built versions of `o` older than its newest `keep` (at
    /// least one is always kept), under the build lock; the removed
    /// versions, oldest first. A template pinned to a removed version is
    /// refused naming the versions that are left, as AIB refuses a
    /// platform image version its publisher withdrew. Blocking.
    ///
    /// Errors: the lock; a version folder that cannot be removed.
    pub fn prune(&self, o: &Offer, keep: usize) -> Result<Vec<String>, BuildError> {
        let _lock = self.lock()?;
        let have = self.versions(o.publisher, o.offer, o.sku)?;
        let surplus = have.len().saturating_sub(keep.max(1));
        let mut removed = Vec::new();
        for b in &have[..surplus] {
            let dir = self.offer_dir(o).join(&b.version);
            // Out of the catalog at once, then deleted (a run that already
            // resolved it may still be copying the open disk).
            let stale = self
                .dir
                .join(format!(".stale-{}", uuid::Uuid::new_v4().simple()));
            std::fs::rename(&dir, &stale).map_err(BuildError::io(dir.display().to_string()))?;
            let _ = std::fs::remove_dir_all(&stale);
            tracing::info!(version = %b.version, offer = o.offer, "removed an old base image version");
            removed.push(b.version.clone());
        }
        Ok(removed)
    }

    /// Removes the work folders of builds whose process was killed (the
    /// build lock is held, so no other build is running): their chroot
    /// mounts first — removing a folder with `/dev` bound into it would
    /// delete the host's device nodes.
    fn remove_abandoned_builds(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !(name.starts_with(".work-") || name.starts_with(".stale-")) {
                continue;
            }
            tracing::warn!(dir = %e.path().display(), "removing an abandoned base-image build");
            remove_work_folder(&e.path());
        }
    }

    fn build_locked(&self, o: &Offer, work: &Path) -> Result<BaseImage, BuildError> {
        let today = chrono::Utc::now().format("%Y%m%d").to_string();
        // Another process may have built today's image while we waited.
        if let Some(b) = self
            .versions(o.publisher, o.offer, o.sku)?
            .into_iter()
            .rev()
            .find(|b| b.version.ends_with(&today))
        {
            return Ok(b);
        }
        let rootfs = work.join("rootfs");
        let mirror = self
            .mirror_of(o)
            .ok_or_else(|| BuildError::Source(format!("'{}' needs an Ubuntu mirror", name(o))))?;
        std::fs::create_dir_all(work).map_err(BuildError::io(work.display().to_string()))?;
        tracing::info!(suite = o.suite, mirror = %mirror, "building base image with debootstrap");
        let root = rootfs.to_string_lossy().into_owned();
        let include = format!("--include={PACKAGES},{}", o.distro.kernel());
        let mut args = vec!["--variant=minbase", include.as_str()];
        let keyring;
        if let (Distro::Ubuntu, Some(u)) = (o.distro, &self.ubuntu) {
            keyring = format!("--keyring={}", u.keyring.display());
            args.push(&keyring);
        }
        // debootstrap takes no `--`; the suite is one of OFFERS, the target
        // Slipway's own and the mirror the operator's.
        args.extend([o.suite, &root, mirror]);
        if o.distro == Distro::Ubuntu {
            args.push(UBUNTU_SCRIPT);
        }
        self.run_step("debootstrap", &args).map_err(|e| {
            let details = std::fs::read_to_string(rootfs.join("debootstrap/debootstrap.log"))
                .unwrap_or_default();
            BuildError::Builder(format!(
                "debootstrap {} from {mirror}: {}\n{}",
                o.suite,
                tail(&e.to_string(), 1000),
                tail(&details, 2000)
            ))
        })?;
        let system = crate::disk::SystemMounts::mount(&rootfs)?;
        let mut apt = vec![
            root.as_str(),
            "/usr/bin/env",
            "DEBIAN_FRONTEND=noninteractive",
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
        ];
        apt.extend(APT_PACKAGES);
        let installed = self.run_step("chroot", &apt);
        drop(system);
        installed.map_err(|e| {
            BuildError::Builder(format!(
                "installing {} in the base image: {}",
                APT_PACKAGES.join(", "),
                tail(&e.to_string(), 2000)
            ))
        })?;
        configure_tree(&rootfs, o.distro)?;
        let release = release_of(&rootfs, o.distro)?;
        let version = format!("{release}.{today}");
        if parse_version(&version).is_none() {
            return Err(BuildError::Builder(format!(
                "release '{release}' does not make an x.y.z version"
            )));
        }
        let built = self.place_disk(o, &rootfs, work, &version)?;
        // Azure publishes a release's generation 1 and 2 skus under one
        // version: the other generation comes from the same tree, with no
        // second debootstrap.
        for twin in twins(o) {
            let have = self
                .versions(twin.publisher, twin.offer, twin.sku)?
                .iter()
                .any(|b| b.version == version);
            if !have {
                if let Err(e) = self.place_disk(twin, &rootfs, work, &version) {
                    tracing::warn!(sku = twin.sku, error = %e, "building the other generation of a base image");
                }
            }
        }
        Ok(built)
    }

    /// Makes `o`'s disk of `version` from the built tree `rootfs` (in a
    /// folder of `work`) and moves it into the catalog, replacing a disk of
    /// the same version from an older recipe. Blocking; the build lock is
    /// held.
    fn place_disk(
        &self,
        o: &Offer,
        rootfs: &Path,
        work: &Path,
        version: &str,
    ) -> Result<BaseImage, BuildError> {
        let vdir = work.join(o.sku).join(version);
        std::fs::create_dir_all(&vdir).map_err(BuildError::io(vdir.display().to_string()))?;
        let disk = vdir.join("disk.raw");
        match o.firmware {
            Firmware::Bios => make_bios_disk(rootfs, &disk)?,
            Firmware::Uefi => make_uefi_disk(rootfs, &disk)?,
        }
        let image = BaseImage {
            publisher: o.publisher.into(),
            offer: o.offer.into(),
            sku: o.sku.into(),
            version: version.to_string(),
            path: PathBuf::new(),
            recipe: RECIPE,
        };
        let meta = serde_json::to_vec_pretty(&image)
            .map_err(|e| BuildError::Builder(format!("image.json: {e}")))?;
        std::fs::write(vdir.join("image.json"), meta).map_err(BuildError::io(format!(
            "writing {}/image.json",
            vdir.display()
        )))?;
        let dest_parent = self.offer_dir(o);
        std::fs::create_dir_all(&dest_parent)
            .map_err(BuildError::io(dest_parent.display().to_string()))?;
        let dest = dest_parent.join(version);
        if dest.exists() {
            // Today's disk of an older recipe: nothing else uses it while
            // the build lock is held, except copies already made.
            let stale = self
                .dir
                .join(format!(".stale-{}", uuid::Uuid::new_v4().simple()));
            std::fs::rename(&dest, &stale).map_err(BuildError::io(dest.display().to_string()))?;
            let _ = std::fs::remove_dir_all(&stale);
        }
        std::fs::rename(&vdir, &dest).map_err(BuildError::io(dest.display().to_string()))?;
        tracing::info!(version = %version, sku = o.sku, "base image built");
        self.built.notify_one();
        Ok(BaseImage {
            path: dest.join("disk.raw"),
            ..image
        })
    }
}

/// The offer's other generations: the skus of the same release (offer and
/// suite) that boot with other firmware.
fn twins(o: &Offer) -> impl Iterator<Item = &'static Offer> + '_ {
    OFFERS.iter().filter(move |t| {
        t.publisher == o.publisher && t.offer == o.offer && t.suite == o.suite && t.sku != o.sku
    })
}

/// The day a base image version was built: its last field, `yyyymmdd`
/// (`12.15.20261121` → 2026-11-21); `None` for other versions.
pub fn built_on(version: &str) -> Option<chrono::NaiveDate> {
    let day = version.rsplit('.').next()?;
    chrono::NaiveDate::parse_from_str(day, "%Y%m%d").ok()
}

fn write(path: &Path, text: &str) -> Result<(), BuildError> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(BuildError::io(d.display().to_string()))?;
    }
    std::fs::write(path, text).map_err(BuildError::io(path.display().to_string()))
}

/// The release a built tree holds, as the first two fields of its version:
/// Debian's `etc/debian_version` (`12.15`; `13` → `13.0`), Ubuntu's
/// `VERSION_ID` in `etc/os-release` (`22.04`).
fn release_of(rootfs: &Path, distro: Distro) -> Result<String, BuildError> {
    let mut release = match distro {
        Distro::Debian => std::fs::read_to_string(rootfs.join("etc/debian_version"))
            .map_err(BuildError::io("reading etc/debian_version"))?
            .trim()
            .to_string(),
        Distro::Ubuntu => {
            // os-release is a link into usr/lib; read it beneath the root.
            let text =
                crate::exec::image_tree(rootfs)?.read_to_string("etc/os-release", 64 << 10)?;
            os_release_field(&text, "VERSION_ID").ok_or_else(|| {
                BuildError::Builder("etc/os-release has no VERSION_ID".to_string())
            })?
        }
    };
    if release.split('.').count() == 1 {
        release.push_str(".0");
    }
    Ok(release)
}

/// A field of an os-release file (`KEY=value` or `KEY="value"`).
fn os_release_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix('=')?;
        Some(v.trim().trim_matches('"').to_string())
    })
}

/// Image-wide settings for a bootable, cloud-like Debian or Ubuntu.
fn configure_tree(root: &Path, distro: Distro) -> Result<(), BuildError> {
    write(
        &root.join("etc/fstab"),
        &format!("LABEL={ROOT_LABEL} / ext4 errors=remount-ro 0 1\n"),
    )?;
    write(
        &root.join("etc/hostname"),
        &format!("{}\n", distro.hostname()),
    )?;
    write(
        &root.join("etc/cloud/cloud.cfg.d/90-slipway.cfg"),
        CLOUD_CFG,
    )?;
    write(
        &root.join("etc/systemd/network/80-dhcp.network"),
        "[Match]\nName=e*\n\n[Network]\nDHCP=yes\n",
    )?;
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    std::fs::create_dir_all(&wants).map_err(BuildError::io(wants.display().to_string()))?;
    let link = wants.join("systemd-networkd.service");
    if !link.exists() {
        std::os::unix::fs::symlink("/lib/systemd/system/systemd-networkd.service", &link)
            .map_err(BuildError::io(link.display().to_string()))?;
    }
    // A machine id is made at first boot; SSH host keys are regenerated by
    // the deprovision step of each build.
    write(&root.join("etc/machine-id"), "")?;
    if let Ok(entries) = std::fs::read_dir(root.join("var/cache/apt/archives")) {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "deb") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

/// Writes `/boot/extlinux/extlinux.conf` for the kernel `/vmlinuz` points
/// at — or `/boot/vmlinuz`, where Ubuntu keeps the link (called again after
/// customizing, in case a customizer changed the kernel). No-op when the
/// image has no extlinux.
pub fn write_boot_config(root: &Path) -> Result<(), BuildError> {
    // Also runs on customized images: every path resolves beneath the root.
    let tree = crate::exec::image_tree(root)?;
    if !tree.is_dir("boot/extlinux") {
        return Ok(());
    }
    let conf = format!(
        "DEFAULT linux\nTIMEOUT 1\nPROMPT 0\nLABEL linux\n  LINUX {}\n  INITRD {}\n  APPEND {}\n",
        kernel_link(root, "vmlinuz")?,
        kernel_link(root, "initrd.img")?,
        kernel_args()
    );
    Ok(tree.write("boot/extlinux/extlinux.conf", conf.as_bytes(), 0o644)?)
}

/// The kernel command line of base images: the root by label, the serial
/// console on `ttyS0`, `eth0`-style interface names.
fn kernel_args() -> String {
    format!("root=LABEL={ROOT_LABEL} ro console=tty0 console=ttyS0,115200 earlyprintk=ttyS0 net.ifnames=0")
}

/// Where the kernel link `name` (`vmlinuz`, `initrd.img`) points, as a path
/// from the image's root: the link at `/<name>` (Debian) or else at
/// `/boot/<name>` (Ubuntu), its target read, never followed, and a
/// relative target taken from the link's folder.
///
/// Errors: neither link exists.
fn kernel_link(root: &Path, name: &str) -> Result<String, BuildError> {
    let mut last = None;
    for dir in ["", "boot/"] {
        match std::fs::read_link(root.join(format!("{dir}{name}"))) {
            Ok(t) => {
                let t = t.to_string_lossy();
                return Ok(match t.strip_prefix('/') {
                    Some(absolute) => format!("/{absolute}"),
                    None => format!("/{dir}{t}"),
                });
            }
            Err(e) => last = Some(e),
        }
    }
    Err(BuildError::io(format!(
        "/{name} or /boot/{name} in the image"
    ))(
        last.unwrap_or_else(|| std::io::ErrorKind::NotFound.into()),
    ))
}

/// Size of the EFI System Partition of generation 2 base images, bytes
/// (64 MiB at 1 MiB; the root partition follows it).
const ESP_BYTES: u64 = 64 << 20;

/// GRUB's configuration in a generation 2 image's boot loader: the root
/// partition found by label, the kernel and initrd read through the image's
/// own links at every boot — Debian's `/vmlinuz`, else Ubuntu's
/// `/boot/vmlinuz` — so a customizer that installs another kernel needs no
/// boot loader change.
fn grub_config() -> String {
    let args = kernel_args();
    format!(
        "insmod part_gpt\ninsmod ext2\nset timeout=0\nsearch --no-floppy --label --set=root {ROOT_LABEL}\n\
         if [ -e /vmlinuz ]; then\n  linux /vmlinuz {args}\n  initrd /initrd.img\n\
         else\n  linux /boot/vmlinuz {args}\n  initrd /boot/initrd.img\nfi\nboot\n"
    )
}

/// Makes the generation 2 (UEFI) raw disk from a root tree, with no mount
/// and no loop device: a GPT with an EFI System Partition at 1 MiB (FAT32,
/// `mkfs.fat --offset`) holding a standalone GRUB at the removable-media
/// path `EFI/BOOT/BOOTX64.EFI` (`grub-mkstandalone`, copied in with
/// mtools), and the ext4 root partition after it (`mke2fs -d`).
fn make_uefi_disk(rootfs: &Path, disk: &Path) -> Result<(), BuildError> {
    let d = disk.to_string_lossy().into_owned();
    let f = std::fs::File::create(disk).map_err(BuildError::io(d.clone()))?;
    f.set_len(BASE_DISK_BYTES)
        .map_err(BuildError::io(d.clone()))?;
    drop(f);
    let sector = 512;
    let esp_start = PARTITION_OFFSET / sector;
    let root_start = (PARTITION_OFFSET + ESP_BYTES) / sector;
    crate::disk::sfdisk(
        &["-q", &d],
        &format!(
            "label: gpt\nstart={esp_start}, size={}, type={}, name=\"esp\"\nstart={root_start}, type={}, name=\"root\"\n",
            ESP_BYTES / sector,
            crate::disk::ESP_TYPE,
            crate::disk::LINUX_TYPE
        ),
    )?;
    let root = crate::disk::root_partition(disk)?;
    let root_kib = root.size.unwrap_or(0) / 1024;
    run(
        "mkfs.fat",
        &[
            "-F",
            "32",
            "-s",
            "1",
            "-n",
            "ESP",
            "--offset",
            &esp_start.to_string(),
            &d,
            &(ESP_BYTES / 1024).to_string(),
        ],
    )?;
    let cfg = disk.with_extension("grub.cfg");
    let efi = disk.with_extension("efi");
    write(&cfg, &grub_config())?;
    let built = run(
        "grub-mkstandalone",
        &[
            "-O",
            "x86_64-efi",
            "-o",
            &efi.to_string_lossy(),
            "--locales=",
            "--fonts=",
            "--themes=",
            &format!("boot/grub/grub.cfg={}", cfg.display()),
        ],
    )
    .and_then(|_| {
        let esp = format!("{d}@@{PARTITION_OFFSET}");
        run("mmd", &["-i", &esp, "::/EFI", "::/EFI/BOOT"])?;
        run(
            "mcopy",
            &[
                "-i",
                &esp,
                &efi.to_string_lossy(),
                "::/EFI/BOOT/BOOTX64.EFI",
            ],
        )
    });
    let _ = std::fs::remove_file(&cfg);
    let _ = std::fs::remove_file(&efi);
    built?;
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-L",
            ROOT_LABEL,
            "-E",
            &format!("offset={}", root.offset),
            "-d",
            &rootfs.to_string_lossy(),
            &d,
            &format!("{root_kib}k"),
        ],
    )?;
    Ok(())
}

/// Makes the generation 1 (BIOS) raw disk from a root tree: MBR with one
/// bootable Linux partition at 1 MiB, ext4 from the tree (`mke2fs -d`, no
/// mount), syslinux's MBR code and extlinux (needs a loop mount).
fn make_bios_disk(rootfs: &Path, disk: &Path) -> Result<(), BuildError> {
    let d = disk.to_string_lossy().into_owned();
    let f = std::fs::File::create(disk).map_err(BuildError::io(d.clone()))?;
    f.set_len(BASE_DISK_BYTES)
        .map_err(BuildError::io(d.clone()))?;
    drop(f);
    crate::disk::sfdisk(&["-q", &d], "label: dos\nstart=2048, type=83, bootable\n")?;
    let fs_kib = (BASE_DISK_BYTES - PARTITION_OFFSET) / 1024;
    // syslinux 6 cannot boot from ext4 with the 64bit feature.
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-O",
            "^64bit",
            "-L",
            ROOT_LABEL,
            "-E",
            &format!("offset={PARTITION_OFFSET}"),
            "-d",
            &rootfs.to_string_lossy(),
            &d,
            &format!("{fs_kib}k"),
        ],
    )?;
    run(
        "dd",
        &[
            "if=/usr/lib/syslinux/mbr/mbr.bin",
            &format!("of={d}"),
            "bs=440",
            "count=1",
            "conv=notrunc",
            "status=none",
        ],
    )?;
    let mnt = disk.with_extension("mnt");
    std::fs::create_dir_all(&mnt).map_err(BuildError::io(mnt.display().to_string()))?;
    let part = crate::disk::RootPartition {
        offset: PARTITION_OFFSET,
        size: None,
        number: Some(1),
    };
    let dev = crate::disk::LoopDevice::attach(disk, &part)?;
    let m = mnt.to_string_lossy().into_owned();
    let r = run("mount", &[dev.path(), &m]).and_then(|_| {
        let r = std::fs::create_dir_all(mnt.join("boot/extlinux"))
            .map_err(BuildError::io(format!("{m}/boot/extlinux")))
            .and_then(|_| run("extlinux", &["--install", &format!("{m}/boot/extlinux")]))
            .and_then(|_| write_boot_config(&mnt));
        let u = run("umount", &[&m]);
        r.and(u.map(|_| ()))
    });
    drop(dev);
    let _ = std::fs::remove_dir(&mnt);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_is_found_where_debian_and_ubuntu_link_it() {
        let debian = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("boot/vmlinuz-6.1.0-28-amd64", debian.path().join("vmlinuz"))
            .unwrap();
        assert_eq!(
            kernel_link(debian.path(), "vmlinuz").unwrap(),
            "/boot/vmlinuz-6.1.0-28-amd64"
        );
        let ubuntu = tempfile::tempdir().unwrap();
        std::fs::create_dir(ubuntu.path().join("boot")).unwrap();
        std::os::unix::fs::symlink(
            "initrd.img-5.15.0-91-generic",
            ubuntu.path().join("boot/initrd.img"),
        )
        .unwrap();
        assert_eq!(
            kernel_link(ubuntu.path(), "initrd.img").unwrap(),
            "/boot/initrd.img-5.15.0-91-generic"
        );
        let e = kernel_link(ubuntu.path(), "vmlinuz")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/vmlinuz or /boot/vmlinuz in the image"), "{e}");
    }

    #[test]
    fn a_generation_2_disk_boots_grub_from_its_efi_system_partition_and_grows() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("boot")).unwrap();
        std::fs::write(root.join("boot/vmlinuz-6.1.0-9-amd64"), b"kernel").unwrap();
        std::os::unix::fs::symlink("boot/vmlinuz-6.1.0-9-amd64", root.join("vmlinuz")).unwrap();
        let disk = dir.path().join("disk.raw");
        make_uefi_disk(&root, &disk).unwrap();
        assert_eq!(crate::disk::firmware(&disk).unwrap(), Firmware::Uefi);

        // The firmware's removable-media path holds GRUB, which reads its
        // configuration from its own memdisk.
        let esp = format!("{}@@{PARTITION_OFFSET}", disk.display());
        let listing = run("mdir", &["-i", &esp, "-b", "::/EFI/BOOT"]).unwrap();
        assert!(listing.contains("BOOTX64.EFI"), "{listing}");
        let boot = dir.path().join("BOOTX64.EFI");
        run(
            "mcopy",
            &[
                "-i",
                &esp,
                "::/EFI/BOOT/BOOTX64.EFI",
                &boot.to_string_lossy(),
            ],
        )
        .unwrap();
        assert_eq!(&std::fs::read(&boot).unwrap()[..2], b"MZ", "a PE image");
        let cfg = grub_config();
        assert!(
            cfg.contains("search --no-floppy --label --set=root rootfs"),
            "{cfg}"
        );
        assert!(
            cfg.contains("linux /vmlinuz root=LABEL=rootfs ro console=tty0 console=ttyS0,115200"),
            "{cfg}"
        );

        // The root is the ext4 partition after the ESP, with the tree in it.
        let part = crate::disk::root_partition(&disk).unwrap();
        assert_eq!(part.number, Some(2));
        assert_eq!(part.offset, PARTITION_OFFSET + ESP_BYTES);
        // e2fsprogs open a filesystem inside a file as `FILE?offset=N`.
        let sb = run(
            "e2label",
            &[&format!("{}?offset={}", disk.display(), part.offset)],
        )
        .unwrap();
        assert_eq!(sb.trim(), ROOT_LABEL);

        // Growing keeps the ESP and moves GPT's backup header to the new end.
        crate::disk::grow(&disk, BASE_DISK_BYTES + (256 << 20)).unwrap();
        let grown = crate::disk::root_partition(&disk).unwrap();
        assert_eq!(grown.offset, part.offset);
        assert!(
            grown.size.unwrap() >= part.size.unwrap() + (255 << 20),
            "{grown:?}"
        );
        let verify = run("sfdisk", &["--verify", &disk.to_string_lossy()]).unwrap();
        assert!(verify.contains("No errors detected"), "{verify}");
        assert_eq!(crate::disk::firmware(&disk).unwrap(), Firmware::Uefi);
    }

    #[test]
    fn a_release_is_built_as_both_generations() {
        let sku = |publisher: &str, offer: &str, sku: &str| {
            OFFERS
                .iter()
                .find(|o| o.publisher == publisher && o.offer == offer && o.sku == sku)
                .unwrap()
        };
        let skus = |o: &Offer| twins(o).map(|t| (t.sku, t.firmware)).collect::<Vec<_>>();
        assert_eq!(skus(sku("Debian", "debian-12", "12")), [("12-gen2", Uefi)]);
        assert_eq!(skus(sku("Debian", "debian-12", "12-gen2")), [("12", Bios)]);
        assert_eq!(
            skus(sku("Canonical", "ubuntu-24_04-lts", "server")),
            [("server-gen1", Bios)]
        );
        // Every release has exactly one sku of each generation.
        for o in OFFERS {
            let twins: Vec<_> = twins(o).collect();
            assert_eq!(twins.len(), 1, "{o:?}");
            assert_ne!(twins[0].firmware, o.firmware, "{o:?}");
        }
    }

    #[test]
    fn ubuntu_releases_are_read_from_os_release() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("usr/lib")).unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::write(
            root.path().join("usr/lib/os-release"),
            "PRETTY_NAME=\"Ubuntu 22.04.5 LTS\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nID=ubuntu\n",
        )
        .unwrap();
        // As Ubuntu ships it: a relative link into usr/lib.
        std::os::unix::fs::symlink("../usr/lib/os-release", root.path().join("etc/os-release"))
            .unwrap();
        assert_eq!(release_of(root.path(), Distro::Ubuntu).unwrap(), "22.04");
        std::fs::write(root.path().join("etc/debian_version"), "13\n").unwrap();
        assert_eq!(release_of(root.path(), Distro::Debian).unwrap(), "13.0");
    }
}
