//! VM image templates end to end: real `slipway serve`, a Debian 12 base
//! image built with debootstrap from the Debian mirror (cached in
//! `/var/cache/slipway/base-images`, shared by the tests), loop mounts and
//! chroot, qemu-img, and the built image booted under qemu (TCG).

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::vm_images::{debian, put_template, put_trigger, run_log, run_to_end, BUILD_TIMEOUT};
use common::{poll, Server};
use serde_json::{json, Value};

const MIB: u64 = 1 << 20;

/// PUTs template `name` as an ARM resource file written for AIB API
/// `api_version` (what `az resource create --is-full-object` submits).
fn put_arm_resource(s: &Server, name: &str, api_version: &str, properties: Value) {
    let (st, v, _) = s.call(
        "PUT",
        &format!("/imageTemplates/{name}"),
        Some(json!({
            "type": "Microsoft.VirtualMachineImages/imageTemplates",
            "apiVersion": api_version,
            "name": name,
            "location": "westus2",
            "dependsOn": [],
            "tags": {"imagebuilderTemplate": "debian12", "userIdentity": "enabled"},
            "identity": {"type": "UserAssigned", "userAssignedIdentities": {"/subscriptions/s/resourcegroups/r/providers/Microsoft.ManagedIdentity/userAssignedIdentities/aibIdentity": {}}},
            "properties": properties
        })),
    );
    assert_eq!(st, 201, "{v}");
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let m = std::fs::read_to_string("/proc/mounts").unwrap();
    let d = dir.to_string_lossy().into_owned();
    m.lines()
        .filter(|l| l.contains(&d))
        .map(str::to_string)
        .collect()
}

/// Boots `disk` (a qcow2, changes thrown away) under TCG with one vCPU of
/// the model build VMs use, until its serial console (written to `serial`)
/// shows `marker`.
///
/// qemu 7.2's TCG has been seen here to crash (SIGSEGV in a vCPU thread) or
/// to stop for good early in a guest's boot; like a build VM, a boot whose
/// qemu ends, whose kernel reports a stall or whose console stays silent
/// for [`BOOT_SILENCE`] is booted once more. Panics, with the console's
/// tail, when no boot shows `marker` within [`BOOT_WAIT`].
fn boot_and_wait_for(disk: &Path, marker: &str, serial: &Path) {
    let mut failures = Vec::new();
    for _ in 0..2 {
        match boot_once(disk, marker, serial) {
            Ok(()) => return,
            Err(why) => failures.push(why),
        }
    }
    panic!(
        "no boot showed '{marker}':\n{}",
        failures.join("\n---- next boot ----\n")
    );
}

/// How long one test boot may take to show its marker (60–180 s here,
/// contended).
const BOOT_WAIT: Duration = Duration::from_secs(360);
/// How long the console of a test boot may stay silent before the boot
/// counts as hung (a Debian boot writes every few seconds).
const BOOT_SILENCE: Duration = Duration::from_secs(180);

