//! Per-operation runner networks: the I/O half of
//! [`slipway_core::isolation::EgressPlan`].
//!
//! Each operation's runner gets a network namespace `/run/netns/<name>`
//! with one veth link to the host: host end `slw<i>` holds the gateway
//! address (where the operation's own runner API listens), the runner end
//! is `eth0` inside the namespace. `<i>` numbers the link's /30 inside the
//! server's pool (`serve --runner-network`, default [`DEFAULT_POOL`]);
//! creating the link `slw<i>` is the atomic claim of that number, so
//! several servers on one host never share a subnet. Routes inside the
//! namespace and the nftables table `inet slw<i>` on the host carry the
//! policy; both go with [`RunnerNetwork::remove`]. Once the container has
//! joined it, the namespace's name is dropped
//! ([`RunnerNetwork::release_name`]): the namespace and its link then end
//! with the container's last process, whatever happens to the server, and
//! filter tables whose link is gone are swept ([`reap_orphan_tables`], at
//! start and after each operation, off the launch path: `nft` takes ~30 ms).
//! Names of namespaces start with the server's prefix, so [`reap`] removes
//! what a crashed server left before a container joined, without touching
//! another server's runners.

use std::net::Ipv4Addr;
use std::path::Path;

use slipway_core::isolation::{resolv_conf_nameservers, EgressPlan, Ipv4Cidr};

use crate::RunnerError;

/// Default pool of runner link subnets.
pub const DEFAULT_POOL: &str = "10.213.0.0/16";

/// Where the runner networks come from.
#[derive(Debug, Clone)]
pub struct NetworkPool {
    /// Subnets of /30 are taken from here.
    pub pool: Ipv4Cidr,
    /// The host's IPv4 resolvers (from `/etc/resolv.conf`), reachable from
    /// runners on port 53.
    pub resolvers: Vec<Ipv4Addr>,
}

impl NetworkPool {
    /// A pool over `pool` with the resolvers of the host's `/etc/resolv.conf`
    /// (loopback resolvers are left out: a runner cannot reach them).
    pub fn new(pool: Ipv4Cidr) -> NetworkPool {
        let resolvers = std::fs::read_to_string("/etc/resolv.conf")
            .map(|t| resolv_conf_nameservers(&t))
            .unwrap_or_default()
            .into_iter()
            .filter(|r| !r.is_loopback())
            .collect();
        NetworkPool { pool, resolvers }
    }
}

impl Default for NetworkPool {
    fn default() -> Self {
        NetworkPool::new(DEFAULT_POOL.parse().expect("valid default pool"))
    }
}

/// One runner's network; remove it with [`RunnerNetwork::remove`] once its
/// container is gone.
#[derive(Debug, Clone)]
pub struct RunnerNetwork {
    /// Namespace name (under `/run/netns`).
    pub name: String,
    /// Number of the link inside the pool.
    pub index: u32,
    /// Addresses and reachability.
    pub plan: EgressPlan,
}

async fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env("LC_ALL", "C")
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{program} could not be started: {e}"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .await
            .map_err(|e| format!("{program}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn net_err(what: &str, e: String) -> RunnerError {
    RunnerError::Network(format!("{what}: {e}"))
}

impl RunnerNetwork {
    /// The namespace's path, given to the engine as network mode `ns:<path>`.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Host end of the link, also the name of the nftables table.
    pub fn host_if(&self) -> String {
        format!("slw{}", self.index)
    }

    /// Creates namespace `name`, claims a free link in `pool` and sets the
    /// routes for `allowed` CIDRs. The host filter comes with
    /// [`RunnerNetwork::open_api_port`], once the runner API listens.
    ///
    /// Errors: [`RunnerError::Network`] with the failing command's message
    /// (e.g. not root), or when the pool is exhausted.
    pub async fn create(
        name: &str,
        pool: &NetworkPool,
        allowed: &[Ipv4Cidr],
    ) -> Result<RunnerNetwork, RunnerError> {
        enable_forwarding()?;
        let count = pool.pool.subnet_count(30);
        let start = rand::random::<u32>() % count.max(1);
        let mut claimed = None;
        for k in 0..count.min(4096) {
            let i = (start + k) % count;
            let host_if = format!("slw{i}");
            let peer = format!("slw{i}c");
            match run(
                "ip",
                &[
                    "link", "add", &host_if, "type", "veth", "peer", "name", &peer,
                ],
                None,
            )
            .await
            {
                Ok(()) => {
                    claimed = Some(i);
                    break;
                }
                Err(e) if e.contains("File exists") => continue,
                Err(e) => return Err(net_err("creating the runner's network link", e)),
            }
        }
        let index = claimed.ok_or_else(|| {
            RunnerError::Network(format!(
                "no free runner network in {} (every /30 is in use)",
                pool.pool
            ))
        })?;
        let net = RunnerNetwork {
            name: name.to_string(),
            index,
            plan: EgressPlan {
                link: pool.pool.subnet(30, index).expect("index inside the pool"),
                allowed: allowed.to_vec(),
                resolvers: pool.resolvers.clone(),
                api_port: 0,
            },
        };
        if let Err(e) = net.configure().await {
            net.remove().await;
            return Err(e);
        }
        Ok(net)
    }

    async fn configure(&self) -> Result<(), RunnerError> {
        let ns = self.name.as_str();
        let host_if = self.host_if();
        let peer = format!("{host_if}c");
        let prefix = self.plan.link.prefix();
        let gw = format!("{}/{prefix}", self.plan.gateway());
        let me = format!("{}/{prefix}", self.plan.address());
        // A namespace of the same name is a leftover of this operation's
        // earlier attempt: replace it.
        if Path::new(&self.path()).exists() {
            let _ = run("ip", &["netns", "del", ns], None).await;
        }
        let host = format!(
            "netns add {ns}\nlink set {peer} netns {ns}\naddress add {gw} dev {host_if}\nlink set {host_if} up\n"
        );
        run("ip", &["-batch", "-"], Some(&host))
            .await
            .map_err(|e| net_err("setting up the runner's network", e))?;
        let mut inside =
            format!("link set {peer} name eth0\naddress add {me} dev eth0\nlink set eth0 up\nlink set lo up\n");
        for r in self.plan.namespace_routes() {
            inside.push_str(&format!("route add {}\n", r.join(" ")));
        }
        run("ip", &["-n", ns, "-batch", "-"], Some(&inside))
            .await
            .map_err(|e| net_err("setting the runner's routes", e))
    }

    /// Installs the host's filter for this link, opening `port` on the
    /// gateway (the operation's runner API) and nothing else on the host.
    ///
    /// Errors: [`RunnerError::Network`] with nft's message.
    pub async fn open_api_port(&mut self, port: u16) -> Result<(), RunnerError> {
        self.plan.api_port = port;
        let rules = self.plan.nft_ruleset(&self.host_if(), &self.host_if());
        run("nft", &["-f", "-"], Some(&rules))
            .await
            .map_err(|e| net_err("installing the runner's network filter", e))
    }

    /// Installs the host's filter for this link with nothing open on the
    /// host (for sandboxes that have no runner API: VM image customizers).
    ///
    /// Errors: [`RunnerError::Network`] with nft's message.
    pub async fn install_closed_filter(&mut self) -> Result<(), RunnerError> {
        self.open_api_port(0).await
    }

    /// Removes the filter, the link and the namespace like
    /// [`RunnerNetwork::remove`], blocking (for `Drop`).
    pub fn remove_blocking(&self) {
        let host_if = self.host_if();
        for args in [
            vec!["nft", "delete", "table", "inet", host_if.as_str()],
            vec!["ip", "link", "del", host_if.as_str()],
            vec!["ip", "netns", "del", self.name.as_str()],
        ] {
            let _ = std::process::Command::new(args[0])
                .args(&args[1..])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }

    /// Drops the namespace's name once the runner's container has joined
    /// it: the namespace then lives exactly as long as the container's
    /// processes, and with it the link (deleting one end of a veth pair
    /// deletes both), so even a killed server leaves no link behind. Only
    /// the host's filter table outlives it, until [`RunnerNetwork::remove`]
    /// or [`reap_orphan_tables`].
    pub async fn release_name(&self) {
        if let Err(e) = run("ip", &["netns", "del", &self.name], None).await {
            tracing::warn!(namespace = %self.name, error = %e, "could not release the runner's namespace name");
        }
    }

    /// Removes the filter, the link and the namespace (best effort; each
    /// part that is already gone is fine).
    pub async fn remove(&self) {
        let host_if = self.host_if();
        let _ = run("nft", &["delete", "table", "inet", &host_if], None).await;
        let _ = run("ip", &["link", "del", &host_if], None).await;
        let _ = run("ip", &["netns", "del", &self.name], None).await;
    }
}

/// Turns on IPv4 forwarding (runners reach the outside through the host).
fn enable_forwarding() -> Result<(), RunnerError> {
    let path = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    std::fs::write(path, "1").map_err(|e| {
        RunnerError::Network(format!(
            "runner networks need IPv4 forwarding and {path} could not be set: {e} (is the server running as root?)"
        ))
    })
}

/// Namespaces under `/run/netns` whose name starts with `prefix`.
pub fn namespaces_with_prefix(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Removes namespace `name` and what belongs to it: its `eth0` is the peer
/// of a host link `slw<i>`, found by the peer's interface index; the link
/// and the table of the same name go too.
pub async fn reap(name: &str) {
    let host_if = host_link_of(name).await;
    if let Some(h) = &host_if {
        let _ = run("nft", &["delete", "table", "inet", h], None).await;
        let _ = run("ip", &["link", "del", h], None).await;
    }
    let _ = run("ip", &["netns", "del", name], None).await;
}

/// The host link whose peer is `eth0` in namespace `ns`.
async fn host_link_of(ns: &str) -> Option<String> {
    // `ip -o link show eth0` inside prints "2: eth0@if17: …": 17 is the
    // host end's index.
    let out = tokio::process::Command::new("ip")
        .args(["-n", ns, "-o", "link", "show", "eth0"])
        .env("LC_ALL", "C")
        .output()
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let peer: u32 = text.split("@if").nth(1)?.split(':').next()?.parse().ok()?;
    let out = tokio::process::Command::new("ip")
        .args(["-o", "link", "show"])
        .env("LC_ALL", "C")
        .output()
        .await
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let (idx, rest) = l.split_once(": ")?;
        let name = rest.split(['@', ':']).next()?;
        (idx.trim().parse::<u32>().ok()? == peer && name.starts_with("slw"))
            .then(|| name.to_string())
    })
}

/// Deletes nftables tables `inet slw<i>` whose link `slw<i>` no longer
/// exists (left by a server that died between the two).
pub async fn reap_orphan_tables() {
    let Ok(out) = tokio::process::Command::new("nft")
        .args(["list", "tables"])
        .env("LC_ALL", "C")
        .output()
        .await
    else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(table) = line.strip_prefix("table inet ") else {
            continue;
        };
        let table = table.trim();
        // `slw<i>`: a runner's link; `slwb<hex>`: a task run's bridge.
        let ours = table.strip_prefix("slw").is_some_and(|n| {
            let n = n.strip_prefix('b').unwrap_or(n);
            !n.is_empty() && n.bytes().all(|b| b.is_ascii_hexdigit())
        });
        if ours && !Path::new("/sys/class/net").join(table).exists() {
            let _ = run("nft", &["delete", "table", "inet", table], None).await;
        }
    }
}

