//! A real OCI distribution registry (Debian's `docker-registry`) on
//! 127.0.0.1, optionally behind htpasswd Basic auth.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::free_port;
use slipway_git::test_support::wait_listening;

/// A running `docker-registry serve`; killed on drop.
pub struct Registry {
    /// `127.0.0.1:<port>`.
    pub host: String,
    child: Child,
    dir: PathBuf,
}

impl Registry {
    /// Starts a registry storing under `dir`; with `user`, every request
    /// needs Basic auth with that `(name, password)`.
    pub fn start(dir: &Path, user: Option<(&str, &str)>) -> Registry {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        );
        if let Some((name, password)) = user {
            let out = Command::new("htpasswd")
                .args(["-Bbn", name, password])
                .output()
                .expect("htpasswd (apache2-utils) must be installed (scripts/setup-host)");
            assert!(out.status.success());
            std::fs::write(dir.join("htpasswd"), &out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: slipway-test\n    path: {}\n",
                dir.join("htpasswd").display()
            ));
        }
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("registry.log")).unwrap())
            .spawn()
            .expect("docker-registry must be installed (scripts/setup-host)");
        wait_listening(port, &mut child, "docker-registry");
        Registry {
            host: format!("127.0.0.1:{port}"),
            child,
            dir: dir.to_path_buf(),
        }
    }

    /// The registry's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    /// `podman push` of local image `local` to `<host>/<repo>` with `creds`
    /// (`user:password`) when given.
    pub fn push(&self, local: &str, repo: &str, creds: Option<&str>) -> String {
        let target = format!("{}/{repo}", self.host);
        let mut cmd = Command::new("podman");
        cmd.args(["push", "--quiet", "--tls-verify=false"]);
        if let Some(c) = creds {
            cmd.args(["--creds", c]);
        }
        let out = cmd.args([local, &target]).output().unwrap();
        assert!(
            out.status.success(),
            "podman push {target}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        target
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