/// One boot of [`boot_and_wait_for`]; `Err` says why it did not show
/// `marker`, with the console's last 3,000 characters.
fn boot_once(disk: &Path, marker: &str, serial: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(serial);
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-cpu", slipway_vm_images::vm::TCG_CPU])
        .args(["-m", "1024", "-smp", "1", "-display", "none"])
        .args(["-no-reboot", "-snapshot", "-monitor", "none"])
        .arg("-drive")
        .arg(format!("file={},format=qcow2,if=virtio", disk.display()))
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 (scripts/setup-host installs it)");
    let started = Instant::now();
    let mut watch = slipway_vm_images::vm::ConsoleWatch::new(started, BOOT_SILENCE);
    let outcome = loop {
        let console =
            String::from_utf8_lossy(&std::fs::read(serial).unwrap_or_default()).into_owned();
        if console.contains(marker) {
            break Ok(());
        }
        let tail = || {
            let chars: Vec<char> = console.chars().collect();
            chars[chars.len().saturating_sub(3000)..]
                .iter()
                .collect::<String>()
        };
        if let Ok(Some(status)) = qemu.try_wait() {
            let mut err = String::new();
            let _ = qemu.stderr.take().map(|mut e| e.read_to_string(&mut err));
            break Err(format!(
                "qemu ended ({status}): {err}\nconsole:\n{}",
                tail()
            ));
        }
        if let Some(report) = slipway_vm_images::vm::kernel_stall(&console) {
            break Err(format!(
                "the guest kernel reported '{report}'; console:\n{}",
                tail()
            ));
        }
        let now = Instant::now();
        if watch.silent(console.len() as u64, now) {
            break Err(format!(
                "the console was silent for {} s; console:\n{}",
                BOOT_SILENCE.as_secs(),
                tail()
            ));
        }
        if now - started > BOOT_WAIT {
            break Err(format!(
                "not within {} s; console:\n{}",
                BOOT_WAIT.as_secs(),
                tail()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let _ = qemu.kill();
    let _ = qemu.wait();
    outcome
}

#[test]
fn debian_image_is_customized_distributed_and_boots() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let greeting = tmp.path().join("greeting.txt");
    std::fs::write(&greeting, "greetings-from-the-file-customizer\n").unwrap();
    let vhd = tmp.path().join("out/web.vhd");
    put_template(
        &s,
        "web-image",
        json!({
            "source": debian(),
            "customize": [
                {"type": "Shell", "name": "install-hello", "inline": [
                    "apt-get install -y -q hello",
                    "install -d -o 1000 -g 1000 /srv/owned-by-1000",
                    "printf '#!/bin/sh\\necho \"SLIPWAY-MARKER $(hello) $(cat /etc/slipway/greeting.txt)\" > /dev/ttyS0\\n' > /etc/rc.local",
                    "chmod +x /etc/rc.local"
                ]},
                {"type": "File", "name": "greeting", "sourceUri": greeting.to_string_lossy(),
                 "destination": "/etc/slipway/greeting.txt", "sha256Checksum": sha256_of(&greeting)}
            ],
            "validate": {"inVMValidations": [
                {"type": "Shell", "name": "hello-works", "inline": ["hello | grep -q 'Hello, world'"]}
            ]},
            "distribute": [
                {"type": "VHD", "runOutputName": "web-vhd", "uri": vhd.to_string_lossy()},
                {"type": "Qcow2", "runOutputName": "web-qcow2"},
                {"type": "ManagedImage", "runOutputName": "web-managed", "location": "local",
                 "imageId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/web"},
                {"type": "SharedImage", "runOutputName": "web-gallery",
                 "galleryImageId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g1/images/web",
                 "versioning": {"scheme": "Source"}}
            ]
        }),
    );
    let run = run_to_end(&s, "web-image");
    let log = run_log(&s, "web-image", &run);
    assert_eq!(run["runState"], "Succeeded", "{run}\n{log}\n{}", s.log());
    assert_eq!(run["source"]["publisher"], "Debian", "{run}");
    let version = run["source"]["version"].as_str().unwrap().to_string();
    assert!(
        version.starts_with("12."),
        "latest resolves to a concrete version: {version}"
    );
    for line in [
        "(telemetry) Starting provisioner install-hello",
        "(telemetry) ending install-hello",
        "(telemetry) Starting provisioner greeting",
        "(telemetry) ending greeting",
        "(telemetry) Finalizing.",
        "(telemetry) Starting provisioner hello-works",
        "Setting up hello",
    ] {
        assert!(
            log.contains(line),
            "customization.log lacks '{line}':\n{log}"
        );
    }
    assert!(
        run["staging"].is_null(),
        "staging is deleted on success: {run}"
    );
    let staging = s
        .data
        .join("vm-images/staging")
        .join(run["runId"].as_str().unwrap());
    assert!(!staging.exists());

    // Run outputs: the VHD where asked, the qcow2 in the server's outputs,
    // the managed image and the gallery version in the image store.
    let outs = s.get("/imageTemplates/web-image/runOutputs")["value"].clone();
    let by = |n: &str| {
        outs.as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == n)
            .unwrap()["properties"]
            .clone()
    };
    let v = by("web-vhd");
    assert_eq!(v["artifactUri"], vhd.to_string_lossy().as_ref(), "{outs}");
    assert_eq!(v["sha256"], sha256_of(&vhd), "{outs}");
    let q = by("web-qcow2");
    let qcow = std::path::PathBuf::from(q["artifactUri"].as_str().unwrap());
    assert_eq!(q["sha256"], sha256_of(&qcow));
    assert_eq!(by("web-managed")["artifactId"], "/slipway/images/web");
    assert_eq!(
        by("web-gallery")["artifactId"],
        format!("/slipway/galleries/g1/images/web/versions/{version}")
    );
    let images = s.get("/vmImages")["value"].clone();
    assert_eq!(images.as_array().unwrap().len(), 2, "{images}");

    // qemu-img agrees: a VHD (vpc) whose virtual size is whole MiB, fixed:
    // the file is the raw disk plus the 512-byte footer, disk type 2.
    let info = Command::new("qemu-img")
        .args(["info", "-f", "vpc", "--output=json"])
        .arg(&vhd)
        .output()
        .unwrap();
    assert!(
        info.status.success(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    let virt = info["virtual-size"].as_u64().unwrap();
    assert_eq!(virt % MIB, 0, "virtual size {virt} is not whole MiB");
    let bytes = std::fs::metadata(&vhd).unwrap().len();
    assert_eq!(bytes, virt + 512, "a fixed VHD is the disk plus a footer");
    let mut f = std::fs::File::open(&vhd).unwrap();
    let mut footer = vec![0u8; 512];
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(virt)).unwrap();
    f.read_exact(&mut footer).unwrap();
    assert_eq!(&footer[..8], b"conectix");
    assert_eq!(
        u32::from_be_bytes(footer[60..64].try_into().unwrap()),
        2,
        "disk type fixed"
    );
    let check = Command::new("qemu-img")
        .args(["compare", "-f", "vpc", "-F", "qcow2"])
        .arg(&vhd)
        .arg(&qcow)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "VHD and qcow2 hold the same disk: {}",
        String::from_utf8_lossy(&check.stdout)
    );

    // Customizer root is not host root, yet what it wrote has the image's
    // ids on the disk: the package's files root's, the folder it handed to
    // uid 1000 that user's.
    assert_eq!(owner(&vhd, "/usr/bin/hello"), (0, 0));
    assert_eq!(owner(&vhd, "/srv/owned-by-1000"), (1000, 1000));

    // The qcow2 boots under TCG and the customizer's marker shows.
    let serial = tmp.path().join("serial.log");
    boot_and_wait_for(
        &qcow,
        "SLIPWAY-MARKER Hello, world! greetings-from-the-file-customizer",
        &serial,
    );
}

#[test]
fn https_sources_scripts_and_files_are_fetched_trusting_the_ca_file() {
    let tmp = tempfile::tempdir().unwrap();
    let www = tmp.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(
        www.join("setup.sh"),
        "echo script-over-https-ran\necho from-the-script > /etc/slipway-https-script\n",
    )
    .unwrap();
    std::fs::write(www.join("motd.txt"), "file-over-https\n").unwrap();
    let trusted = slipway_fetch::test_support::HttpsFileServer::start(&www);
    let untrusted = slipway_fetch::test_support::HttpsFileServer::start(&www);
    let s = Server::start_trusting(&tmp.path().join("data"), &trusted);
    let url = |server: &slipway_fetch::test_support::HttpsFileServer, f: &str| {
        format!("{}/{f}", server.base_url)
    };

    // Shell.scriptUri and File.sourceUri over https, checksums checked; the
    // template is an ARM resource file for AIB API 2020-02-14.
    put_arm_resource(
        &s,
        "from-https",
        "2020-02-14",
        json!({
            "source": debian(),
            "customize": [
                {"type": "Shell", "name": "setup", "scriptUri": url(&trusted, "setup.sh"),
                 "sha256Checksum": sha256_of(&www.join("setup.sh"))},
                {"type": "File", "name": "motd", "sourceUri": url(&trusted, "motd.txt"),
                 "destination": "/etc/slipway/motd.txt", "sha256Checksum": sha256_of(&www.join("motd.txt"))}
            ],
            "distribute": [{"type": "Qcow2", "runOutputName": "q"}]
        }),
    );
    let run = run_to_end(&s, "from-https");
    let log = run_log(&s, "from-https", &run);
    assert_eq!(run["runState"], "Succeeded", "{run}\n{log}");
    assert!(log.contains("script-over-https-ran"), "{log}");

    // The built qcow2 served over https is the source (DiskImage) of the next build.
    let out = s.get("/imageTemplates/from-https/runOutputs/q");
    let qcow = Path::new(out["properties"]["artifactUri"].as_str().unwrap()).to_path_buf();
    std::fs::copy(&qcow, www.join("built.qcow2")).unwrap();
    put_template(
        &s,
        "disk-over-https",
        json!({
            "source": {"type": "DiskImage", "uri": url(&trusted, "built.qcow2"),
                       "sha256Checksum": sha256_of(&qcow)},
            "customize": [
                {"type": "Shell", "name": "check", "inline": [
                    "grep -q from-the-script /etc/slipway-https-script",
                    "echo motd=$(cat /etc/slipway/motd.txt)"
                ]}
            ],
            "distribute": [{"type": "Raw", "runOutputName": "raw"}]
        }),
    );
    let run = run_to_end(&s, "disk-over-https");
    let log = run_log(&s, "disk-over-https", &run);
    assert_eq!(run["runState"], "Succeeded", "{run}\n{log}");
    assert!(log.contains("motd=file-over-https"), "{log}");

    // A server signed by a CA the server does not trust is refused, by name.
    let bad = url(&untrusted, "setup.sh");
    put_template(
        &s,
        "untrusted",
        json!({
            "source": debian(),
            "customize": [{"type": "Shell", "name": "setup", "scriptUri": bad}],
            "distribute": [{"type": "Raw", "runOutputName": "raw"}]
        }),
    );
    let run = run_to_end(&s, "untrusted");
    assert_eq!(run["runState"], "Failed", "{run}");
    let msg = run["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("GET '{bad}'")) && msg.contains("UnknownIssuer"),
        "{msg}"
    );
}

/// GPT's partition type of a Linux filesystem and of an EFI System
/// Partition.
const LINUX_FS: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
const EFI_SYSTEM: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

/// The partitions of a raw disk as `sfdisk --json` lists them (`start` and
/// `size` in 512-byte sectors, `type`), with the table's `label` in each.
fn partitions(disk: &Path) -> Vec<Value> {
    let out = Command::new("sfdisk")
        .arg("--json")
        .arg(disk)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let label = v["partitiontable"]["label"].clone();
    v["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let mut p = p.clone();
            p["label"] = label.clone();
            p
        })
        .collect()
}

/// `debugfs` on the root partition of a raw disk (no mount): the output of
/// `command`, e.g. `cat /etc/passwd` or `stat /var/lib/cloud`.
fn debugfs(disk: &Path, command: &str) -> String {
    let offset = partitions(disk)
        .into_iter()
        .find(|p| p["type"] == "83" || p["type"] == LINUX_FS)
        .map_or(0, |p| p["start"].as_u64().unwrap() * 512);
    let out = Command::new("debugfs")
        .args(["-R", command])
        .arg(format!("{}?offset={offset}", disk.display()))
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The owner (uid, gid) of `path` in the root file system of `disk`, as
/// stored on the disk.
fn owner(disk: &Path, path: &str) -> (u32, u32) {
    let st = debugfs(disk, &format!("stat {path}"));
    let words: Vec<&str> = st
        .lines()
        .find(|l| l.starts_with("User:"))
        .unwrap_or_else(|| panic!("no owner of {path}: {st}"))
        .split_whitespace()
        .collect();
    (words[1].parse().unwrap(), words[3].parse().unwrap())
}

/// The server killed (SIGKILL, a crash, the OOM killer) while a build VM
/// boots: nothing gets to power the VM off, yet qemu ends with the server
/// instead of booting on, holding the host's cores.
#[test]
fn a_build_vm_runs_confined_and_ends_when_the_server_is_killed() {
    let tmp = tempfile::tempdir().unwrap();
    // TCG: KVM would abort at once here, and `auto` would boot again.
    let mut s = Server::start_with(
        &tmp.path().join("data"),
        common::free_port(),
        &["--vm-accel", "tcg"],
    );
    put_template(
        &s,
        "booting",
        json!({
            "source": debian(),
            "vmProfile": {"executor": "FullBoot"},
            "customize": [{"type": "Shell", "name": "wait", "inline": ["sleep 600"]}],
            "distribute": [{"type": "Raw", "runOutputName": "raw"}]
        }),
    );
    let (st, run, _) = s.call("POST", "/imageTemplates/booting/run", None);
    assert_eq!(st, 202, "{run}");
    let qemu_of_this_server = || {
        let out = Command::new("pgrep")
            .args(["-af", "qemu-system"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&*tmp.path().to_string_lossy()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    // The qemu process (not the `nsenter` that becomes it).
    let comm = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let qemu = poll("the build VM to start", BUILD_TIMEOUT, || {
        let q = qemu_of_this_server();
        match q.split_whitespace().next() {
            Some(pid) if comm(pid).starts_with("qemu-system") => Ok(q),
            _ => Err(format!("{q}\n{}", s.log())),
        }
    });
    // qemu runs the guest under a seccomp filter (`-sandbox on`: no
    // spawning, no privilege changes), installed as it starts, as a user of
    // its own, and outside
    // the host's network namespace (in the build's, whose routes and
    // filter are the runners').
    let pid = qemu.split_whitespace().next().unwrap().to_string();
    poll("qemu's seccomp filter", Duration::from_secs(10), || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if status.contains("Seccomp:\t2") {
            Ok(())
        } else {
            Err(format!("{qemu}\n{status}"))
        }
    });
    // qemu runs as a user of its own with no capabilities: a guest that
    // broke out into qemu is not root on the host.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    for ids in [field("Uid:"), field("Gid:")] {
        assert!(
            ids.len() == 4 && ids.iter().all(|id| id.parse::<u32>().unwrap() >= 100_000),
            "qemu runs as {ids:?}, not as an unprivileged user:\n{status}"
        );
    }
    assert!(field("Groups:").is_empty(), "{status}");
    for caps in ["CapEff:", "CapPrm:", "CapBnd:"] {
        assert_eq!(
            field(caps),
            ["0000000000000000"],
            "{caps} of qemu:\n{status}"
        );
    }
    assert_eq!(field("NoNewPrivs:"), ["1"], "{status}");
    let qemu_net = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(qemu_net, host_net, "qemu shares the host's network: {qemu}");
    let in_ns = Command::new("ip")
        .args(["netns", "identify", &pid])
        .output()
        .unwrap();
    let ns = String::from_utf8_lossy(&in_ns.stdout).trim().to_string();
    assert!(
        ns.starts_with("slwi-"),
        "qemu is in the build's network, not '{ns}'"
    );
    s.kill();
    poll(
        "the build VM to end with the server",
        Duration::from_secs(30),
        || {
            let q = qemu_of_this_server();
            if q.is_empty() {
                Ok(())
            } else {
                Err(q)
            }
        },
    );
}

#[test]
fn full_boot_executor_runs_customizers_in_the_booted_image_over_ssh() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let greeting = tmp.path().join("greeting.txt");
    std::fs::write(&greeting, "hello-from-the-host\n").unwrap();
    let raw = tmp.path().join("out/booted.raw");
    // A service on the host's loopback, where qemu's user network sends a
    // guest's connections to 10.0.2.2 when qemu shares the host's network.
    let host_service = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    host_service.set_nonblocking(true).unwrap();
    let port = host_service.local_addr().unwrap().port();
    put_template(
        &s,
        "booted",
        json!({
            "source": debian(),
            "vmProfile": {"vmSize": "Standard_A2_v2", "executor": "FullBoot"},
            "customize": [
                // Starting a service needs a running systemd: a chroot
                // cannot do this ("System has not been booted with systemd").
                {"type": "Shell", "name": "start-a-service", "inline": [
                    "test -d /run/systemd/system",
                    "echo \"pid1=$(cat /proc/1/comm) user=$(id -un) cpus=$(nproc)\"",
                    "printf '[Unit]\\nDescription=demo\\n[Service]\\nType=oneshot\\nExecStart=/bin/sh -c \"uname -r > /var/lib/demo-started\"\\n[Install]\\nWantedBy=multi-user.target\\n' > /etc/systemd/system/demo.service",
                    "systemctl daemon-reload",
                    "systemctl enable --now demo.service",
                    "echo \"demo ran on $(cat /var/lib/demo-started)\""
                ]},
                {"type": "File", "name": "greeting", "sourceUri": greeting.to_string_lossy(),
                 "destination": "/etc/slipway/greeting.txt"},
                // Attack: the customizer reaches for the host's services.
                // The build VM still has the build's network (apt works).
                {"type": "Shell", "name": "reach-the-host", "inline": [
                    format!("if timeout 20 bash -c 'exec 3<>/dev/tcp/10.0.2.2/{port}'; then echo HOST-SERVICE-REACHED; else echo HOST-SERVICE-UNREACHABLE; fi"),
                    "apt-get install -y -q hello >/dev/null && echo \"network: $(hello)\"".to_string()
                ]}
            ],
            "validate": {"inVMValidations": [
                {"type": "Shell", "name": "greeting-arrived", "inline": [
                    "grep -q hello-from-the-host /etc/slipway/greeting.txt",
                    "systemctl is-enabled demo.service"
                ]}
            ]},
            "distribute": [{"type": "Raw", "runOutputName": "raw", "uri": raw.to_string_lossy()}]
        }),
    );
    let run = run_to_end(&s, "booted");
    let log = run_log(&s, "booted", &run);
    assert_eq!(run["runState"], "Succeeded", "{run}\n{log}\n{}", s.log());
    for line in [
        "slipway: booting the build VM (qemu, accel=",
        "2 vCPUs, 4096 MiB",
        "PACKER OUT pid1=systemd user=root cpus=2",
        "PACKER OUT demo ran on 6.",
        "(telemetry) ending greeting",
        "PACKER OUT HOST-SERVICE-UNREACHABLE",
        "PACKER OUT network: Hello, world!",
        "(telemetry) Starting provisioner greeting-arrived",
        "slipway: the build VM powered off",
    ] {
        assert!(
            log.contains(line),
            "customization.log lacks '{line}':\n{log}"
        );
    }

    // What the running OS did is in the distributed disk; what the build
    // needed (its user and key, cloud-init's instance, the VM's resolver,
    // the scratch folder) is not.
    assert!(
        debugfs(&raw, "cat /var/lib/demo-started").contains("6."),
        "the service's file is in the image"
    );
    assert!(debugfs(&raw, "cat /etc/slipway/greeting.txt").contains("hello-from-the-host"));
    let passwd = debugfs(&raw, "cat /etc/passwd");
    assert!(passwd.contains("root:x:0:0"), "{passwd}");
    assert!(
        !passwd.contains("slipway:"),
        "build user left behind: {passwd}"
    );
    for gone in [
        "/home/slipway",
        "/var/lib/cloud",
        "/etc/sudoers.d/90-cloud-init-users",
        "/tmp/.slipway",
    ] {
        let st = debugfs(&raw, &format!("stat {gone}"));
        assert!(
            st.contains("File not found"),
            "{gone} is left in the image: {st}"
        );
    }
    assert!(!debugfs(&raw, "cat /etc/resolv.conf").contains("10.0.2.3"));
    assert!(
        !log.contains("HOST-SERVICE-REACHED"),
        "the build VM reached a service on the host's loopback:\n{log}"
    );
    assert_eq!(
        host_service.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "no connection reached the host's service"
    );
}

/// A generation 2 sku (`Debian:debian-12:12-gen2`, as Azure names it)
/// builds a UEFI disk — GPT, an EFI System Partition, the root after it —
/// that the build VM boots with UEFI firmware, and that is what is
/// distributed.
#[test]
fn a_gen2_source_boots_its_build_vm_with_uefi_and_distributes_a_uefi_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let raw = tmp.path().join("out/gen2.raw");
    put_template(
        &s,
        "gen2",
        json!({
            "source": {"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12",
                       "sku": "12-gen2", "version": "latest"},
            "vmProfile": {"vmSize": "Standard_A2_v2", "executor": "FullBoot"},
            "customize": [
                {"type": "Shell", "name": "firmware", "inline": [
                    "echo \"firmware=$(test -d /sys/firmware/efi && echo UEFI || echo BIOS) $(cat /sys/firmware/efi/fw_platform_size 2>/dev/null)-bit\"",
                    "echo built-on-uefi > /etc/slipway-gen2"
                ]}
            ],
            "distribute": [
                {"type": "Raw", "runOutputName": "raw", "uri": raw.to_string_lossy()},
                {"type": "SharedImage", "runOutputName": "gallery",
                 "galleryImageId": format!("{GALLERY}/app-gen2")}
            ]
        }),
    );
    let run = run_to_end(&s, "gen2");
    let log = run_log(&s, "gen2", &run);
    assert_eq!(run["runState"], "Succeeded", "{run}\n{log}\n{}", s.log());
    assert_eq!(run["source"]["sku"], "12-gen2", "{run}");
    assert!(
        log.contains("PACKER OUT firmware=UEFI 64-bit"),
        "the build VM booted with UEFI firmware:\n{log}"
    );
    let parts = partitions(&raw);
    assert_eq!(parts[0]["label"], "gpt", "{parts:?}");
    assert_eq!(parts[0]["type"], EFI_SYSTEM, "{parts:?}");
    assert_eq!(parts[1]["type"], LINUX_FS, "{parts:?}");
    assert!(debugfs(&raw, "cat /etc/slipway-gen2").contains("built-on-uefi"));
    let images = s.get("/vmImages/platformImages");
    let gen2 = images["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["sku"] == "12-gen2")
        .unwrap()
        .clone();
    assert_eq!(gen2["hyperVGeneration"], "V2", "{images}");
    assert_eq!(gen2["versions"][0], run["source"]["version"], "{images}");

    // The stored image says its generation, and a gallery image definition
    // holds one generation, as Azure's do: a generation 1 version first,
    // then a generation 2 build into the same definition is refused.
    let stored = s.get("/vmImages");
    let by_definition = |d: &str| {
        stored["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["definition"] == d)
            .unwrap_or_else(|| panic!("no {d}: {stored}"))
            .clone()
    };
    assert_eq!(
        by_definition("app-gen2")["hyperVGeneration"],
        "V2",
        "{stored}"
    );
    let into_app = |name: &str, source: Value| {
        put_template(
            &s,
            name,
            json!({"source": source, "customize": [],
                   "distribute": [{"type": "SharedImage", "runOutputName": "app",
                                   "galleryImageId": format!("{GALLERY}/app")}]}),
        );
        run_to_end(&s, name)
    };
    let v1 = into_app("gen1-app", debian());
    assert_eq!(v1["runState"], "Succeeded", "{v1}\n{}", s.log());
    let stored = s.get("/vmImages");
    let app: Vec<&Value> = stored["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["definition"] == "app")
        .collect();
    assert_eq!(app.len(), 1, "{stored}");
    assert_eq!(app[0]["hyperVGeneration"], "V1", "{stored}");
    let refused = into_app(
        "gen2-app",
        json!({"type": "PlatformImage", "publisher": "Debian", "offer": "debian-12",
               "sku": "12-gen2", "version": "latest"}),
    );
    assert_eq!(refused["runState"], "Failed", "{refused}");
    let msg = refused["message"].as_str().unwrap();
    assert!(
        msg.contains("image definition 'g1/app' holds hyperVGeneration V1 images")
            && msg.contains("this build's disk is V2 (UEFI boot)"),
        "{msg}"
    );
    let stored = s.get("/vmImages");
    let app = stored["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["definition"] == "app")
        .count();
    assert_eq!(app, 1, "nothing was added to the definition: {stored}");
}

/// The gallery the generation tests distribute to.
const GALLERY: &str =
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g1/images";

#[test]
fn failing_customizer_keeps_staging_unless_cleanup() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let failing = |error_handling: Value| {
        let mut p = json!({
            "source": debian(),
            "customize": [
                {"type": "Shell", "name": "fine", "inline": ["echo step-one-ran"]},
                {"type": "Shell", "name": "breaks", "inline": ["echo about-to-fail", "false", "echo never-printed"]}
            ],
            "distribute": [{"type": "Raw", "runOutputName": "raw"}]
        });
        if !error_handling.is_null() {
            p["errorHandling"] = error_handling;
        }
        p
    };
    put_template(&s, "kept", failing(Value::Null));
    put_template(
        &s,
        "cleaned",
        failing(json!({"onCustomizerError": "cleanup"})),
    );

    let run = run_to_end(&s, "kept");
    let log = run_log(&s, "kept", &run);
    assert_eq!(run["runState"], "Failed", "{run}");
    let msg = run["message"].as_str().unwrap();
    let staging = s
        .data
        .join("vm-images/staging")
        .join(run["runId"].as_str().unwrap());
    assert!(
        msg.starts_with("Failed while waiting for packerizer"),
        "{msg}"
    );
    assert!(
        msg.contains("customizer 'breaks'") && msg.contains("exit status 1"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("Staging kept at {}", staging.display())),
        "{msg}"
    );
    assert!(msg.contains("customization.log"), "{msg}");
    assert!(
        staging.join("disk.raw").is_file(),
        "staging is kept on failure"
    );
    assert_released(&staging);
    assert!(
        log.contains("(telemetry) Starting provisioner breaks") && log.contains("about-to-fail"),
        "{log}"
    );
    assert!(
        !log.contains("never-printed"),
        "scripts run with sh -e: {log}"
    );
    let tpl = s.get("/imageTemplates/kept");
    assert_eq!(
        tpl["properties"]["lastRunStatus"]["runState"], "Failed",
        "{tpl}"
    );

    let run = run_to_end(&s, "cleaned");
    assert_eq!(run["runState"], "Failed", "{run}");
    let staging = s
        .data
        .join("vm-images/staging")
        .join(run["runId"].as_str().unwrap());
    assert!(
        !staging.exists(),
        "onCustomizerError: cleanup removes staging"
    );
    assert!(
        run["message"]
            .as_str()
            .unwrap()
            .contains("Staging was cleaned up"),
        "{run}"
    );
    assert!(run_log(&s, "cleaned", &run).contains("(telemetry) ending breaks"));
}

#[test]
fn build_timeout_ends_the_run_with_aib_message_and_cancel_stops_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let sleeper = |timeout: u32| {
        json!({
            "source": debian(),
            "buildTimeoutInMinutes": timeout,
            "customize": [{"type": "Shell", "name": "sleeps", "inline": ["echo sleeping", "sleep 900"]}],
            "distribute": [{"type": "Raw", "runOutputName": "raw"}]
        })
    };
    put_template(&s, "slow", sleeper(1));
    put_template(&s, "canceled", sleeper(30));

    // Cancel: Canceling, then Canceled once the script is killed.
    let (st, run, _) = s.call("POST", "/imageTemplates/canceled/run", None);
    assert_eq!(st, 202, "{run}");
    let id = run["runId"].as_str().unwrap().to_string();
    poll("the sleeping customizer to start", BUILD_TIMEOUT, || {
        let l = run_log(&s, "canceled", &json!({"runId": id}));
        assert!(!l.contains("errored"), "the build failed early: {l}");
        if l.contains("sleeping") {
            Ok(())
        } else {
            Err(l)
        }
    });
    let (st, v, _) = s.call("POST", "/imageTemplates/canceled/cancel", None);
    assert_eq!(st, 202, "{v}");
    let end = poll("the canceled run to end", Duration::from_secs(60), || {
        let r = s.get(&format!("/imageTemplates/canceled/runs/{id}"));
        if r["runState"] == "Canceled" {
            Ok(r)
        } else {
            Err(r.to_string())
        }
    });
    assert_eq!(end["runSubState"], "Customizing", "{end}");
    let staging = s.data.join("vm-images/staging").join(&id);
    assert_released(&staging);
    let (st, v, _) = s.call("POST", "/imageTemplates/canceled/cancel", None);
    assert_eq!(st, 409, "nothing left to cancel: {v}");

    let run = run_to_end(&s, "slow");
    assert_eq!(run["runState"], "Failed", "{run}");
    let msg = run["message"].as_str().unwrap();
    assert!(
        msg.starts_with("Failed while waiting for packerizer: Timeout waiting for microservice to complete: 'context deadline exceeded'"),
        "{msg}"
    );
    let staging = s
        .data
        .join("vm-images/staging")
        .join(run["runId"].as_str().unwrap());
    assert_released(&staging);
    assert!(run_log(&s, "slow", &run).contains("(telemetry) Starting provisioner sleeps"));
}

#[test]
fn one_shot_build_prints_devops_output_variables_and_feeds_a_gallery() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let pkg = tmp.path().join("webapp");
    std::fs::create_dir_all(pkg.join("bin")).unwrap();
    std::fs::write(pkg.join("bin/app.sh"), "#!/bin/sh\necho app-v1\n").unwrap();
    let out = tmp.path().join("image.vhd");
    let out_s = out.to_string_lossy().into_owned();
    // A template built FROM the gallery image, rebuilt by a SourceImage
    // trigger whenever a new version of it is distributed.
    let gallery_latest = "/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/galleries/apps/images/webapp/versions/latest";
    put_template(
        &s,
        "downstream",
        json!({
            "source": {"type": "SharedImageVersion", "imageVersionId": gallery_latest},
            "customize": [{"type": "Shell", "name": "uses-app", "inline": ["test \"$(app)\" = app-v1"]}],
            "distribute": [{"type": "ManagedImage", "runOutputName": "downstream", "imageId": "/slipway/images/downstream", "location": "local"}]
        }),
    );
    let (st, v) = put_trigger(&s, "downstream", "onWebapp");
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["properties"]["status"]["code"], "Healthy", "{v}");
    let (st, v, _) = s.call(
        "PUT",
        "/imageTemplates/downstream/triggers/other",
        Some(json!({"properties": {"kind": "Timer"}})),
    );
    assert_eq!(st, 400, "{v}");
    assert!(
        v.to_string().contains("properties.kind") && v.to_string().contains("Timer"),
        "{v}"
    );
    let (st, v) = put_trigger(&s, "absent", "t");
    assert_eq!(st, 404, "{v}");
    put_template(
        &s,
        "pinned",
        json!({
            "source": {"type": "SharedImageVersion", "imageVersionId": "/slipway/galleries/apps/images/webapp/versions/1.0.0"},
            "distribute": [{"type": "ManagedImage", "runOutputName": "pinned", "imageId": "/slipway/images/pinned", "location": "local"}]
        }),
    );
    let (st, v) = put_trigger(&s, "pinned", "t");
    assert_eq!(st, 400, "a fixed version never changes: {v}");
    assert!(v.to_string().contains("properties.source"), "{v}");
    let (code, stdout, stderr) = s.cli(&[
        "vm-image",
        "build",
        "--source",
        "Debian:debian-12:12",
        "--package-path",
        &pkg.to_string_lossy(),
        "--inline-script",
        "install -m 0755 /tmp/webapp/bin/app.sh /usr/local/bin/app\napp\ntest \"$(df --output=size -k / | tail -n 1)\" -gt 2500000",
        "--os-disk-size-gb",
        "3",
        "--distribute",
        &format!("vhd={out_s}"),
        "--distribute",
        "sharedimage=/slipway/galleries/apps/images/webapp",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("(telemetry) Starting provisioner vststask_inline")
            && stderr.contains("app-v1"),
        "{stderr}"
    );
    let var = |name: &str| {
        let v = var_in(&stdout, name);
        assert!(!v.is_empty(), "no $({name}) in:\n{stdout}");
        v
    };
    assert_eq!(var("imageUri"), out_s);
    assert!(var("templateName").starts_with("t_"), "{stdout}");
    assert_eq!(var("pirPublisher"), "Debian");
    assert_eq!(var("pirOffer"), "debian-12");
    assert_eq!(var("pirSku"), "12");
    assert!(var("pirVersion").starts_with("12."), "{stdout}");
    let len = std::fs::metadata(&out).unwrap().len();
    assert_eq!(
        len,
        (3 << 30) + 512,
        "downloaded VHD: the grown 3 GiB disk plus footer"
    );
    let (st, _, _) = s.call(
        "GET",
        &format!("/imageTemplates/{}", var("templateName")),
        None,
    );
    assert_eq!(st, 404, "the one-shot template is deleted after success");

    // The gallery version (Latest scheme: 1.0.0) is the next build's source.
    let images = s.get("/vmImages")["value"].clone();
    assert_eq!(
        images[0]["id"], "/slipway/galleries/apps/images/webapp/versions/1.0.0",
        "{images}"
    );
    // …and the trigger started a run of the downstream template with it.
    // The trigger fires as the run that stored the image ends.
    let status = poll("the trigger to fire", Duration::from_secs(60), || {
        let st =
            s.get("/imageTemplates/downstream/triggers/onWebapp")["properties"]["status"].clone();
        if st["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Following")
        {
            Err(st.to_string())
        } else {
            Ok(st)
        }
    });
    assert_eq!(status["code"], "Healthy", "{status}");
    let message = status["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("versions/1.0.0"), "{message}");
    let runs = s.get("/imageTemplates/downstream/runs")["value"].clone();
    let run_id = runs[0]["runId"].as_str().unwrap().to_string();
    assert!(
        message.contains(&format!("Started run {run_id} ")),
        "{message}"
    );
    let run = poll("the triggered run", BUILD_TIMEOUT, || {
        let r = s.get(&format!("/imageTemplates/downstream/runs/{run_id}"));
        match r["runState"].as_str() {
            Some("Running") | Some("Canceling") => Err(r.to_string()),
            _ => Ok(r),
        }
    });
    assert_eq!(run["runState"], "Succeeded", "{run}");
    assert!(
        run_log(&s, "downstream", &run).contains("(telemetry) Starting provisioner uses-app"),
        "the triggered build ran the customizer against the new version"
    );
    let (st, _, _) = s.call(
        "DELETE",
        "/imageTemplates/downstream/triggers/onWebapp",
        None,
    );
    assert_eq!(st, 200);
    assert_eq!(
        s.get("/imageTemplates/downstream/triggers")["value"],
        json!([])
    );
    let (code, stdout, stderr) = s.cli(&[
        "vm-image",
        "build",
        "--source",
        "/slipway/galleries/apps/images/webapp/versions/latest",
        "--package-path",
        &pkg.to_string_lossy(),
        "--inline-script",
        "test \"$(app)\" = app-v1",
        "--distribute",
        "sharedimage=/slipway/galleries/apps/images/webapp",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(
        var_in(&stdout, "imageUri"),
        "/slipway/galleries/apps/images/webapp/versions/1.0.1",
        "{stdout}"
    );
    assert!(
        !stdout.contains("pirPublisher"),
        "pir* only for platform sources: {stdout}"
    );
    assert_eq!(
        s.get("/imageTemplates/downstream/runs")["value"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "a deleted trigger starts nothing"
    );
}

/// The value of `$(name) = value` in the one-shot build's output, or "".
fn var_in(stdout: &str, name: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("$({name}) = ")))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn invalid_templates_are_refused_with_aib_validation_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let cases = [
        (
            json!({"properties": {"source": debian(), "distribute": [{"type": "VHD", "runOutputName": "v"}], "buildTimeoutInMinutes": 961}}),
            "'ImageTemplate.properties.buildTimeoutInMinutes'",
        ),
        (
            json!({"properties": {"source": debian(), "customize": [{"type": "Shell", "inlin": ["x"]}], "distribute": [{"type": "VHD", "runOutputName": "v"}]}}),
            "'ImageTemplate.properties.customize[0]'",
        ),
        (
            json!({"properties": {"source": debian(), "customize": [{"type": "PowerShell", "inline": ["x"]}], "distribute": [{"type": "VHD", "runOutputName": "v"}]}}),
            "UnsupportedCustomizerType",
        ),
        (
            json!({"apiVersion": "2020-02-14", "properties": {"source": debian(), "distribute": [{"type": "VHD", "runOutputName": "v"}], "errorHandling": {"onCustomizerError": "abort"}}}),
            "needs apiVersion 2023-07-01 or later; the template says apiVersion 2020-02-14",
        ),
    ];
    for (doc, want) in cases {
        let (st, v, _) = s.call("PUT", "/imageTemplates/bad", Some(doc));
        assert_eq!(st, 400, "{v}");
        assert_eq!(v["error"]["code"], "ValidationFailed", "{v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(
            m.starts_with("Validation failed: ") && m.contains(want),
            "{m}"
        );
    }
    let (st, v, _) = s.call("PUT", "/imageTemplates/bad%20name", Some(json!({"properties": {"source": debian(), "distribute": [{"type": "VHD", "runOutputName": "v"}]}})));
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'bad name'"),
        "{v}"
    );
    let (st, _, _) = s.call("POST", "/imageTemplates/missing/run", None);
    assert_eq!(st, 404);
}

/// The default tier's attacks: a customizer goes for the host's root
/// through `/proc/<pid>/root` and plants symlinks where the server writes
/// the next File customizer's bytes and the next script. Nothing may land
/// outside the image; the run fails at the planted script path, naming it.
#[test]
fn customizers_are_confined_and_planted_symlinks_lead_nowhere() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let o = outside.display().to_string();
    let greeting = tmp.path().join("greeting.txt");
    std::fs::write(&greeting, "hello from the host\n").unwrap();
    put_template(
        &s,
        "escape",
        json!({
            "source": debian(),
            "customize": [
                {"type": "Shell", "name": "reach-the-host", "inline": [
                    format!("for r in /proc/[0-9]*/root; do touch \"$r{o}/via-proc\" 2>/dev/null || true; done"),
                    "echo pids-seen=$(ls -d /proc/[0-9]* | wc -l)",
                    "if ls /dev | grep -Eq '^(sd|vd|nvme|loop)'; then echo host-disks-visible; else echo no-host-disks; fi",
                    "echo capeff=$(awk '/^CapEff/{print $2}' /proc/self/status)",
                    "echo root-on-host=$(awk '$1 == 0 {print $2}' /proc/self/uid_map)",
                    "sed 's/^/route: /' /proc/net/route",
                    format!("for i in 0 1 2 3 4 5; do ln -s {o}/via-file-$i /.slipway-incoming-$i; done")
                ]},
                {"type": "File", "name": "greeting", "sourceUri": greeting.to_string_lossy(),
                 "destination": "/etc/greeting.txt", "sha256Checksum": sha256_of(&greeting)},
                {"type": "Shell", "name": "plant", "inline": [
                    "grep -q 'hello from the host' /etc/greeting.txt",
                    "rm -rf /tmp/.slipway",
                    format!("ln -s {o} /tmp/.slipway")
                ]},
                {"type": "Shell", "name": "next", "inline": ["echo never-runs"]}
            ],
            "distribute": [{"type": "Raw", "runOutputName": "raw"}]
        }),
    );
    let run = run_to_end(&s, "escape");
    let log = run_log(&s, "escape", &run);
    let msg = run["message"].as_str().unwrap_or_default();
    assert_eq!(run["runState"], "Failed", "{run}\n{log}");
    assert!(
        msg.contains("customizer 'next'") && msg.contains("leads outside"),
        "the failure names the planted path: {msg}"
    );
    assert!(!log.contains("never-runs"), "{log}");
    let pids = logged_number(&log, "pids-seen");
    assert!(
        pids <= 5,
        "the sandbox sees the host's processes ({pids}): {log}"
    );
    assert!(log.contains("no-host-disks"), "{log}");
    // CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID only, and
    // over the build's own user namespace: its root is an unprivileged host
    // user of a block no runner, task run or account has.
    assert!(log.contains("capeff=00000000000000fb"), "{log}");
    let root_on_host = u32::try_from(logged_number(&log, "root-on-host")).unwrap();
    assert!(
        slipway_core::isolation::BUILD_USER_IDS.contains(&root_on_host),
        "customizer root is host uid {root_on_host}: {log}"
    );
    // The customizers' network follows the runner egress policy.
    let table = common::routes(
        &log.lines()
            .filter_map(|l| l.split("route: ").nth(1))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    for ip in ["169.254.169.254", "10.1.2.3", "172.16.0.1", "192.168.1.1"] {
        assert!(
            common::rejected(&table, ip.parse().unwrap()),
            "{ip}: {table:?}\n{log}"
        );
    }
    assert!(!common::rejected(&table, "203.0.113.7".parse().unwrap()));
    let left: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "the build wrote on the host: {left:?}");
}

/// The number a customizer printed as `<key>=<n>` in `log`.
fn logged_number(log: &str, key: &str) -> u64 {
    log.lines()
        .find_map(|l| l.split(&format!("{key}=")).nth(1))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key}= line: {log}"))
}

/// Loop devices whose backing file lies beneath `dir` (`losetup --list`).
fn loop_devices_under(dir: &Path) -> Vec<String> {
    let out = Command::new("losetup")
        .args(["--list", "--noheadings", "--output", "NAME,BACK-FILE"])
        .output()
        .unwrap();
    let d = dir.to_string_lossy().into_owned();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&d))
        .map(str::to_string)
        .collect()
}

