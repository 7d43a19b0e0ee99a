//! The one confinement policy for every container Slipway starts: runners
//! of ADE operations and steps of image task runs. Pure: it says *what* the
//! engine layer (`slipway_runner::engine`) and the per-operation network
//! (`slipway_runner::netns`) must apply; they only carry it out.
//!
//! The policy, in one place:
//! - **Capabilities**: every capability is dropped but [`KEPT_CAPABILITIES`]
//!   (each with the reason it is kept); `no-new-privileges` is always set,
//!   so setuid binaries cannot regain what was dropped.
//! - **Limits**: memory, CPUs and process ids per container; defaults in
//!   [`RunnerPolicy`], overridable per project environment type.
//! - **Network** (runners): each operation gets a network namespace of its
//!   own with one veth link to the host ([`EgressPlan`]). Inside it, the
//!   default route leads out through the host (NAT), and every address in
//!   [`BLOCKED_RANGES`] is a `prohibit` route, so a connect fails in the
//!   runner's own kernel routing before any packet leaves. More specific
//!   routes re-open the operation's own runner API (the gateway), the
//!   host's DNS resolvers (port 53 only) and the CIDRs the project
//!   environment type allows. The host filters the same way (nftables,
//!   [`EgressPlan::nft_ruleset`]): from the runner's link only the runner
//!   API port of its own gateway is open on the host, forwarded traffic to
//!   blocked ranges is dropped, and nothing may open a connection into a
//!   runner. Runners get no IPv6 address, so no IPv6 destination (ULA,
//!   link-local or global) is reachable.
//! - **Mounts** (task steps): only the run's workspace and named volumes;
//!   host paths, `--privileged` and host namespaces are refused at plan
//!   time ([`refuse_unconfined_step`]).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Capabilities a confined container keeps, with the reason; every other
/// capability (NET_RAW, NET_ADMIN, SYS_ADMIN, MKNOD, SYS_CHROOT,
/// AUDIT_WRITE, SETPCAP, SETFCAP, NET_BIND_SERVICE, …) is dropped.
pub const KEPT_CAPABILITIES: &[(&str, &str)] = &[
    (
        "CHOWN",
        "tar, unzip and package tools restore file owners in /ade and /tmp",
    ),
    (
        "DAC_OVERRIDE",
        "root in the runner writes files other users own (state in /ade/storage)",
    ),
    (
        "FOWNER",
        "chmod and utime on files the runner unpacks (provider plugins)",
    ),
    ("FSETID", "copying tool binaries keeps their mode bits"),
    (
        "KILL",
        "the core entrypoint stops the deploy script's process group on cancel",
    ),
    (
        "SETGID",
        "scripts may drop to an unprivileged user (setpriv, su)",
    ),
    (
        "SETUID",
        "scripts may drop to an unprivileged user (setpriv, su)",
    ),
];

/// Default memory limit of a runner, in MiB.
pub const DEFAULT_MEMORY_MB: u64 = 2048;
/// Default CPU limit of a runner, in CPUs.
pub const DEFAULT_CPUS: f64 = 2.0;
/// Default process-id limit of a runner.
pub const DEFAULT_PIDS: u64 = 1024;

/// Destinations no runner or step may reach unless its project environment
/// type allows a CIDR inside them: `(range, what it is)`.
pub const BLOCKED_RANGES: &[(&str, &str)] = &[
    ("0.0.0.0/8", "'this network' (RFC 1122)"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("100.64.0.0/10", "shared address space (RFC 6598)"),
    ("127.0.0.0/8", "loopback"),
    (
        "169.254.0.0/16",
        "link-local, incl. the cloud metadata service 169.254.169.254",
    ),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("198.18.0.0/15", "benchmarking (RFC 2544)"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved and broadcast"),
];

/// An IPv4 network `a.b.c.d/n` whose host bits are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Cidr {
    /// `addr/prefix`, with the host bits cleared.
    ///
    /// Errors: `prefix > 32`.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Ipv4Cidr, PolicyError> {
        if prefix > 32 {
            return Err(PolicyError::PrefixTooLong(prefix));
        }
        Ok(Ipv4Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        })
    }

    /// First address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// Prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    /// The `index`-th subnet of `/prefix` inside this network, or `None`
    /// when there are fewer.
    pub fn subnet(&self, prefix: u8, index: u32) -> Option<Ipv4Cidr> {
        if prefix < self.prefix || prefix > 32 {
            return None;
        }
        let bits = u32::from(prefix - self.prefix);
        if bits < 32 && u64::from(index) >= 1u64 << bits {
            return None;
        }
        let size = if prefix == 32 {
            1
        } else {
            1u32 << (32 - prefix)
        };
        let base = u32::from(self.addr).checked_add(index.checked_mul(size)?)?;
        Ipv4Cidr::new(Ipv4Addr::from(base), prefix).ok()
    }

    /// How many `/prefix` subnets fit inside.
    pub fn subnet_count(&self, prefix: u8) -> u32 {
        if prefix < self.prefix || prefix > 32 {
            return 0;
        }
        let bits = u32::from(prefix - self.prefix);
        if bits >= 32 {
            u32::MAX
        } else {
            1 << bits
        }
    }

    /// The `n`-th address (0 = the network address).
    pub fn host(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr).wrapping_add(n))
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl FromStr for Ipv4Cidr {
    type Err = PolicyError;

    /// Parses `a.b.c.d/n` (or a bare address, meaning `/32`); the host bits
    /// must be zero, so a typo such as `10.1.2.3/16` is not silently widened.
    fn from_str(s: &str) -> Result<Ipv4Cidr, PolicyError> {
        let not_a_network = || PolicyError::NotANetwork {
            value: crate::echo::truncate(s),
        };
        let (a, p) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr = a.parse().map_err(|_| not_a_network())?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(not_a_network)?;
        let cidr = Ipv4Cidr::new(addr, prefix)?;
        if cidr.addr != addr {
            return Err(PolicyError::HostBitsSet {
                value: s.to_string(),
                network: cidr,
            });
        }
        Ok(cidr)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Ipv4Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The blocked ranges as networks.
pub fn blocked_ranges() -> Vec<Ipv4Cidr> {
    BLOCKED_RANGES
        .iter()
        .map(|(r, _)| r.parse().expect("BLOCKED_RANGES are valid networks"))
        .collect()
}

/// Why the server itself may not connect to `ip` for a URL a user named
/// (task contexts and alias files, VM image sources, scripts and files),
/// or `None` when it may. Refused: IPv4 addresses in [`BLOCKED_RANGES`]
/// (loopback, the metadata service, private networks…) outside every
/// network in `allowed` (the operator's `serve --fetch-allowed-cidr`),
/// IPv4-mapped IPv6 addresses likewise, and IPv6 addresses outside global
/// unicast (`2000::/3`) or inside 6to4 (`2002::/16`, which embeds an IPv4
/// address). The answer reads "`<ip>` is `<what the range is>`".
pub fn fetch_refusal(ip: IpAddr, allowed: &[Ipv4Cidr]) -> Option<String> {
    let v4 = match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4,
            None => {
                let first = v6.segments()[0];
                return if first & 0xE000 != 0x2000 {
                    Some(format!(
                        "{ip} is not a global unicast IPv6 address (2000::/3)"
                    ))
                } else if first == 0x2002 {
                    Some(format!("{ip} is a 6to4 address (2002::/16)"))
                } else {
                    None
                };
            }
        },
    };
    if allowed.iter().any(|c| c.contains(v4)) {
        return None;
    }
    BLOCKED_RANGES
        .iter()
        .zip(blocked_ranges())
        .find(|(_, range)| range.contains(v4))
        .map(|((range, what), _)| format!("{v4} is {what}, {range}"))
}

