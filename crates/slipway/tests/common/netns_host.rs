//! A host of the test's own: a network namespace `10.214.<n>.2` behind a
//! veth link from this machine (`10.214.<n>.1`), in which a test runs its
//! servers. A runner reaches it only when its environment type allows the
//! link's CIDR (a private range). The namespace, link and servers are
//! removed on drop.

use std::net::Ipv4Addr;
use std::process::{Child, Command};
use std::time::Duration;

/// The namespace and link.
pub struct NetnsHost {
    /// Namespace name (`slwtest-<pid>-<k>`).
    pub ns: String,
    /// The host end of the link.
    link: String,
    /// The namespace's address.
    pub addr: Ipv4Addr,
    servers: Vec<Child>,
}

impl NetnsHost {
    /// Makes namespace number `k` of this test process (distinct `k` per
    /// host a test binary runs at once).
    pub fn start(k: u32) -> NetnsHost {
        let n = (std::process::id() + k * 7) % 250 + 1;
        let ns = format!("slwtest-{}-{k}", std::process::id());
        let link = format!("slwt{n}");
        let sh = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        let _ = Command::new("ip").args(["link", "del", &link]).output();
        sh(&["netns", "add", &ns]);
        let peer = format!("{link}p");
        sh(&["link", "add", &link, "type", "veth", "peer", "name", &peer]);
        sh(&["link", "set", &peer, "netns", &ns]);
        sh(&["address", "add", &format!("10.214.{n}.1/30"), "dev", &link]);
        sh(&["link", "set", &link, "up"]);
        let inside = format!("10.214.{n}.2/30");
        for args in [
            ["address", "add", inside.as_str(), "dev", peer.as_str()].as_slice(),
            &["link", "set", peer.as_str(), "up"],
            &["link", "set", "lo", "up"],
        ] {
            let mut a = vec!["-n", ns.as_str()];
            a.extend_from_slice(args);
            sh(&a);
        }
        NetnsHost {
            addr: format!("10.214.{n}.2").parse().unwrap(),
            ns,
            link,
            servers: Vec::new(),
        }
    }

    /// The link's CIDR (`10.214.<n>.0/30`), for a runner policy's `allowedCidrs`.
    pub fn cidr(&self) -> String {
        format!("{}/30", Ipv4Addr::from(u32::from(self.addr) - 2))
    }

    /// Runs `cmd` inside the namespace (`nsenter --net`, which keeps the
    /// host's /sys for runc) and waits until `port` accepts connections on
    /// the namespace's address. The process is killed on drop.
    pub fn serve(&mut self, program: &str, args: &[&str], port: u16) {
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .arg(program)
            .args(args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        self.servers.push(child);
        let addr = self.addr;
        super::poll("the test host to serve", Duration::from_secs(30), || {
            match std::net::TcpStream::connect((addr, port)) {
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        });
    }
}

impl Drop for NetnsHost {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.link])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}
