//! OpenSSH's `sshd` on 127.0.0.1 (ssh://) with a test key, for catalog
//! tests; `git daemon` (git://) and the smart-HTTP server (http://) are in
//! `slipway_git::test_support`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::free_port;

use slipway_git::test_support::wait_listening;

/// OpenSSH `sshd` on 127.0.0.1 accepting one client key for the current user.
pub struct Sshd {
    pub port: u16,
    /// Private key (OpenSSH format) that the server accepts.
    pub client_key: String,
    child: Child,
}

impl Sshd {
    /// Starts sshd with its files in `dir`.
    pub fn start(dir: &Path) -> Sshd {
        std::fs::create_dir_all(dir).unwrap();
        let keygen = |path: &PathBuf| {
            let st = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(path)
                .status()
                .expect("ssh-keygen (openssh-client)");
            assert!(st.success());
        };
        let host_key = dir.join("host_key");
        let client_key = dir.join("client_key");
        keygen(&host_key);
        keygen(&client_key);
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
        let port = free_port();
        let user = Sshd::user();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nAuthorizedKeysFile {}\n\
                 StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 UsePAM no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\nAllowUsers {user}\n",
                host_key.display(),
                dir.join("sshd.pid").display(),
                dir.join("authorized_keys").display()
            ),
        )
        .unwrap();
        let _ = std::fs::create_dir_all("/run/sshd");
        let mut child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join("sshd.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .expect("/usr/sbin/sshd (openssh-server; scripts/setup-host installs it)");
        wait_listening(port, &mut child, "sshd");
        Sshd {
            port,
            client_key: std::fs::read_to_string(client_key).unwrap(),
            child,
        }
    }

    /// The login user.
    pub fn user() -> String {
        let out = Command::new("id").arg("-un").output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