/// The addresses of `resolved` (a URL's host, resolved) the server may
/// connect to for a URL a user named: those [`fetch_refusal`] allows with
/// `allowed`, and exactly the sockets in `sockets` (a service of
/// Slipway's own, such as the embedded registry on loopback).
///
/// Errors: when every address is refused, why the first one is, and how
/// an operator opens a network (`serve --fetch-allowed-cidr`). An empty
/// `resolved` is no error (the caller's lookup found nothing).
pub fn reachable(
    resolved: Vec<SocketAddr>,
    allowed: &[Ipv4Cidr],
    sockets: &[SocketAddr],
) -> Result<Vec<SocketAddr>, String> {
    let why = |a: &SocketAddr| {
        if sockets.contains(a) {
            None
        } else {
            fetch_refusal(a.ip(), allowed)
        }
    };
    let (ok, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
        resolved.into_iter().partition(|a| why(a).is_none());
    match refused.first().and_then(why) {
        Some(reason) if ok.is_empty() => Err(format!(
            "{reason}: Slipway does not fetch URLs users name from there (an operator opens a network with serve --fetch-allowed-cidr)"
        )),
        _ => Ok(ok),
    }
}

/// What a project environment type sets about its runners (the
/// `runnerPolicy` property); every field is optional and falls back to the
/// default. JSON: `{"maxMemoryMB": 2048, "maxCpus": 2, "maxPids": 1024,
/// "readOnlyRootFilesystem": false, "allowedCidrs": ["203.0.113.0/24"]}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunnerPolicy {
    /// Memory limit in MiB (default [`DEFAULT_MEMORY_MB`]; at least 16).
    #[serde(rename = "maxMemoryMB", skip_serializing_if = "Option::is_none")]
    pub max_memory_mb: Option<u64>,
    /// CPU limit in CPUs, fractions allowed (default [`DEFAULT_CPUS`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cpus: Option<f64>,
    /// Process-id limit (default [`DEFAULT_PIDS`]; at least 16).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_pids: Option<u64>,
    /// Mount the image's root filesystem read-only, with `/ade`, `/tmp` and
    /// `/root` writable (default false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
    /// Networks inside [`BLOCKED_RANGES`] the runners may reach anyway
    /// (on-premises targets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub allowed_cidrs: Vec<Ipv4Cidr>,
}

impl RunnerPolicy {
    /// Parses and checks the `runnerPolicy` property.
    ///
    /// Errors name the property, the value and what was expected.
    pub fn from_json(field: &str, v: &serde_json::Value) -> Result<RunnerPolicy, PolicyError> {
        let p: RunnerPolicy =
            serde_json::from_value(v.clone()).map_err(|e| PolicyError::Malformed {
                property: field.to_string(),
                reason: e.to_string(),
            })?;
        p.validate(field)?;
        Ok(p)
    }

    /// Checks the bounds of every set field.
    pub fn validate(&self, field: &str) -> Result<(), PolicyError> {
        let out_of_range =
            |name: &str, value: String, expected: &'static str| PolicyError::OutOfRange {
                property: format!("{field}.{name}"),
                value,
                expected,
            };
        if let Some(m) = self.max_memory_mb.filter(|m| *m < 16) {
            return Err(out_of_range(
                "maxMemoryMB",
                m.to_string(),
                "at least 16 (MiB)",
            ));
        }
        if let Some(c) = self
            .max_cpus
            .filter(|c| !c.is_finite() || *c < 0.01 || *c > 1024.0)
        {
            return Err(out_of_range(
                "maxCpus",
                c.to_string(),
                "a number of CPUs between 0.01 and 1024",
            ));
        }
        if let Some(p) = self.max_pids.filter(|p| *p < 16) {
            return Err(out_of_range("maxPids", p.to_string(), "at least 16"));
        }
        Ok(())
    }

    /// The container settings this policy resolves to.
    pub fn confinement(&self) -> Confinement {
        Confinement {
            memory_bytes: self.max_memory_mb.unwrap_or(DEFAULT_MEMORY_MB) as i64 * 1024 * 1024,
            nano_cpus: (self.max_cpus.unwrap_or(DEFAULT_CPUS) * 1e9) as i64,
            pids_limit: self.max_pids.unwrap_or(DEFAULT_PIDS) as i64,
            read_only_root: self.read_only_root_filesystem.unwrap_or(false),
        }
    }
}

/// The limits of one confined container (what the engine applies besides
/// the fixed part of the policy: [`KEPT_CAPABILITIES`] and
/// `no-new-privileges`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Confinement {
    /// Memory limit in bytes (swap included: no swap beyond it).
    pub memory_bytes: i64,
    /// CPU limit in billionths of a CPU.
    pub nano_cpus: i64,
    /// Process-id limit.
    pub pids_limit: i64,
    /// Read-only root filesystem with writable tmpfs [`WRITABLE_PATHS`].
    pub read_only_root: bool,
}

impl Default for Confinement {
    fn default() -> Self {
        RunnerPolicy::default().confinement()
    }
}

/// Writable paths (tmpfs) of a container whose root filesystem is read-only.
pub const WRITABLE_PATHS: &[&str] = &["/ade", "/tmp", "/root", "/run"];

/// How many user ids a container with a user namespace of its own has
/// (0–65535 inside, as most images expect).
pub const USER_NAMESPACE_SIZE: u32 = 65_536;

/// The host user ids task runs map their steps' users to: each run takes
/// a block of [`USER_NAMESPACE_SIZE`] ([`UserNamespace::for_run`]). Above
/// the `containers` sub-id range that `scripts/setup-host` gives Podman
/// for runners (2^30 ids from 2147483647, ending just below this), so a
/// run's ids are never a runner's; no account or host file owns them.
pub const RUN_USER_IDS: std::ops::Range<u32> = 0xC000_0000..0xFFFF_0000;

