//! Test harness: real `slipway serve` processes, real Podman, real git.
//!
//! Needs the runner images from `runner-images/build` (scripts/test builds
//! them first). Fixture runner images under `tests/fixtures/` are built with
//! `podman build` once per test binary.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub mod arm_stand_in;
pub mod entra_stand_in;
pub mod git_servers;
pub mod netns_host;
pub mod registry;
pub mod vm_images;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The static `ade` that `runner-images/build` builds (and copies into the
/// core image).
pub fn static_ade() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
        .join("x86_64-unknown-linux-gnu/release/ade")
}

/// Builds `tests/fixtures/<name>` as `localhost/slipway-test/<name>:latest` (once per process).
pub fn fixture_image(name: &'static str) -> String {
    static BUILT: OnceLock<std::sync::Mutex<Vec<&'static str>>> = OnceLock::new();
    let lock = BUILT.get_or_init(Default::default);
    let mut built = lock.lock().unwrap_or_else(|p| p.into_inner());
    let tag = format!("localhost/slipway-test/{name}:latest");
    if !built.contains(&name) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        let out = Command::new("podman")
            .args(["build", "--quiet", "-t", &tag])
            .arg(&dir)
            .output()
            .expect("podman must be installed (scripts/setup-host)");
        assert!(
            out.status.success(),
            "podman build {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        built.push(name);
    }
    tag
}

