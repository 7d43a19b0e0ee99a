//! What confining a VM image customizer costs: one command (`/bin/true`)
//! over a Debian root tree run with plain `chroot` (the executor before
//! the sandbox), in the customizer sandbox without network, and in the
//! sandbox joined to a runner-style network; plus what a build sets up
//! once: its network, and the id-mapped view of the image in a user
//! namespace of its own. Prints medians and ratios; asserts nothing.
//!
//! Needs root, podman and the runner images (`runner-images/build`): the
//! root tree is `localhost/slipway/debian:bookworm` (`podman image
//! mount`) copied into an ext4 file system and loop mounted, as a build's
//! disk is.
//!
//! `cargo bench -p slipway-vm-images --bench sandbox [-- runs]` (default 30).

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use slipway_core::isolation;
use slipway_runner::{NetworkPool, RunnerNetwork};
use slipway_vm_images::exec::{logged, run_confined, RunLog};
use slipway_vm_images::sandbox_root::SandboxRoot;

const IMAGE: &str = "localhost/slipway/debian:bookworm";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn timed(
    f: impl std::future::Future<Output = Result<(), slipway_vm_images::BuildError>>,
) -> Duration {
    let t = Instant::now();
    f.await.expect("command");
    t.elapsed()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let runs: usize = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(30);
    let out = Command::new("podman")
        .args(["image", "mount", IMAGE])
        .output()
        .expect("podman");
    assert!(
        out.status.success(),
        "podman image mount {IMAGE}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // Builds mount ext4 disks: the tree goes into one (`mke2fs -d`), loop
    // mounted (Podman's overlay mount cannot be id-mapped).
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("root.ext4");
    let root = tmp.path().join("image");
    std::fs::create_dir_all(&root).unwrap();
    run(
        "mke2fs",
        &[
            "-q",
            "-t",
            "ext4",
            "-d",
            &tree,
            &disk.to_string_lossy(),
            "2G",
        ],
    );
    run("podman", &["image", "unmount", IMAGE]);
    run(
        "mount",
        &[
            "-o",
            "loop",
            &disk.to_string_lossy(),
            &root.to_string_lossy(),
        ],
    );
    let root = root.as_path();
    let log = RunLog::open(&tmp.path().join("customization.log")).unwrap();
    let mut views: Vec<Duration> = Vec::new();
    for i in 0..runs {
        let t = Instant::now();
        let view = SandboxRoot::mount(
            root,
            &tmp.path().join("view"),
            isolation::build_user_base(i as u64),
        )
        .expect("id-mapped view");
        drop(view);
        views.push(t.elapsed());
    }
    let view = SandboxRoot::mount(
        root,
        &tmp.path().join("view"),
        isolation::build_user_base(0),
    )
    .expect("id-mapped view");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut chroot = Vec::new();
        let mut sandbox = Vec::new();
        let mut sandbox_net = Vec::new();
        let mut network = Vec::new();
        for _ in 0..runs {
            let mut cmd = tokio::process::Command::new("chroot");
            cmd.arg(root).arg("/bin/true");
            chroot.push(timed(logged(cmd, None, &log)).await);
            sandbox.push(timed(run_confined(&view, None, &["/bin/true"], &log)).await);
        }
        let pool = NetworkPool::default();
        for i in 0..runs.min(10) {
            let t = Instant::now();
            let mut n = RunnerNetwork::create(&format!("slwi-bench-{i}"), &pool, &[])
                .await
                .expect("network");
            n.install_closed_filter().await.expect("filter");
            let created = t.elapsed();
            for _ in 0..(runs / 10).max(1) {
                let path = n.path();
                sandbox_net
                    .push(timed(run_confined(&view, Some(&path), &["/bin/true"], &log)).await);
            }
            let t = Instant::now();
            n.remove().await;
            network.push(created + t.elapsed());
        }
        let (c, s, sn, n) = (
            median(chroot),
            median(sandbox),
            median(sandbox_net),
            median(network),
        );
        println!("customizer command /bin/true over {IMAGE}, {runs} runs, medians:");
        println!("  chroot (before)            {:7.1} ms", ms(c));
        println!(
            "  sandbox, no network        {:7.1} ms  ({:.2}x chroot)",
            ms(s),
            s.as_secs_f64() / c.as_secs_f64()
        );
        println!(
            "  sandbox in its network     {:7.1} ms  ({:.2}x chroot)",
            ms(sn),
            sn.as_secs_f64() / c.as_secs_f64()
        );
        println!(
            "  build network create+remove {:6.1} ms  (once per build)",
            ms(n)
        );
        println!(
            "  id-mapped view mount+unmount {:5.1} ms  (once per build; user namespace included)",
            ms(median(views))
        );
        println!(
            "  confinement cost per customizer: {:.1} ms",
            ms(sn.saturating_sub(c))
        );
    });
    drop(view);
    run("umount", &[&root.to_string_lossy()]);
}

/// Runs a set-up command, panicking with its stderr when it fails.
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().expect(program);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