/// The host user ids VM image builds map their customizers' users to
/// (chroot executor): each build takes a block of [`USER_NAMESPACE_SIZE`]
/// ([`build_user_base`]). Between the build VMs' ids ([`BUILD_VM_UIDS`])
/// and Podman's `containers` sub-id range, so a build's ids are never a
/// runner's, a task run's or another build's at the same time (one draw
/// in 3,583); no account or host file owns them.
pub const BUILD_USER_IDS: std::ops::Range<u32> = 0x7200_0000..0x7FFF_0000;

/// The first host id of the [`BUILD_USER_IDS`] block for a build whose
/// random draw is `draw`: customizer root is that host id.
pub fn build_user_base(draw: u64) -> u32 {
    id_block(&BUILD_USER_IDS, draw)
}

/// The first id of block `draw mod n` of the `n` whole
/// [`USER_NAMESPACE_SIZE`] blocks in `range`.
fn id_block(range: &std::ops::Range<u32>, draw: u64) -> u32 {
    let blocks = u64::from((range.end - range.start) / USER_NAMESPACE_SIZE);
    // The block number is below `blocks`, which fits in u32.
    range.start + (draw % blocks) as u32 * USER_NAMESPACE_SIZE
}

/// The user namespace of a container Slipway starts (Podman's `UsernsMode`).
///
/// With one of its own, root in the container — and whatever escaped it —
/// is an unprivileged user on the host, and the kept capabilities
/// ([`KEPT_CAPABILITIES`]) hold only over the container's own namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserNamespace {
    /// The host's: container root is host root (with the kept capabilities
    /// only). Only for task steps whose task a DevCenter Admin granted
    /// [`StepPermissions`] (host folders, the host's network and privileged
    /// steps need the host's ids).
    Host,
    /// A range of its own that Podman picks from the `containers` entries of
    /// `/etc/subuid` and `/etc/subgid` (`auto`): runners. A runner joins a
    /// network namespace Slipway made (owned by the host's user namespace),
    /// where the kernel refuses it a `sysfs` mount and the network sysctls:
    /// it gets an empty read-only `/sys` ([`OWN_USER_NAMESPACE_SYS`]) and
    /// the engine sets no default sysctls. The size is fixed: without one,
    /// Podman 4.3 sizes the range by mounting a scratch layer of the image
    /// while it holds its container store, which deadlocks its API service
    /// when another container is being mounted at the same time (seen under
    /// `tests/contention.rs`).
    Auto,
    /// Container ids 0–65535 are host ids `host_base`… (one of
    /// [`RUN_USER_IDS`]): every step of a task run shares one, so they share
    /// the run's `/workspace`, which the server hands over to `host_base`
    /// before the first step.
    Mapped {
        /// The host id container root is.
        host_base: u32,
    },
}

impl UserNamespace {
    /// The block of [`RUN_USER_IDS`] for a run whose random draw is `draw`.
    pub fn for_run(draw: u64) -> UserNamespace {
        UserNamespace::Mapped {
            host_base: id_block(&RUN_USER_IDS, draw),
        }
    }

    /// The engine's `UsernsMode` (`None`: the host's).
    pub fn engine_mode(&self) -> Option<String> {
        let n = USER_NAMESPACE_SIZE;
        match self {
            UserNamespace::Host => None,
            UserNamespace::Auto => Some(format!("auto:size={n}")),
            UserNamespace::Mapped { host_base: b } => Some(format!(
                "auto:size={n},uidmapping=0:{b}:{n},gidmapping=0:{b}:{n}"
            )),
        }
    }

    /// The host id root in the container is (`None`: host root).
    pub fn host_root(&self) -> Option<u32> {
        match self {
            UserNamespace::Mapped { host_base } => Some(*host_base),
            _ => None,
        }
    }
}

/// The tmpfs a runner (a user namespace of its own in a network namespace
/// Slipway made) gets at `/sys` (its cgroup stays mounted at
/// `/sys/fs/cgroup`).
pub const OWN_USER_NAMESPACE_SYS: (&str, &str) = ("/sys", "ro,nosuid,nodev,noexec,size=64k");

/// The network of one runner: a point-to-point link between the host
/// (`gateway`) and the runner's namespace (`address`), and where the
/// runner may go from it.
#[derive(Debug, Clone, PartialEq)]
pub struct EgressPlan {
    /// The link's network (a /30).
    pub link: Ipv4Cidr,
    /// CIDRs inside the blocked ranges that stay reachable (the project
    /// environment type's `allowedCidrs`).
    pub allowed: Vec<Ipv4Cidr>,
    /// The host's DNS resolvers, reachable on port 53 only.
    pub resolvers: Vec<Ipv4Addr>,
    /// Port of the operation's runner API on the gateway; 0 = none (a VM
    /// image build's network opens nothing on the host).
    pub api_port: u16,
}

impl EgressPlan {
    /// The host end of the link: the runner API and the default route.
    pub fn gateway(&self) -> Ipv4Addr {
        self.link.host(1)
    }

    /// The runner's address.
    pub fn address(&self) -> Ipv4Addr {
        self.link.host(2)
    }

    /// `ip route` arguments to add inside the runner's namespace, after
    /// the link's own connected route: the default route, a `prohibit`
    /// route per blocked range, and gateway routes for the allowed CIDRs
    /// and resolvers (more specific, so they win).
    pub fn namespace_routes(&self) -> Vec<Vec<String>> {
        let gw = self.gateway().to_string();
        let mut routes = vec![vec!["default".into(), "via".into(), gw.clone()]];
        for r in blocked_ranges() {
            routes.push(vec!["prohibit".into(), r.to_string()]);
        }
        let opened = self.allowed.iter().copied().chain(
            self.resolvers
                .iter()
                .map(|r| Ipv4Cidr::new(*r, 32).expect("/32")),
        );
        for c in opened {
            routes.push(vec![c.to_string(), "via".into(), gw.clone()]);
        }
        routes
    }