/// Calls `f` every 50 ms until it returns `Ok`, for at most `timeout`;
/// then panics naming `what` with the last `Err` (the state last seen).
pub fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(state) => assert!(
                Instant::now() < deadline,
                "{what}: not within {} s; last seen: {state}",
                timeout.as_secs()
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `slipway serve`.
pub struct Server {
    pub data: PathBuf,
    pub port: u16,
    pub base: String,
    child: Option<Child>,
    agent: ureq::Agent,
    /// The bootstrap DevCenter Admin token (user `admin`), sent by [`Server::call`].
    pub admin_token: String,
}

impl Server {
    /// Starts a server on a fresh port with `data` as data directory.
    pub fn start(data: &Path) -> Server {
        Self::start_on(data, free_port())
    }

    /// Starts a server on `port` (used to restart on the same port).
    pub fn start_on(data: &Path, port: u16) -> Server {
        Self::start_with(data, port, &[])
    }

    /// Starts a server on a fresh port that trusts `https`'s private CA
    /// (`serve --ca-file`).
    pub fn start_trusting(
        data: &Path,
        https: &slipway_fetch::test_support::HttpsFileServer,
    ) -> Server {
        let ca = https.ca_file.to_string_lossy().to_string();
        Self::start_with(data, free_port(), &["--ca-file", &ca])
    }

    /// Starts a server on `port` with extra `serve` flags. The folder that
    /// holds `data` (the test's temporary folder, where its git
    /// repositories and local catalogs live) and the repository's
    /// `examples` are the server's `--local-catalog-root`s; runners get
    /// the static `ade` that `runner-images/build` built ([`static_ade`]).
    pub fn start_with(data: &Path, port: u16, extra: &[&str]) -> Server {
        let ade = static_ade().to_string_lossy().into_owned();
        let mut flags = vec!["--runner-ade", ade.as_str()];
        flags.extend_from_slice(extra);
        Self::start_plain(data, port, &flags)
    }

    /// Like [`Server::start_with`] without `--runner-ade`: runners keep
    /// their image's own `ade`. A test server may fetch users' URLs
    /// (tarballs, sources, git remotes, registries) from 127.0.0.1, where
    /// the tests' own servers listen (`--fetch-allowed-cidr 127.0.0.1/32`),
    /// unless `extra` names its own `--fetch-allowed-cidr`; the rest of
    /// loopback stays blocked.
    pub fn start_plain(data: &Path, port: u16, extra: &[&str]) -> Server {
        std::fs::create_dir_all(data).unwrap();
        let root = data.parent().unwrap().to_string_lossy().to_string();
        let examples = repo_root().join("examples").to_string_lossy().to_string();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data.join("server.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(data)
            .args(["--local-catalog-root", &root])
            .args(["--local-catalog-root", &examples])
            .args(if extra.contains(&"--fetch-allowed-cidr") {
                &[][..]
            } else {
                &["--fetch-allowed-cidr", "127.0.0.1/32"][..]
            })
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut s = Server {
            data: data.to_path_buf(),
            port,
            base: format!("http://127.0.0.1:{port}"),
            child: Some(child),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(60))
                .build(),
            admin_token: String::new(),
        };
        s.wait_ready();
        s.admin_token = std::fs::read_to_string(data.join("admin.token"))
            .expect("the server writes admin.token on first start")
            .trim()
            .to_string();
        s
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if self
                .agent
                .get(&format!("{}/healthz", self.base))
                .call()
                .is_ok()
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited with {status}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "server did not answer within 60 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs the `slipway` CLI against this server as the bootstrap admin
    /// (project `demo`); returns exit code, stdout and stderr.
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(args)
            .env("SLIPWAY_SERVER", &self.base)
            .env("SLIPWAY_PROJECT", "demo")
            .env("SLIPWAY_TOKEN_FILE", self.data.join("admin.token"))
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Closes the connections this harness keeps alive to the server (a
    /// new client replaces the old), for a test that counts connections.
    pub fn close_pooled_connections(&mut self) {
        self.agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .build();
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default()
    }

    /// SIGTERMs the server and waits (at most 5 minutes) for it to exit;
    /// its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the server is running");
        let st = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "kill -TERM failed");
        poll(
            "the server to exit after SIGTERM",
            Duration::from_secs(300),
            || {
                child
                    .try_wait()
                    .unwrap()
                    .ok_or_else(|| "still running".to_string())
            },
        )
    }

    /// SIGKILLs the server.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a request as the bootstrap admin; returns status, headers of
    /// interest and JSON (or text) body.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value, Option<String>) {
        self.call_as(&self.admin_token, method, path, body)
    }

    /// Like [`Server::call`] with API token `token` (empty: none).
    pub fn call_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value, Option<String>) {
        if token.is_empty() {
            return self.call_with(method, path, body, &[]);
        }
        let auth = format!("Bearer {token}");
        self.call_with(method, path, body, &[("Authorization", &auth)])
    }

    /// A new API token for `user` (minted by the admin).
    pub fn token_for(&self, user: &str) -> String {
        let (st, v, _) = self.call("POST", "/admin/tokens", Some(json!({ "user": user })));
        assert_eq!(st, 201, "{v}");
        v["token"].as_str().unwrap().to_string()
    }

    /// Assigns `role` to `user` at `scope` (as the admin).
    pub fn assign(&self, user: &str, role: &str, scope: &str) {
        let (st, v, _) = self.call(
            "POST",
            "/admin/roleAssignments",
            Some(json!({"principalId": user, "role": role, "scope": scope})),
        );
        assert_eq!(st, 201, "{v}");
    }

    /// Sends a request with exactly `headers` (no API token unless given)
    /// to `path` on the main listener, or to `path` itself when it is an
    /// `http://` URL (a runner's own API address).
    pub fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value, Option<String>) {
        let url = if path.starts_with("http://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let mut req = self.agent.request(method, &url);
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let res = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        let resp = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = resp.status();
        let loc = resp.header("operation-location").map(str::to_string);
        let text = resp.into_string().unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v, loc)
    }

    /// GET expecting 200; returns JSON.
    pub fn get(&self, path: &str) -> Value {
        let (status, v, _) = self.call("GET", path, None);
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    /// Project `demo`, environment type `Dev` enabled in it, catalog `name` from `source`, synced.
    pub fn setup(&self, catalog: &str, source: Value) {
        self.setup_project();
        // Creating a catalog syncs it.
        let (st, v, _) = self.call("PUT", &format!("/admin/catalogs/{catalog}"), Some(source));
        assert_eq!(st, 201, "{v}");
        assert_eq!(v["syncState"], "Succeeded", "{v}");
    }

    /// Project `demo` with environment type `Dev` enabled in it.
    pub fn setup_project(&self) {
        assert_eq!(
            self.call("PUT", "/admin/projects/demo", Some(json!({}))).0,
            200
        );
        assert_eq!(
            self.call("PUT", "/admin/environmentTypes/Dev", Some(json!({})))
                .0,
            200
        );
        let (st, v, _) = self.call(
            "PUT",
            "/admin/projects/demo/environmentTypes/Dev",
            Some(json!({})),
        );
        assert_eq!(st, 200, "{v}");
    }

    /// PUTs an environment; returns (status, body, operation id).
    pub fn put_env(
        &self,
        name: &str,
        catalog: &str,
        definition: &str,
        params: Value,
    ) -> (u16, Value, Option<String>) {
        let (st, v, loc) = self.call(
            "PUT",
            &format!("/projects/demo/users/me/environments/{name}"),
            Some(json!({
                "environmentType": "Dev",
                "catalogName": catalog,
                "environmentDefinitionName": definition,
                "parameters": params,
            })),
        );
        (
            st,
            v,
            loc.and_then(|l| l.rsplit('/').next().map(str::to_string)),
        )
    }

    /// Waits (bounded) until operation `op` is terminal; returns its status document.
    pub fn wait_op(&self, op: &str) -> Value {
        self.wait_op_as(&self.admin_token, "demo", op)
    }

    /// Like [`Server::wait_op`], polling as `token` in `project`.
    pub fn wait_op_as(&self, token: &str, project: &str, op: &str) -> Value {
        let path = format!("/projects/{project}/operationstatuses/{op}");
        poll(
            &format!("operation {op} to end"),
            Duration::from_secs(300),
            || {
                let (status, v, _) = self.call_as(token, "GET", &path, None);
                assert_eq!(status, 200, "GET {path}: {v}");
                match v["status"].as_str().unwrap_or_default() {
                    "Succeeded" | "Failed" | "Canceled" => Ok(v),
                    st => Err(format!("{st}; server log:\n{}", self.log())),
                }
            },
        )
    }

    /// Waits for operation `op` of environment `env`, asserts it Succeeded
    /// (with its status and log in the failure message) and returns the log.
    pub fn succeeded_log(&self, env: &str, op: &str) -> String {
        let done = self.wait_op(op);
        let log = self.op_log(env, op);
        assert_eq!(done["status"], "Succeeded", "{done}\n{log}");
        log
    }

    /// Waits (bounded) until `cond` holds for the operation's log; returns the log.
    pub fn wait_log(&self, env: &str, op: &str, cond: impl Fn(&str) -> bool) -> String {
        poll("log condition", Duration::from_secs(120), || {
            let log = self.op_log(env, op);
            if cond(&log) {
                Ok(log)
            } else {
                Err(format!("log:\n{log}"))
            }
        })
    }

    /// The operation log as text.
    pub fn op_log(&self, env: &str, op: &str) -> String {
        let (st, v, _) = self.call(
            "GET",
            &format!("/projects/demo/users/me/environments/{env}/operations/{op}/logs"),
            None,
        );
        assert_eq!(st, 200, "{v}");
        v.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string())
    }
}