/// Panics unless nothing is mounted beneath `staging` and no loop device
/// is backed by a file there.
fn assert_released(staging: &Path) {
    let (mounts, loops) = (mounts_under(staging), loop_devices_under(staging));
    assert!(
        mounts.is_empty() && loops.is_empty(),
        "still mounted: {mounts:?}; loop devices: {loops:?}"
    );
}

/// Starts a run of `template` and waits until its customizer printed
/// `sleeping`; the run id and its staging folder, where the image is
/// mounted now.
fn run_until_sleeping(s: &Server, template: &str) -> (String, std::path::PathBuf) {
    let (st, run, _) = s.call("POST", &format!("/imageTemplates/{template}/run"), None);
    assert_eq!(st, 202, "{run}");
    let id = run["runId"].as_str().unwrap().to_string();
    poll("the sleeping customizer to start", BUILD_TIMEOUT, || {
        let l = run_log(s, template, &json!({"runId": id}));
        assert!(!l.contains("errored"), "the build failed early: {l}");
        if l.contains("sleeping") {
            Ok(())
        } else {
            Err(l)
        }
    });
    let staging = s.data.join("vm-images/staging").join(&id);
    assert!(
        !mounts_under(&staging).is_empty() && !loop_devices_under(&staging).is_empty(),
        "the image is mounted while it customizes"
    );
    (id, staging)
}