    /// The host's nftables table for this runner's link `host_if` (load
    /// with `nft -f -`; re-loading replaces it). The chains run before the
    /// usual filter priority and only ever match `host_if`, so several
    /// runners (and other servers' runners) never touch each other's rules.
    pub fn nft_ruleset(&self, table: &str, host_if: &str) -> String {
        let gw = self.gateway();
        let me = self.address();
        let blocked = set(blocked_ranges().iter().map(Ipv4Cidr::to_string));
        let mut forward_allow = String::new();
        if !self.allowed.is_empty() {
            forward_allow.push_str(&format!(
                "    iifname \"{host_if}\" ip daddr {} accept\n",
                set(self.allowed.iter().map(Ipv4Cidr::to_string))
            ));
        }
        if !self.resolvers.is_empty() {
            let r = set(self.resolvers.iter().map(Ipv4Addr::to_string));
            forward_allow.push_str(&format!(
                "    iifname \"{host_if}\" ip daddr {r} udp dport 53 accept\n    iifname \"{host_if}\" ip daddr {r} tcp dport 53 accept\n"
            ));
        }
        format!(
            "table inet {table}\ndelete table inet {table}\ntable inet {table} {{\n  chain input {{\n    type filter hook input priority -10; policy accept;\n    iifname \"{host_if}\" ct state established,related accept\n{api}    iifname \"{host_if}\" drop\n  }}\n  chain forward {{\n    type filter hook forward priority -10; policy accept;\n    oifname \"{host_if}\" ct state established,related accept\n    oifname \"{host_if}\" drop\n    iifname \"{host_if}\" ip saddr != {me} drop\n    iifname \"{host_if}\" meta nfproto ipv6 drop\n{forward_allow}    iifname \"{host_if}\" ip daddr {blocked} drop\n  }}\n  chain postrouting {{\n    type nat hook postrouting priority 100; policy accept;\n    ip saddr {me} oifname != \"{host_if}\" masquerade\n  }}\n}}\n",
            api = if self.api_port == 0 {
                String::new()
            } else {
                format!(
                    "    iifname \"{host_if}\" ip saddr {me} ip daddr {gw} tcp dport {} accept\n",
                    self.api_port
                )
            },
        )
    }
}

/// The host's nftables table for a task run's bridge network `bridge`
/// whose gateway is `gateway` (load with `nft -f -`): steps reach each
/// other on the bridge, the engine's DNS on the gateway (port 53) and the
/// outside world; not the host's services, not [`BLOCKED_RANGES`], not
/// other runs or runners, no IPv6. Connections into the run are refused
/// except to ports the task publishes (`-p`, which the engine DNATs).
pub fn run_network_ruleset(table: &str, bridge: &str, gateway: Ipv4Addr) -> String {
    let blocked = set(blocked_ranges().iter().map(Ipv4Cidr::to_string));
    format!(
        "table inet {table}\ndelete table inet {table}\ntable inet {table} {{\n  chain input {{\n    type filter hook input priority -10; policy accept;\n    iifname \"{bridge}\" ct state established,related accept\n    iifname \"{bridge}\" ip daddr {gateway} udp dport 53 accept\n    iifname \"{bridge}\" ip daddr {gateway} tcp dport 53 accept\n    iifname \"{bridge}\" drop\n  }}\n  chain forward {{\n    type filter hook forward priority -10; policy accept;\n    oifname \"{bridge}\" ct state established,related accept\n    oifname \"{bridge}\" ct status dnat accept\n    oifname \"{bridge}\" drop\n    iifname \"{bridge}\" meta nfproto ipv6 drop\n    iifname \"{bridge}\" ip daddr {blocked} drop\n  }}\n}}\n"
    )
}

fn set(items: impl Iterator<Item = String>) -> String {
    format!("{{ {} }}", items.collect::<Vec<_>>().join(", "))
}

/// The prefix that runs a program in network namespace `netns` (a path
/// under `/run/netns`): `nsenter --net=<netns> --`, which enters it and
/// execs the program, so the child is the program itself (kill-on-drop
/// and the death signal reach it). Empty without a namespace.
pub fn in_network(netns: Option<&str>) -> Vec<String> {
    match netns {
        Some(ns) => vec!["nsenter".into(), format!("--net={ns}"), "--".into()],
        None => Vec::new(),
    }
}

/// qemu's seccomp sandbox for build VMs (`-sandbox`): a guest that broke
/// out into qemu could not call obsolete system calls, change privileges,
/// spawn processes or change resource limits and scheduling. A build VM's
/// qemu also runs in the build's network ([`in_network`]): its user
/// network turns the guest's connections into qemu's own, and `10.0.2.2`
/// is qemu's loopback.
pub const BUILD_VM_SANDBOX: &str =
    "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// The user ids a build VM's qemu runs as (uid = gid): a range no
/// distribution or Podman sub-id allocation hands out (those start at
/// 100000, 65536 ids each), with no account and no file on the host. Each
/// VM takes its own ([`build_vm_uid`]), so two builds' qemu processes
/// cannot signal or trace each other.
pub const BUILD_VM_UIDS: std::ops::Range<u32> = 0x7100_0000..0x7200_0000;

/// The user id in [`BUILD_VM_UIDS`] for a VM whose random draw is `draw`.
pub fn build_vm_uid(draw: u64) -> u32 {
    let span = u64::from(BUILD_VM_UIDS.end - BUILD_VM_UIDS.start);
    // The remainder is below the span, which fits in u32.
    BUILD_VM_UIDS.start + (draw % span) as u32
}

/// The command prefix that runs a build VM's qemu as user and group `uid`
/// (one of [`BUILD_VM_UIDS`]) with no capabilities (effective, inheritable
/// and bounding sets empty), `no_new_privs`, and only the supplementary
/// groups in `groups` (the group of `/dev/kvm` when qemu uses KVM); the
/// parent-death signal survives the change of user (`setpriv`, util-linux).
/// qemu then opens no host file by path but its firmware and modules: the
/// server opens the disks, the seed and the console log and hands qemu
/// the descriptors (`-add-fd`), so nothing in the server's folders has to
/// be readable by that user. qemu's own `-runas` cannot be used: its
/// seccomp sandbox ([`BUILD_VM_SANDBOX`]) is installed first and refuses
/// the `setuid` that `-runas` makes.
pub fn unprivileged(uid: u32, groups: &[u32]) -> Vec<String> {
    let groups = if groups.is_empty() {
        "--clear-groups".to_string()
    } else {
        let list: Vec<String> = groups.iter().map(u32::to_string).collect();
        format!("--groups={}", list.join(","))
    };
    vec![
        "setpriv".into(),
        format!("--reuid={uid}"),
        format!("--regid={uid}"),
        groups,
        "--inh-caps=-all".into(),
        "--bounding-set=-all".into(),
        "--no-new-privs".into(),
        "--pdeathsig=keep".into(),
        "--".into(),
    ]
}