impl Drop for Server {
    /// Stops the server as `systemctl stop` would (SIGTERM), so a failed
    /// test's VM image build unmounts its image before the test's
    /// temporary folder is removed (a folder with `/dev` bound into it must
    /// never be deleted); SIGKILL after 60 s. Then removes the runners the
    /// stop left running (a restart would adopt them; a dropped test server
    /// has none) and their network namespaces.
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.remove_runners();
    }
}

impl Server {
    /// Removes every container labelled with this server's data folder and
    /// the network namespaces of its runners (`slw-<instance>-…`).
    fn remove_runners(&self) {
        let label = format!("label=dev.slipway.data-dir={}", self.data.display());
        if let Ok(out) = Command::new("podman")
            .args(["ps", "--all", "--quiet", "--filter", &label])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("podman")
                    .args(["rm", "--force", "--time", "0", id])
                    .output();
            }
        }
        let prefix = format!("slw-{}-", slipway_runner::instance_id_for(&self.data));
        for ns in namespaces_named(&prefix) {
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
    }
}

/// Network namespaces (under `/run/netns`) whose name starts with `prefix`.
pub fn namespaces_named(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Waits (bounded) until image task run `id` has ended; returns it.
pub fn wait_run(s: &Server, id: &str) -> Value {
    poll(
        &format!("run {id} to finish"),
        Duration::from_secs(300),
        || {
            let (st, v, _) = s.call("GET", &format!("/imageTasks/runs/{id}"), None);
            assert_eq!(st, 200, "{v}");
            match v["status"].as_str().unwrap_or_default() {
                "Succeeded" | "Failed" | "Canceled" | "Error" | "Timeout" => Ok(v),
                _ => Err(v.to_string()),
            }
        },
    )
}

/// The log of image task run `id` as text.
pub fn run_log(s: &Server, id: &str) -> String {
    let (_, v, _) = s.call("GET", &format!("/imageTasks/runs/{id}/logs"), None);
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

/// A git catalog (in `dir/repo`) with one definition `name` that runs with
/// the `scripted` fixture image, taking `deploy` as its deploy.sh.
pub fn scripted_catalog(dir: &Path, name: &str, deploy: &str) -> Value {
    let image = fixture_image("scripted");
    let manifest = format!("name: {name}\nrunner: {image}\ntemplatePath: template.txt\n");
    let repo = dir.join("repo");
    git_repo(
        &repo,
        &[
            (&format!("Environments/{name}/environment.yaml"), &manifest),
            (&format!("Environments/{name}/template.txt"), "template"),
            (&format!("Environments/{name}/deploy.sh"), deploy),
            (
                &format!("Environments/{name}/delete.sh"),
                "#!/bin/bash\necho deleted\n",
            ),
        ],
    );
    json!({"kind": "git", "uri": format!("file://{}", repo.display()), "branch": "main", "path": "/Environments"})
}

/// Files stored for environments in a data directory: (path, bytes) of every `storage.zip`.
pub fn stored_state_archives(data: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let envs = data.join("blobs/environments");
    for e in std::fs::read_dir(&envs).into_iter().flatten().flatten() {
        let p = e.path().join("files/storage.zip");
        if let Ok(bytes) = std::fs::read(&p) {
            out.push((p, bytes));
        }
    }
    out
}

/// Reads one file out of a zip.
pub fn zip_entry(zip: &[u8], name: &str) -> Option<String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).ok()?;
    let mut f = archive.by_name(name).ok()?;
    let mut s = String::new();
    std::io::Read::read_to_string(&mut f, &mut s).ok()?;
    Some(s)
}

