//! A stand-in for Azure Resource Manager's resource group API (no real
//! Azure can run here): `arm_stand_in.py` over https (on 127.0.0.1 or in a
//! test's network namespace) with a CA of its own, recording every request.
//! Killed on drop.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use slipway_fetch::test_support::TestCertificates;

/// The running stand-in.
pub struct ArmStandIn {
    /// `https://127.0.0.1:<port>`: an identity's `resourceManagerEndpoint`.
    pub base_url: String,
    /// Its CA and certificate (`serve --ca-file` takes `certs.ca_file`).
    pub certs: TestCertificates,
    log: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl ArmStandIn {
    /// Starts the stand-in on 127.0.0.1 and returns once it listens.
    pub fn start() -> ArmStandIn {
        Self::spawn(None, "127.0.0.1")
    }

    /// Starts the stand-in on `host`'s address, port 8443, where runners
    /// reach it when their type allows `host.cidr()`.
    pub fn start_in(host: &super::netns_host::NetnsHost) -> ArmStandIn {
        Self::spawn(Some(&host.ns), &host.addr.to_string())
    }

    fn spawn(ns: Option<&str>, bind: &str) -> ArmStandIn {
        let certs = TestCertificates::for_ip(bind);
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests.jsonl");
        let script = super::repo_root().join("crates/slipway/tests/common/arm_stand_in.py");
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg("python3");
                c
            }
            None => Command::new("python3"),
        };
        let mut child = cmd
            .arg(script)
            .arg(&certs.cert_file)
            .arg(&certs.key_file)
            .arg(&log)
            .arg(bind)
            .arg(if ns.is_some() { "8443" } else { "0" })
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the ARM stand-in (python3)");
        let mut port = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut port)
            .unwrap();
        assert!(!port.trim().is_empty(), "the ARM stand-in did not start");
        ArmStandIn {
            base_url: format!("https://{bind}:{}", port.trim()),
            certs,
            log,
            child,
            _dir: dir,
        }
    }

    /// Every request so far: `{method, path, query, auth, body}`.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for ArmStandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