/// The command that runs one VM image customizer command (`argv`) over a
/// mounted image root `root` in the default (no-boot) tier, as root of
/// the build's user namespace `user_namespace` (a `/proc/<pid>/ns/user`
/// path; its ids 0–65535 are one [`BUILD_USER_IDS`] block, and `root` is
/// the image mounted id-mapped into it, so the image's own root-owned
/// files are the customizer's and nothing of the host's is): bubblewrap
/// (`bwrap`) with its own mount, PID, IPC, UTS and cgroup namespaces, a
/// fresh `/proc` (no host process, so no `/proc/<pid>/root` of the host),
/// a minimal `/dev` (null, zero, full, random, urandom, tty, pts, shm — no
/// disks), an empty `/sys`, the capabilities of [`KEPT_CAPABILITIES`]
/// only, a new session, killed with the server (`--die-with-parent`) and
/// only `env` in its environment. Network: with `netns` (a path under
/// `/run/netns`, a runner-style network with the runner egress policy) the
/// sandbox joins it; without, it has loopback only. `nsenter` enters the
/// network namespace first (it belongs to the host's user namespace,
/// which the build's cannot enter), then the user namespace as its root.
pub fn customizer_command(
    root: &str,
    netns: Option<&str>,
    user_namespace: &str,
    env: &[(&str, &str)],
    argv: &[&str],
) -> Vec<String> {
    let mut cmd = vec!["nsenter".to_string()];
    if let Some(ns) = netns {
        cmd.push(format!("--net={ns}"));
    }
    cmd.extend([
        format!("--user={user_namespace}"),
        "--setuid=0".into(),
        "--setgid=0".into(),
        "--".into(),
        "bwrap".into(),
    ]);
    if netns.is_none() {
        cmd.push("--unshare-net".into());
    }
    for a in [
        "--bind",
        root,
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/sys",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "slipway-build",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
    ] {
        cmd.push(a.to_string());
    }
    for (cap, _) in KEPT_CAPABILITIES {
        cmd.extend(["--cap-add".into(), format!("CAP_{cap}")]);
    }
    cmd.push("--clearenv".into());
    for (k, v) in env {
        cmd.extend(["--setenv".into(), k.to_string(), v.to_string()]);
    }
    cmd.extend(["--chdir".into(), "/".into(), "--".into()]);
    cmd.extend(argv.iter().map(|a| a.to_string()));
    cmd
}

/// The IPv4 nameservers of a `resolv.conf` text.
pub fn resolv_conf_nameservers(text: &str) -> Vec<Ipv4Addr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse().ok())
        .collect()
}

/// What a task step asks of the engine that the confinement policy rules
/// on: the `cmd` flags and step properties that reach outside the run.
#[derive(Debug, Clone, Default)]
pub struct StepRequest<'a> {
    /// Step id (for the error).
    pub step_id: &'a str,
    /// `privileged: true` or `--privileged`.
    pub privileged: bool,
    /// `network:` / `--network` value.
    pub network: Option<&'a str>,
    /// `-v` / `--volume` values.
    pub volumes: &'a [String],
    /// `-l` / `--label` keys.
    pub label_keys: Vec<&'a str>,
}

/// Label prefixes Slipway keeps for itself: the owner labels by which it
/// finds, re-attaches and removes its containers and networks. A step may
/// not set them (it could pass for another run's or a runner's container).
pub const RESERVED_LABEL_PREFIXES: &[&str] = &["dev.slipway.", "io.slipway."];

/// The exceptions a DevCenter Admin grants the steps of one task (the task
/// resource's `stepPermissions`; never a task file's, never a quick run's).
/// Each is off by default. JSON: `{"privileged": true, "hostNetwork":
/// false, "hostPaths": ["/var/cache/builds"]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepPermissions {
    /// Steps may run `--privileged` (every capability, the host's devices):
    /// docker-in-docker and similar.
    #[serde(default)]
    pub privileged: bool,
    /// Steps may use `--network host` (the host's network namespace and
    /// every service listening on it).
    #[serde(default)]
    pub host_network: bool,
    /// Host folders (absolute, without `.`/`..`, not `/`) that steps may
    /// bind-mount with `-v HOST_PATH:CONTAINER_PATH`: the folder itself or
    /// anything beneath it. Symlinks are resolved on the host before the
    /// check, so a link cannot lead out.
    #[serde(default)]
    pub host_paths: Vec<String>,
}

impl StepPermissions {
    /// Nothing granted.
    pub fn is_empty(&self) -> bool {
        !self.privileged && !self.host_network && self.host_paths.is_empty()
    }

    /// Checks the host paths.
    ///
    /// Errors: `property 'stepPermissions.hostPaths[i]' is '<value>':
    /// expected …`.
    pub fn validate(&self) -> Result<(), PolicyError> {
        for (i, p) in self.host_paths.iter().enumerate() {
            let plain = p.starts_with('/')
                && p != "/"
                && !p.contains(':')
                && p.split('/')
                    .skip(1)
                    .all(|c| !c.is_empty() && c != "." && c != "..");
            if !plain {
                return Err(PolicyError::OutOfRange {
                    property: format!("stepPermissions.hostPaths[{i}]"),
                    value: format!("'{}'", crate::echo::truncate(p)),
                    expected: "an absolute host folder other than '/', without '.', '..', ':' or a trailing '/'",
                });
            }
        }
        Ok(())
    }