/// Loads nftables `rules` (a whole table, e.g.
/// [`slipway_core::isolation::run_network_ruleset`]).
///
/// Errors: [`RunnerError::Network`] with nft's message.
pub async fn load_rules(rules: &str) -> Result<(), RunnerError> {
    run("nft", &["-f", "-"], Some(rules))
        .await
        .map_err(|e| net_err("installing a network filter", e))
}

/// Deletes nftables table `inet <table>` (absent is fine).
pub async fn remove_table(table: &str) {
    let _ = run("nft", &["delete", "table", "inet", table], None).await;
}

/// A [`RunnerNetwork`] removed when dropped (a build future dropped by a
/// timeout or cancel takes its network with it).
#[derive(Debug)]
pub struct HeldNetwork(pub RunnerNetwork);

impl Drop for HeldNetwork {
    fn drop(&mut self) {
        self.0.remove_blocking();
    }
}

/// Removes runner namespaces (`slw-…`, any server's) that are older than
/// `min_age` and hold no process. A runner's namespace keeps its name only
/// between its creation and its container's start (seconds), so such a
/// name is a leftover of a server killed in that window.
pub async fn reap_stale_namespaces(min_age: std::time::Duration) {
    for name in namespaces_with_prefix("slw-") {
        let path = Path::new("/run/netns").join(&name);
        let old = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= min_age);
        if !old {
            continue;
        }
        let empty = tokio::process::Command::new("ip")
            .args(["netns", "pids", &name])
            .output()
            .await
            .is_ok_and(|o| o.status.success() && o.stdout.iter().all(u8::is_ascii_whitespace));
        if empty {
            tracing::info!(namespace = %name, "removing a stale runner network");
            reap(&name).await;
        }
    }
}