/// `systemctl stop` (SIGTERM) while a build customizes: the server ends
/// the build — its customizer processes, loop device and mounts gone —
/// and exits 0; the run reads Failed with AIB's wording after a restart.
/// Killed outright (SIGKILL) no drop guard runs, so the next start
/// releases the killed build's mounts and loop device before it serves.
#[test]
fn sigterm_ends_builds_and_a_restart_releases_what_a_kill_left() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = Server::start(&data);
    put_template(
        &s,
        "long",
        json!({
            "source": debian(),
            "customize": [{"type": "Shell", "name": "sleeps", "inline": ["echo sleeping", "sleep 917"]}],
            "distribute": [{"type": "Raw", "runOutputName": "raw"}]
        }),
    );
    let (id, staging) = run_until_sleeping(&s, "long");

    let status = s.terminate();
    assert!(status.success(), "{status:?}\n{}", s.log());
    assert_released(&staging);
    let sleepers = Command::new("pgrep")
        .args(["-f", "sleep 917"])
        .output()
        .unwrap();
    assert!(
        sleepers.stdout.is_empty(),
        "the customizer outlived the server: {}",
        String::from_utf8_lossy(&sleepers.stdout)
    );

    let mut s = Server::start(&data);
    let r = s.get(&format!("/imageTemplates/long/runs/{id}"));
    assert_eq!(r["runState"], "Failed", "{r}");
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.contains("The Slipway server stopped during the run.")
            && msg.contains(&format!("Staging kept at {}", staging.display())),
        "{msg}"
    );
    assert!(
        run_log(&s, "long", &r).contains("The Slipway server stopped during the run."),
        "the log says why the build ended"
    );

    // SIGKILL: the image stays mounted until the next start.
    let (id, staging) = run_until_sleeping(&s, "long");
    let port = s.port;
    s.kill();
    assert!(!mounts_under(&staging).is_empty());
    let s = Server::start_on(&data, port);
    assert_released(&staging);
    let r = s.get(&format!("/imageTemplates/long/runs/{id}"));
    assert_eq!(r["runState"], "Failed", "{r}");
}