    /// What is granted, for logs and the audit trail: e.g. `privileged,
    /// hostNetwork, hostPaths=/a,/b`, or `none`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if self.privileged {
            parts.push("privileged".to_string());
        }
        if self.host_network {
            parts.push("hostNetwork".to_string());
        }
        if !self.host_paths.is_empty() {
            parts.push(format!("hostPaths={}", self.host_paths.join(",")));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }

    /// Whether host path `source` is one of [`Self::host_paths`] or beneath
    /// one, compared by whole components (`/data2` is not beneath `/data`).
    /// The caller resolves symlinks first; `.` and `..` never match.
    pub fn allows_host_path(&self, source: &str) -> bool {
        if source.split('/').any(|c| c == "." || c == "..") {
            return false;
        }
        self.host_paths.iter().any(|allowed| {
            source == allowed
                || source
                    .strip_prefix(allowed.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }
}

/// A runner policy, step permission or network that Slipway refuses.
///
/// Each variant names the property or value and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Not `a.b.c.d/n` or a bare IPv4 address.
    #[error("'{value}': expected an IPv4 network like 203.0.113.0/24")]
    NotANetwork {
        /// The refused text.
        value: String,
    },
    /// `a.b.c.d/n` whose address has bits set beyond the prefix.
    #[error("'{value}' has host bits set: expected the network address {network}")]
    HostBitsSet {
        /// The refused text.
        value: String,
        /// The network the text would denote with its host bits cleared.
        network: Ipv4Cidr,
    },
    /// A prefix length over 32.
    #[error("prefix /{0} is longer than 32 bits")]
    PrefixTooLong(u8),
    /// A property whose JSON does not have the documented shape.
    #[error("property '{property}': {reason}")]
    Malformed {
        /// The property's path, e.g. `runnerPolicy`.
        property: String,
        /// What the decoder said.
        reason: String,
    },
    /// A property whose value is outside its bounds.
    #[error("property '{property}' is {value}: expected {expected}")]
    OutOfRange {
        /// The property's path, e.g. `runnerPolicy.maxPids`.
        property: String,
        /// The refused value as shown (strings quoted).
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
}

/// A step that would leave its confinement (see [`refuse_unconfined_step`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("step '{step}': {what} is not allowed: {reason}")]
pub struct StepRefused {
    /// The step's ID.
    pub step: String,
    /// The refused flag and value, e.g. `--network 'host'`.
    pub what: String,
    /// Why, and what is accepted instead.
    pub reason: String,
}

/// Refuses a step that would leave its confinement: a host bind mount
/// (only named volumes are allowed besides the run's `/workspace`),
/// `--privileged`, or a host or foreign namespace as network — unless the
/// task's [`StepPermissions`] grant that exception (host paths, privileged,
/// host network; another container's or a path's namespace never). Flags
/// that are never supported (`--device`, `--cap-add`, `--security-opt`,
/// `--pid`, `--ipc`, `--userns`, …) are refused by the `cmd` parser itself.
/// Labels under [`RESERVED_LABEL_PREFIXES`] are refused too.
///
/// Errors: [`StepRefused`], shown as `step '<id>': <flag> '<value>' is not
/// allowed: …`.
pub fn refuse_unconfined_step(
    s: &StepRequest<'_>,
    permissions: &StepPermissions,
) -> Result<(), StepRefused> {
    let refused = |what: String, reason: String| StepRefused {
        step: s.step_id.to_string(),
        what,
        reason,
    };
    if s.privileged && !permissions.privileged {
        return Err(refused(
            "--privileged".into(),
            "steps run confined (no extra capabilities, no host devices) unless a DevCenter Admin grants the task stepPermissions.privileged".into(),
        ));
    }
    if let Some(n) = s.network {
        let lower = n.to_ascii_lowercase();
        let host = lower == "host";
        if (host && !permissions.host_network)
            || lower.starts_with("container:")
            || lower.starts_with("ns:")
            || lower == "private"
            || lower.starts_with("slirp4netns")
            || lower.starts_with("pasta")
        {
            return Err(refused(
                format!("--network '{n}'"),
                format!(
                    "steps use their run's network (or a network the task file declares{})",
                    if host {
                        "; a DevCenter Admin may grant the task stepPermissions.hostNetwork"
                    } else {
                        ""
                    }
                ),
            ));
        }
    }
    if let Some(k) = s.label_keys.iter().find(|k| {
        RESERVED_LABEL_PREFIXES
            .iter()
            .any(|p| k.to_ascii_lowercase().starts_with(p))
    }) {
        return Err(refused(
            format!("--label '{k}'"),
            format!(
                "labels under {} are Slipway's own",
                RESERVED_LABEL_PREFIXES.join(", ")
            ),
        ));
    }
    for v in s.volumes {
        let source = v.split(':').next().unwrap_or_default();
        let named = !source.is_empty()
            && source
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric())
            && source
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            && v.contains(':');
        let granted = v.contains(':') && permissions.allows_host_path(source);
        if !named && !granted {
            return Err(refused(
                format!("volume '{v}'"),
                "expected a named volume 'NAME:/path' (host folders cannot be mounted unless a DevCenter Admin grants them in the task's stepPermissions.hostPaths; /workspace is the run's shared folder)".into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customizers_get_their_own_namespaces_and_only_the_kept_capabilities() {
        let userns = "/proc/42/ns/user";
        let c = customizer_command(
            "/mnt/img",
            None,
            userns,
            &[("PATH", "/bin")],
            &["/bin/sh", "-e", "/x"],
        );
        let joined = c.join(" ");
        assert_eq!(
            &c[..6],
            [
                "nsenter",
                "--user=/proc/42/ns/user",
                "--setuid=0",
                "--setgid=0",
                "--",
                "bwrap"
            ]
        );
        assert!(joined.contains("--unshare-net"), "{joined}");
        for flag in [
            "--unshare-pid",
            "--unshare-ipc",
            "--proc /proc",
            "--dev /dev",
            "--tmpfs /sys",
            "--cap-drop ALL",
            "--die-with-parent",
            "--clearenv",
        ] {
            assert!(joined.contains(flag), "{flag} missing: {joined}");
        }
        assert_eq!(
            c.iter().filter(|a| *a == "--cap-add").count(),
            KEPT_CAPABILITIES.len()
        );
        assert!(!joined.contains("SYS_ADMIN") && !joined.contains("SYS_CHROOT"));
        assert!(joined.ends_with("-- /bin/sh -e /x"), "{joined}");
        let n = customizer_command(
            "/mnt/img",
            Some("/run/netns/slwi-1"),
            userns,
            &[],
            &["true"],
        );
        assert_eq!(
            &n[..3],
            [
                "nsenter",
                "--net=/run/netns/slwi-1",
                "--user=/proc/42/ns/user"
            ]
        );
        assert!(!n.contains(&"--unshare-net".to_string()));
    }

    #[test]
    fn user_named_urls_are_not_fetched_from_blocked_ranges_unless_allowed() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for (addr, what) in [
            ("127.0.0.1", "loopback"),
            ("127.0.0.2", "loopback"),
            ("169.254.169.254", "metadata service"),
            ("10.1.2.3", "private"),
            ("192.168.0.1", "private"),
            ("0.0.0.0", "this network"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::1", "not a global unicast"),
            ("fe80::1", "not a global unicast"),
            ("fd00::1", "not a global unicast"),
            ("2002:7f00:1::", "6to4"),
        ] {
            let why = fetch_refusal(ip(addr), &[]).unwrap_or_else(|| panic!("{addr} allowed"));
            assert!(why.contains(what), "{addr}: {why}");
        }
        for addr in ["203.0.113.7", "8.8.8.8", "2001:db8::1", "2a00:1450::1"] {
            assert_eq!(fetch_refusal(ip(addr), &[]), None, "{addr}");
        }
        let allowed: Vec<Ipv4Cidr> = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.20.0.0/16".parse().unwrap(),
        ];
        assert_eq!(fetch_refusal(ip("127.0.0.1"), &allowed), None);
        assert_eq!(fetch_refusal(ip("10.20.3.4"), &allowed), None);
        assert!(fetch_refusal(ip("127.0.0.2"), &allowed).is_some());
        assert!(fetch_refusal(ip("10.21.0.1"), &allowed).is_some());
        assert!(fetch_refusal(ip("169.254.169.254"), &allowed).is_some());
    }

    #[test]
    fn only_allowed_addresses_and_sockets_are_reachable() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let (public, own, other) = (a("203.0.113.7:443"), a("127.0.0.1:5000"), a("127.0.0.1:80"));
        assert_eq!(
            reachable(vec![own, public, other], &[], &[own]),
            Ok(vec![own, public])
        );
        let e = reachable(vec![other, a("[::1]:80")], &[], &[own]).unwrap_err();
        assert!(
            e.starts_with("127.0.0.1 is loopback, 127.0.0.0/8: ")
                && e.contains("--fetch-allowed-cidr"),
            "{e}"
        );
        assert_eq!(reachable(vec![], &[], &[]), Ok(vec![]));
    }

    #[test]
    fn cidrs_parse_strictly() {
        let c: Ipv4Cidr = "10.213.0.0/16".parse().unwrap();
        assert_eq!(c.to_string(), "10.213.0.0/16");
        assert!(c.contains("10.213.255.1".parse().unwrap()));
        assert!(!c.contains("10.214.0.1".parse().unwrap()));
        assert_eq!(
            "10.1.2.3/16".parse::<Ipv4Cidr>().unwrap_err().to_string(),
            "'10.1.2.3/16' has host bits set: expected the network address 10.1.0.0/16"
        );
        assert!("10.0.0.0/33"
            .parse::<Ipv4Cidr>()
            .unwrap_err()
            .to_string()
            .contains("expected an IPv4 network"));
        assert!("fd00::/8".parse::<Ipv4Cidr>().is_err());
        assert_eq!(
            "203.0.113.7".parse::<Ipv4Cidr>().unwrap().to_string(),
            "203.0.113.7/32"
        );
    }

    #[test]
    fn subnets_are_numbered_inside_the_pool() {
        let pool: Ipv4Cidr = "10.213.0.0/16".parse().unwrap();
        assert_eq!(pool.subnet_count(30), 16384);
        assert_eq!(pool.subnet(30, 0).unwrap().to_string(), "10.213.0.0/30");
        assert_eq!(pool.subnet(30, 65).unwrap().to_string(), "10.213.1.4/30");
        assert_eq!(
            pool.subnet(30, 16383).unwrap().to_string(),
            "10.213.255.252/30"
        );
        assert_eq!(pool.subnet(30, 16384), None);
    }

    #[test]
    fn metadata_loopback_and_private_ranges_are_blocked() {
        let blocked = blocked_ranges();
        for ip in [
            "169.254.169.254",
            "127.0.0.1",
            "10.1.2.3",
            "172.20.0.1",
            "192.168.1.1",
            "100.100.100.100",
        ] {
            let ip: Ipv4Addr = ip.parse().unwrap();
            assert!(blocked.iter().any(|b| b.contains(ip)), "{ip}");
        }
        for ip in ["203.0.113.7", "8.8.8.8", "20.50.2.1"] {
            let ip: Ipv4Addr = ip.parse().unwrap();
            assert!(!blocked.iter().any(|b| b.contains(ip)), "{ip}");
        }
    }

    fn plan() -> EgressPlan {
        EgressPlan {
            link: "10.213.0.4/30".parse().unwrap(),
            allowed: vec!["10.99.0.0/24".parse().unwrap()],
            resolvers: vec!["10.255.255.53".parse().unwrap()],
            api_port: 41000,
        }
    }

    #[test]
    fn namespace_routes_prohibit_blocked_ranges_and_reopen_allowed_ones() {
        let p = plan();
        assert_eq!(p.gateway().to_string(), "10.213.0.5");
        assert_eq!(p.address().to_string(), "10.213.0.6");
        let routes: Vec<String> = p.namespace_routes().iter().map(|r| r.join(" ")).collect();
        assert_eq!(routes[0], "default via 10.213.0.5");
        assert!(routes.contains(&"prohibit 169.254.0.0/16".to_string()));
        assert!(routes.contains(&"prohibit 10.0.0.0/8".to_string()));
        assert!(routes.contains(&"10.99.0.0/24 via 10.213.0.5".to_string()));
        assert!(routes.contains(&"10.255.255.53/32 via 10.213.0.5".to_string()));
    }

    #[test]
    fn host_rules_open_only_the_runner_api_and_drop_blocked_forwarding() {
        let rules = plan().nft_ruleset("slw7", "slw7");
        assert!(rules.contains(
            "iifname \"slw7\" ip saddr 10.213.0.6 ip daddr 10.213.0.5 tcp dport 41000 accept"
        ));
        assert!(rules.contains("    iifname \"slw7\" drop\n"));
        assert!(rules.contains("iifname \"slw7\" ip daddr { 10.99.0.0/24 } accept"));
        assert!(rules.contains("169.254.0.0/16"));
        assert!(rules.contains("oifname \"slw7\" drop"));
        // Allowed CIDRs come before the blocked-range drop.
        assert!(rules.find("10.99.0.0/24 } accept").unwrap() < rules.find("0.0.0.0/8").unwrap());
    }

    #[test]
    fn run_networks_open_only_dns_on_the_host() {
        let rules = run_network_ruleset("slwb_ab", "slwbab", "10.89.3.1".parse().unwrap());
        assert!(rules.contains("iifname \"slwbab\" ip daddr 10.89.3.1 udp dport 53 accept"));
        assert!(rules.contains("    iifname \"slwbab\" drop\n"));
        assert!(rules.contains("169.254.0.0/16"));
        assert!(rules.contains("oifname \"slwbab\" ct status dnat accept"));
    }

    #[test]
    fn policy_defaults_and_bounds() {
        let c = RunnerPolicy::default().confinement();
        assert_eq!(c.memory_bytes, 2048 * 1024 * 1024);
        assert_eq!(c.nano_cpus, 2_000_000_000);
        assert_eq!(c.pids_limit, 1024);
        assert!(!c.read_only_root);
        let p = RunnerPolicy::from_json(
            "runnerPolicy",
            &serde_json::json!({"maxMemoryMB": 64, "maxCpus": 0.5, "allowedCidrs": ["10.99.0.0/24"]}),
        )
        .unwrap();
        assert_eq!(p.confinement().memory_bytes, 64 << 20);
        assert_eq!(p.confinement().nano_cpus, 500_000_000);
        let e = RunnerPolicy::from_json("runnerPolicy", &serde_json::json!({"maxMemoryMB": 1}))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "property 'runnerPolicy.maxMemoryMB' is 1: expected at least 16 (MiB)"
        );
        let e = RunnerPolicy::from_json(
            "runnerPolicy",
            &serde_json::json!({"allowedCidrs": ["10.0.0.1/8"]}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("'10.0.0.1/8' has host bits set"), "{e}");
        let e = RunnerPolicy::from_json("runnerPolicy", &serde_json::json!({"memory": 1}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `memory`"), "{e}");
    }

    #[test]
    fn steps_may_not_leave_their_confinement() {
        let none = StepPermissions::default();
        let ok = StepRequest {
            step_id: "s",
            volumes: &["cache:/root/.cache".to_string()],
            network: Some("frontend"),
            ..Default::default()
        };
        refuse_unconfined_step(&ok, &none).unwrap();
        let host = ["/etc:/host".to_string()];
        let e = refuse_unconfined_step(
            &StepRequest {
                step_id: "evil",
                volumes: &host,
                ..Default::default()
            },
            &none,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("step 'evil': volume '/etc:/host' is not allowed"),
            "{e}"
        );
        for v in ["./x:/y", "~/x:/y", "../x:/y", "/:/host:ro", "anon"] {
            let vols = [v.to_string()];
            assert!(refuse_unconfined_step(
                &StepRequest {
                    step_id: "s",
                    volumes: &vols,
                    ..Default::default()
                },
                &none
            )
            .is_err());
        }
        let e = refuse_unconfined_step(
            &StepRequest {
                step_id: "p",
                privileged: true,
                ..Default::default()
            },
            &none,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("step 'p': --privileged is not allowed"), "{e}");
        for k in ["dev.slipway.operation", "IO.Slipway.task-run"] {
            let e = refuse_unconfined_step(
                &StepRequest {
                    step_id: "l",
                    label_keys: vec![k, "org.opencontainers.image.title"],
                    ..Default::default()
                },
                &none,
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains(&format!("--label '{k}' is not allowed")), "{e}");
        }
        refuse_unconfined_step(
            &StepRequest {
                step_id: "l",
                label_keys: vec!["org.opencontainers.image.title", "slipway.mine"],
                ..Default::default()
            },
            &none,
        )
        .unwrap();
        for n in ["host", "HOST", "container:abc", "ns:/proc/1/ns/net"] {
            let e = refuse_unconfined_step(
                &StepRequest {
                    step_id: "n",
                    network: Some(n),
                    ..Default::default()
                },
                &none,
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.contains(&format!("--network '{n}' is not allowed")),
                "{e}"
            );
        }
    }

    #[test]
    fn step_permissions_grant_exactly_what_they_name() {
        let grant = StepPermissions {
            privileged: true,
            host_network: true,
            host_paths: vec!["/srv/cache".into()],
        };
        grant.validate().unwrap();
        let vols = |v: &str| [v.to_string()];
        for v in ["/srv/cache:/c", "/srv/cache/npm:/c:ro"] {
            let volumes = vols(v);
            let req = StepRequest {
                step_id: "s",
                volumes: &volumes,
                privileged: true,
                network: Some("host"),
                ..Default::default()
            };
            refuse_unconfined_step(&req, &grant).unwrap();
            assert!(refuse_unconfined_step(&req, &StepPermissions::default()).is_err());
        }
        for v in [
            "/srv/cache2:/c",
            "/srv:/c",
            "/srv/cache/../../etc:/c",
            "/srv/cache/./x:/c",
            "/srv/cache",
        ] {
            let volumes = vols(v);
            let e = refuse_unconfined_step(
                &StepRequest {
                    step_id: "s",
                    volumes: &volumes,
                    ..Default::default()
                },
                &grant,
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains(&format!("volume '{v}' is not allowed")), "{e}");
        }
        for n in ["container:abc", "ns:/proc/1/ns/net"] {
            assert!(refuse_unconfined_step(
                &StepRequest {
                    step_id: "s",
                    network: Some(n),
                    ..Default::default()
                },
                &grant
            )
            .is_err());
        }
        for (i, bad) in ["/", "relative", "/a/../b", "/a/", "/a:b", "/a//b"]
            .into_iter()
            .enumerate()
        {
            let p = StepPermissions {
                host_paths: vec!["/ok".into(), bad.into()],
                ..Default::default()
            };
            let e = p.validate().unwrap_err().to_string();
            assert!(
                e.starts_with(&format!(
                    "property 'stepPermissions.hostPaths[1]' is '{bad}'"
                )),
                "{i}: {e}"
            );
        }
        assert_eq!(
            grant.summary(),
            "privileged, hostNetwork, hostPaths=/srv/cache"
        );
        assert_eq!(StepPermissions::default().summary(), "none");
    }

    #[test]
    fn nameservers_are_read_from_resolv_conf() {
        let r =
            resolv_conf_nameservers("# x\nnameserver 10.255.255.53\nnameserver ::1\nsearch a\n");
        assert_eq!(r, vec!["10.255.255.53".parse::<Ipv4Addr>().unwrap()]);
    }

    #[test]
    fn a_build_vm_runs_as_an_unprivileged_user_of_its_own() {
        for draw in [0, 1, u64::MAX, u64::from(u32::MAX)] {
            let uid = build_vm_uid(draw);
            assert!(BUILD_VM_UIDS.contains(&uid) && uid >= 100_000, "{uid}");
        }
        assert_ne!(build_vm_uid(7), build_vm_uid(8));
        let c = unprivileged(0x7100_0042, &[]);
        assert_eq!(c[0], "setpriv");
        for flag in [
            "--reuid=1895825474",
            "--regid=1895825474",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--no-new-privs",
            "--pdeathsig=keep",
        ] {
            assert!(c.iter().any(|a| a == flag), "{flag} missing: {c:?}");
        }
        assert_eq!(c.last().map(String::as_str), Some("--"));
        let kvm = unprivileged(0x7100_0042, &[106]);
        assert!(kvm.iter().any(|a| a == "--groups=106"), "{kvm:?}");
        assert!(!kvm.iter().any(|a| a == "--clear-groups"), "{kvm:?}");
    }

    #[test]
    fn runs_get_a_block_of_host_ids_of_their_own_above_podmans() {
        for draw in [0, 1, u64::MAX] {
            let ns = UserNamespace::for_run(draw);
            let base = ns.host_root().unwrap();
            assert!(RUN_USER_IDS.contains(&base), "{base}");
            assert!(
                u64::from(base) + u64::from(USER_NAMESPACE_SIZE) <= u64::from(RUN_USER_IDS.end)
            );
            // Above Podman's `containers` range (setup-host: 2147483647, 2^30 ids).
            assert!(u64::from(base) >= 2_147_483_647 + (1 << 30), "{base}");
        }
        assert_ne!(UserNamespace::for_run(1), UserNamespace::for_run(2));
        for draw in [0, 1, u64::MAX] {
            let base = build_user_base(draw);
            assert!(BUILD_USER_IDS.contains(&base), "{base}");
            assert!(base >= BUILD_VM_UIDS.end, "{base}");
            assert!(base + USER_NAMESPACE_SIZE <= 2_147_483_647, "{base}");
        }
        assert_eq!(UserNamespace::Host.engine_mode(), None);
        assert_eq!(
            UserNamespace::Auto.engine_mode().as_deref(),
            Some("auto:size=65536")
        );
        assert_eq!(
            UserNamespace::Mapped {
                host_base: 0xC000_0000
            }
            .engine_mode()
            .as_deref(),
            Some("auto:size=65536,uidmapping=0:3221225472:65536,gidmapping=0:3221225472:65536")
        );
    }
}