/// Runs `git -C dir args…` (asserting success) and returns its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Creates a git repository at `dir` from `files` (path → content; `.sh` files executable) and commits.
pub fn git_repo(dir: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        if path.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    let git = |args: &[&str]| git(dir, args);
    if !dir.join(".git").exists() {
        git(&["init", "-q", "-b", "main"]);
    }
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "catalog"]);
}

/// One route of `/proc/net/route`: (destination, mask, flags).
pub fn routes(table: &str) -> Vec<(u32, u32, u32)> {
    table
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 || f[0] == "Iface" {
                return None;
            }
            let hex = |s: &str| u32::from_str_radix(s, 16).ok();
            // The kernel prints the network-order bytes as a native u32.
            let addr = |s: &str| hex(s).map(|h| u32::from_be_bytes(h.to_ne_bytes()));
            Some((addr(f[1])?, addr(f[7])?, hex(f[3])?))
        })
        .collect()
}

/// Whether the longest-prefix route to `ip` is a reject (`prohibit`) route.
pub fn rejected(table: &[(u32, u32, u32)], ip: std::net::Ipv4Addr) -> bool {
    const RTF_REJECT: u32 = 0x0200;
    let ip = u32::from(ip);
    let best = table
        .iter()
        .filter(|(dst, mask, _)| ip & mask == *dst)
        .max_by_key(|(_, mask, _)| mask.count_ones())
        .unwrap_or_else(|| panic!("no route at all to {ip}"));
    best.2 & RTF_REJECT != 0
}

/// Writes `head` (request line and headers, without the blank line) and
/// `body` to `sock`, then reads one response: its status, lower-cased head
/// and body.
pub fn exchange(sock: &mut std::net::TcpStream, head: &str, body: &[u8]) -> (u16, String, String) {
    use std::io::{BufRead, Read, Write};
    sock.write_all(format!("{head}\r\n\r\n").as_bytes())
        .unwrap();
    sock.write_all(body).unwrap();
    let mut reader = std::io::BufReader::new(sock.try_clone().unwrap());
    let mut response_head = String::new();
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "connection closed"
        );
        if line == "\r\n" {
            break;
        }
        response_head.push_str(&line.to_ascii_lowercase());
    }
    let status = response_head[9..12].parse().unwrap();
    let length: usize = response_head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |n| n.trim().parse().unwrap());
    let mut response_body = vec![0; length];
    reader.read_exact(&mut response_body).unwrap();
    (
        status,
        response_head,
        String::from_utf8(response_body).unwrap(),
    )
}
