//! Test helpers for crates that run git against a real server: `git daemon`
//! on 127.0.0.1 (built with `test-support`, and for this crate's tests).

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Waits until something accepts connections on 127.0.0.1:`port`.
///
/// Panics naming `what` when `child` exits first or after 30 s.
pub fn wait_listening(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("{what} exited with {st}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `git daemon` exporting every repository under a folder as
/// `git://127.0.0.1:<port>/<name>`; killed on drop.
pub struct GitDaemon {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    child: Child,
}

impl GitDaemon {
    /// Starts serving the repositories under `base`. Panics when git's
    /// `git-daemon` cannot start or listen.
    pub fn start(base: &Path) -> GitDaemon {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        // The dashed binary itself: `git daemon` would run it as a child that
        // outlives a kill of the `git` wrapper.
        let exec_path = Command::new("git")
            .arg("--exec-path")
            .output()
            .expect("git --exec-path");
        let exec_path = String::from_utf8_lossy(&exec_path.stdout)
            .trim()
            .to_string();
        let mut child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .arg("--reuseaddr")
            .arg("--export-all")
            .arg(format!("--base-path={}", base.display()))
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon");
        wait_listening(port, &mut child, "git daemon");
        GitDaemon { port, child }
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
