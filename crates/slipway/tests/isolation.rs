//! The attack suite: code other people wrote (catalog scripts run by a
//! runner, acb task files) tries to leave its confinement, driven only
//! through Slipway's public interfaces, and each attempt must fail. No
//! packet is ever sent to an address outside this machine: reachability of
//! the metadata service is asserted on the runner's routes.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::process::Command;
use std::time::Duration;

use common::{
    namespaces_named, poll, rejected, routes, run_log, scripted_catalog, wait_run, Server,
};
use serde_json::{json, Value};

/// Sets the runner policy of project environment type `Dev`.
fn set_runner_policy(s: &Server, policy: Value) {
    let (st, v, _) = s.call(
        "PUT",
        "/admin/projects/demo/environmentTypes/Dev",
        Some(json!({ "runnerPolicy": policy })),
    );
    assert_eq!(st, 200, "{v}");
}

/// Deploys definition `def` of catalog `git` as environment `name`;
/// returns the final operation document and its log.
fn deploy(s: &Server, name: &str, def: &str) -> (Value, String) {
    let (st, v, op) = s.put_env(name, "git", def, json!({}));
    assert_eq!(st, 201, "{v}");
    let op = op.unwrap();
    let done = s.wait_op(&op);
    let log = s.op_log(name, &op);
    (done, log)
}

/// The value of `key=` on its own log line.
fn probe<'a>(log: &'a str, key: &str) -> &'a str {
    log.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no '{key}=' line in the log:\n{log}"))
}

/// A service of the host on every address (as sshd, a database or a
/// registry on 0.0.0.0 would be): it answers `host-service` to anyone.
fn host_service() -> u16 {
    let l = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            let _ = c.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 12\r\n\r\nhost-service");
        }
    });
    port
}

#[test]
fn a_runner_reaches_its_own_runner_api_and_nothing_on_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let registry_port = common::free_port();
    let s = Server::start_with(
        &tmp.path().join("data"),
        common::free_port(),
        &["--registry-port", &registry_port.to_string()],
    );
    let service = host_service();
    let mgmt = s.port;
    let deploy_sh = format!(
        r#"#!/bin/bash
api=${{ADE_HTTP__ENDPOINT#http://}}; api=${{api%%/*}}
gw=${{api%%:*}}
try() {{ if curl -s -o /dev/null --connect-timeout 2 "http://$2/"; then echo "$1=reached"; else echo "$1=refused"; fi; }}
try own-runner-api "$api"
try management-api-loopback 127.0.0.1:{mgmt}
try management-api-gateway "$gw:{mgmt}"
try registry-loopback 127.0.0.1:{registry_port}
try registry-gateway "$gw:{registry_port}"
try host-service-gateway "$gw:{service}"
try gateway-other-port "$gw:$(( ${{api##*:}} + 1 ))"
echo "address=$(hostname -I 2>/dev/null | cut -d' ' -f1)"
echo "gateway=$gw"
echo "--- routes"
cat /proc/net/route
echo "--- end"
"#
    );
    let catalog = scripted_catalog(tmp.path(), "Attacker", &deploy_sh);
    s.setup("git", catalog);
    let (done, log) = deploy(&s, "attack", "Attacker");
    assert_eq!(done["status"], "Succeeded", "{done}\n{log}");
    assert_eq!(probe(&log, "own-runner-api"), "reached", "{log}");
    for target in [
        "management-api-loopback",
        "management-api-gateway",
        "registry-loopback",
        "registry-gateway",
        "host-service-gateway",
        "gateway-other-port",
    ] {
        assert_eq!(probe(&log, target), "refused", "{target}: {log}");
    }
    // The metadata service, the rest of the link-local range, private
    // ranges and other runners' links are `prohibit` routes in the runner's
    // own namespace: a connect fails there, before any packet leaves.
    let table = log
        .split("--- routes")
        .nth(1)
        .and_then(|t| t.split("--- end").next())
        .unwrap();
    let table = routes(table);
    let gateway: Ipv4Addr = probe(&log, "gateway").parse().unwrap();
    let neighbour = Ipv4Addr::from(u32::from(gateway) + 5);
    for ip in [
        "169.254.169.254",
        "169.254.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.0.1",
        "100.64.0.1",
    ] {
        assert!(rejected(&table, ip.parse().unwrap()), "{ip}: {table:?}");
    }
    assert!(
        rejected(&table, neighbour),
        "another runner's link {neighbour}"
    );
    assert!(!rejected(&table, gateway), "its own gateway");
    assert!(
        !rejected(&table, "203.0.113.7".parse().unwrap()),
        "the outside world is routed"
    );
}

#[test]
fn a_private_address_is_reached_only_when_the_environment_type_allows_its_cidr() {
    let tmp = tempfile::tempdir().unwrap();
    // A host of the test's own, serving `reached-test-host` over http.
    let mut host = common::netns_host::NetnsHost::start(0);
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "reached-test-host").unwrap();
    let (bind, root) = (
        host.addr.to_string(),
        site.path().to_string_lossy().to_string(),
    );
    host.serve(
        "python3",
        &[
            "-m",
            "http.server",
            "8080",
            "--bind",
            &bind,
            "--directory",
            &root,
        ],
        8080,
    );
    let s = Server::start(&tmp.path().join("data"));
    let deploy_sh = format!(
        "#!/bin/bash\necho \"answer=$(curl -s --connect-timeout 5 http://{}:8080/ || echo unreachable)\"\n",
        host.addr
    );
    s.setup("git", scripted_catalog(tmp.path(), "Reach", &deploy_sh));

    // By default a private address (here the test's own host) is blocked.
    let (done, log) = deploy(&s, "blocked", "Reach");
    assert_eq!(done["status"], "Succeeded", "{done}\n{log}");
    assert_eq!(probe(&log, "answer"), "unreachable", "{log}");

    // The project environment type opens its CIDR: the runner reaches it.
    let cidr = host.cidr();
    set_runner_policy(&s, json!({ "allowedCidrs": [cidr] }));
    let (st, v, _) = s.call("GET", "/admin/projects/demo/environmentTypes/Dev", None);
    assert_eq!(st, 200);
    assert_eq!(v["runnerPolicy"]["allowedCidrs"], json!([cidr]), "{v}");
    let (done, log) = deploy(&s, "allowed", "Reach");
    assert_eq!(done["status"], "Succeeded", "{done}\n{log}");
    assert_eq!(probe(&log, "answer"), "reached-test-host", "{log}");
}

#[test]
fn runners_are_unprivileged_on_the_host_and_killed_at_their_memory_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let deploy_sh = r#"#!/bin/bash
grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status | tr -d '\t' | tr ':' '='
if mknod /tmp/dev-null c 1 3 2>/dev/null; then echo "mknod=allowed"; else echo "mknod=refused"; fi
echo "root-on-host=$(awk '$1 == 0 {print $2}' /proc/self/uid_map)"
echo "sysfs-entries=$(ls /sys/class/net 2>/dev/null | wc -l)"
if touch /usr/planted 2>/dev/null; then echo "rootfs=writable"; else echo "rootfs=read-only"; fi
if touch /tmp/scratch; then echo "tmp=writable"; fi
if [ "$(cat "$ADE_STORAGE/hog" 2>/dev/null)" = "yes" ]; then
  echo "allocating"
  x=$(head -c 400000000 /dev/zero | tr '\0' x)
  echo "allocated ${#x}"
fi
echo yes > "$ADE_STORAGE/hog"
"#;
    s.setup("git", scripted_catalog(tmp.path(), "Probe", deploy_sh));
    let (done, log) = deploy(&s, "probe", "Probe");
    assert_eq!(done["status"], "Succeeded", "{done}\n{log}");
    // CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID: bits 0,1,3-7.
    assert_eq!(probe(&log, "CapEff"), "00000000000000fb", "{log}");
    assert_eq!(probe(&log, "CapBnd"), "00000000000000fb", "{log}");
    assert_eq!(probe(&log, "NoNewPrivs"), "1", "{log}");
    assert_eq!(probe(&log, "mknod"), "refused", "{log}");
    assert_eq!(probe(&log, "rootfs"), "writable", "{log}");
    // Root in a runner is an unprivileged user on the host (a user
    // namespace of its own), and the host's /sys is not there to read.
    let root_on_host: u32 = probe(&log, "root-on-host").parse().unwrap();
    assert!(
        root_on_host >= 100_000,
        "runner root is host uid {root_on_host}\n{log}"
    );
    assert_eq!(probe(&log, "sysfs-entries"), "0", "{log}");

    // A read-only root keeps /tmp and /ade writable; a runner over its
    // memory limit is killed and its operation says so.
    set_runner_policy(
        &s,
        json!({"maxMemoryMB": 64, "readOnlyRootFilesystem": true}),
    );
    let (done, log) = deploy(&s, "probe", "Probe");
    assert_eq!(probe(&log, "rootfs"), "read-only", "{log}");
    assert_eq!(probe(&log, "tmp"), "writable", "{log}");
    assert_eq!(done["status"], "Failed", "{done}\n{log}");
    assert!(!log.contains("allocated"), "{log}");
    let env = s.get("/projects/demo/users/me/environments/probe");
    assert_eq!(env["error"]["code"], "RunnerOutOfMemory", "{env}\n{log}");
    assert!(
        env["error"]["message"]
            .as_str()
            .unwrap()
            .contains("memory limit of 64 MiB"),
        "{env}"
    );
}

#[test]
fn a_runner_policy_with_a_bad_value_is_refused_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    s.setup_project();
    for (policy, expected) in [
        (
            json!({"allowedCidrs": ["10.0.0.1/8"]}),
            "'10.0.0.1/8' has host bits set",
        ),
        (
            json!({"maxMemoryMB": 1}),
            "property 'runnerPolicy.maxMemoryMB' is 1",
        ),
        (json!({"privileged": true}), "unknown field `privileged`"),
    ] {
        let (st, v, _) = s.call(
            "PUT",
            "/admin/projects/demo/environmentTypes/Dev",
            Some(json!({ "runnerPolicy": policy })),
        );
        assert_eq!(st, 400, "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(expected), "{msg}");
    }
}

#[test]
fn a_task_step_that_asks_for_the_host_is_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let planted = tmp.path().join("host-folder");
    std::fs::create_dir_all(&planted).unwrap();
    let base = "localhost/slipway/runner-core:latest";
    for (step, expected) in [
        (
            format!(
                "cmd: -v {}:/host {base} touch /host/planted",
                planted.display()
            ),
            format!(
                "step 'evil': volume '{}:/host' is not allowed",
                planted.display()
            ),
        ),
        (
            format!("cmd: --privileged {base} true"),
            "step 'evil': --privileged is not allowed".to_string(),
        ),
        (
            format!("cmd: {base} true\n    privileged: true"),
            "step 'evil': --privileged is not allowed".to_string(),
        ),
        (
            format!("cmd: --network host {base} true"),
            "step 'evil': --network 'host' is not allowed".to_string(),
        ),
        (
            format!("cmd: --cap-add SYS_ADMIN {base} true"),
            "cmd flag '--cap-add' is not supported".to_string(),
        ),
        (
            format!("cmd: --device /dev/sda {base} true"),
            "cmd flag '--device' is not supported".to_string(),
        ),
        (
            // Passing for a runner: a later server would treat it as one.
            format!("cmd: -l dev.slipway.operation=x {base} true"),
            "step 'evil': --label 'dev.slipway.operation' is not allowed".to_string(),
        ),
    ] {
        let task = format!("steps:\n  - id: evil\n    {step}\n");
        let (st, run, _) = s.call(
            "POST",
            "/imageTasks/runs",
            Some(json!({ "encodedTask": task })),
        );
        let message = if st == 202 {
            let id = run["runId"].as_str().unwrap();
            let done = wait_run(&s, id);
            assert_eq!(done["status"], "Failed", "{task}\n{done}");
            let log = run_log(&s, id);
            assert!(
                !log.contains("Launching container"),
                "nothing may start: {log}"
            );
            format!("{done}\n{log}")
        } else {
            assert_eq!(st, 400, "{task}\n{run}");
            run.to_string()
        };
        assert!(message.contains(&expected), "{task}\n{message}");
    }
    assert!(
        !planted.join("planted").exists(),
        "the host folder was written"
    );
}

#[test]
fn the_embedded_registry_refuses_anonymous_push_pull_and_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let (st, v, _) = s.call("GET", "/imageTasks/registry", None);
    assert_eq!(st, 200, "{v}");
    let reg = v["loginServer"].as_str().unwrap().to_string();
    let status = |method: &str, path: &str, auth: Option<&str>| -> u16 {
        let mut req = ureq::request(method, &format!("http://{reg}{path}"));
        if let Some(a) = auth {
            req = req.set("Authorization", a);
        }
        match req.call() {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => panic!("{method} {path}: {e}"),
        }
    };
    let digest = format!("sha256:{}", "0".repeat(64));
    for (method, path) in [
        ("GET", "/v2/"),
        ("GET", "/v2/_catalog"),
        ("POST", "/v2/base/blobs/uploads/"),
        ("PUT", "/v2/base/manifests/latest"),
        ("GET", "/v2/base/manifests/latest"),
        ("DELETE", &*format!("/v2/base/manifests/{digest}")),
    ] {
        assert_eq!(status(method, path, None), 401, "anonymous {method} {path}");
    }
    // A wrong password is refused too; the account from `slipway registry
    // login` is let in.
    use base64::Engine as _;
    let basic = |user: &str, pass: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    };
    assert_eq!(status("GET", "/v2/", Some(&basic("slipway", "guess"))), 401);
    let (code, out, err) = s.cli(&["-o", "json", "registry", "login"]);
    assert_eq!(code, 0, "{out}{err}");
    let login: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(login["loginServer"], reg.as_str());
    let auth = basic(
        login["username"].as_str().unwrap(),
        login["password"].as_str().unwrap(),
    );
    assert_eq!(status("GET", "/v2/", Some(&auth)), 200);
    // Plain `registry login` prints the password alone, for --password-stdin.
    let (code, out, err) = s.cli(&["registry", "login"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), login["password"].as_str().unwrap());
    assert!(err.contains("--password-stdin"), "{err}");
}

/// Names of the engine's containers (all states) whose name starts with `prefix`.
fn containers_named(prefix: &str) -> Vec<String> {
    let out = Command::new("podman")
        .args(["ps", "-a", "--format", "{{.Names}}"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_task_run_cut_by_a_server_kill_leaves_no_container_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = Server::start(&data);
    let task = "steps:\n  - id: long\n    cmd: --entrypoint sleep localhost/slipway/runner-core:latest 600\n";
    let (st, run, _) = s.call(
        "POST",
        "/imageTasks/runs",
        Some(json!({ "encodedTask": task })),
    );
    assert_eq!(st, 202, "{run}");
    let id = run["runId"].as_str().unwrap().to_string();
    let instance = slipway_runner::instance_id_for(&data);
    let prefix = format!("slw-{instance}-{id}-");
    poll("the step container", Duration::from_secs(120), || {
        let found = containers_named(&prefix);
        if found.is_empty() {
            Err("no container yet".to_string())
        } else {
            Ok(found)
        }
    });
    let port = s.port;
    s.kill();
    let s = Server::start_on(&data, port);
    let (_, v, _) = s.call("GET", &format!("/imageTasks/runs/{id}"), None);
    assert_eq!(v["status"], "Error", "{v}");
    assert_eq!(containers_named(&prefix), Vec::<String>::new());
}

#[test]
fn a_task_step_is_an_unprivileged_host_user_and_reaches_other_steps_but_not_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let service = host_service();
    let base = "localhost/slipway/runner-core:latest";
    // The engine's DNS answers on the run network's gateway, i.e. the host.
    let task = format!(
        r#"steps:
  - id: web
    cmd: --entrypoint sleep {base} 60
    detach: true
  - id: probe
    cmd: --entrypoint bash {base} -c 'gw=$(awk "/^nameserver/ {{print \$2; exit}}" /etc/resolv.conf); getent hosts web >/dev/null && echo "peer=resolved"; if curl -s -o /dev/null --connect-timeout 2 "http://$gw:{service}/"; then echo "host-service=reached"; else echo "host-service=refused"; fi; echo "root-on-host=$(awk "\$1 == 0 {{print \$2}}" /proc/self/uid_map)"; echo from-probe > /workspace/shared && echo "workspace=writable"'
  - id: reader
    cmd: --entrypoint bash {base} -c 'echo "read=$(cat /workspace/shared)"'
    when: [probe]
"#
    );
    let (st, run, _) = s.call(
        "POST",
        "/imageTasks/runs",
        Some(json!({ "encodedTask": task })),
    );
    assert_eq!(st, 202, "{run}");
    let id = run["runId"].as_str().unwrap();
    let done = wait_run(&s, id);
    let log = run_log(&s, id);
    assert_eq!(done["status"], "Succeeded", "{done}\n{log}");
    assert!(log.contains("peer=resolved"), "{log}");
    assert!(log.contains("host-service=refused"), "{log}");
    // Root in a step is a host user of the run's own (not host root, not a
    // runner's); the run's steps share it, and the server's files with it.
    let root_on_host: u32 = probe(&log, "root-on-host").parse().unwrap();
    assert!(
        root_on_host >= 0xC000_0000,
        "step root is host uid {root_on_host}\n{log}"
    );
    assert_eq!(probe(&log, "workspace"), "writable", "{log}");
    assert_eq!(probe(&log, "read"), "from-probe", "{log}");
}

/// `CapEff` of a step's output line `CapEff:\t<hex>` as a number.
fn cap_eff(log: &str, step_marker: &str) -> u64 {
    let line = log
        .lines()
        .find(|l| l.contains(step_marker))
        .unwrap_or_else(|| panic!("no {step_marker} line in {log}"));
    let hex = line.rsplit(['\t', ' ']).next().unwrap();
    u64::from_str_radix(hex.trim(), 16).unwrap()
}

#[test]
fn step_permissions_are_granted_per_task_by_an_admin_audited_and_never_by_a_task_file() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let cache = tmp.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let cache = cache.canonicalize().unwrap();
    let base = "localhost/slipway/runner-core:latest";
    let task_file = format!(
        "steps:\n  - id: cache\n    cmd: -v {c}:/cache --entrypoint sh {base} -c 'echo written > /cache/out; ln -s /etc /cache/link'\n  - id: priv\n    cmd: --privileged --entrypoint sh {base} -c 'echo PRIV $(grep CapEff /proc/self/status)'\n  - id: confined\n    cmd: --entrypoint sh {base} -c 'echo CONFINED $(grep CapEff /proc/self/status)'\n",
        c = cache.display()
    );
    let put = |permissions: Option<Value>| {
        let mut body = json!({ "encodedTask": task_file });
        if let Some(p) = permissions {
            body["stepPermissions"] = p;
        }
        let (st, v, _) = s.call("PUT", "/imageTasks/tasks/granted", Some(body));
        assert!(st == 200 || st == 201, "{v}");
        v
    };
    let run = || {
        let (st, v, _) = s.call("POST", "/imageTasks/tasks/granted/runs", Some(json!({})));
        assert_eq!(st, 202, "{v}");
        let id = v["runId"].as_str().unwrap().to_string();
        (wait_run(&s, &id), run_log(&s, &id))
    };

    // No grant: refused before anything starts, naming the step.
    put(None);
    let (done, log) = run();
    assert_eq!(done["status"], "Failed", "{done}\n{log}");
    assert!(
        format!("{done}{log}").contains(&format!(
            "step 'cache': volume '{}:/cache' is not allowed",
            cache.display()
        )),
        "{done}\n{log}"
    );
    assert!(!cache.join("out").exists(), "the host folder was written");

    // A bad grant names the field.
    let (st, v, _) = s.call(
        "PUT",
        "/imageTasks/tasks/granted",
        Some(json!({ "encodedTask": task_file, "stepPermissions": {"hostPaths": ["/"]} })),
    );
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("property 'stepPermissions.hostPaths[0]' is '/'"),
        "{v}"
    );

    // Granted by the admin: the mount and the privileged step run, and say so.
    let shown = put(Some(json!({
        "privileged": true,
        "hostPaths": [cache.display().to_string()]
    })));
    assert_eq!(shown["stepPermissions"]["privileged"], true, "{shown}");
    let (done, log) = run();
    assert_eq!(done["status"], "Succeeded", "{done}\n{log}");
    assert_eq!(
        std::fs::read_to_string(cache.join("out")).unwrap(),
        "written\n"
    );
    assert!(
        log.contains("Step ID: priv runs with privileged: granted by the task's stepPermissions"),
        "{log}"
    );
    let (privileged, confined) = (cap_eff(&log, "PRIV "), cap_eff(&log, "CONFINED "));
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    assert!(privileged & CAP_SYS_ADMIN != 0, "{log}");
    assert!(confined & CAP_SYS_ADMIN == 0, "{log}");

    // A link a step planted beneath the granted folder leads nowhere.
    let escape = format!(
        "steps:\n  - id: follow\n    cmd: -v {c}/link:/host --entrypoint sh {base} -c 'echo escaped > /host/planted'\n",
        c = cache.display()
    );
    let (st, v, _) = s.call(
        "PUT",
        "/imageTasks/tasks/granted",
        Some(json!({ "encodedTask": escape, "stepPermissions": {"hostPaths": [cache.display().to_string()]} })),
    );
    assert!(st == 200, "{v}");
    let (done, log) = run();
    assert_eq!(done["status"], "Failed", "{done}\n{log}");
    assert!(
        format!("{done}{log}").contains("step 'follow': volume '/etc:/host' is not allowed"),
        "{done}\n{log}"
    );
    assert!(!std::path::Path::new("/etc/planted").exists());

    // A quick run of the same task file gets no grant.
    let (st, v, _) = s.call(
        "POST",
        "/imageTasks/runs",
        Some(json!({ "encodedTask": task_file })),
    );
    let message = if st == 202 {
        let id = v["runId"].as_str().unwrap();
        format!("{}{}", wait_run(&s, id), run_log(&s, id))
    } else {
        v.to_string()
    };
    assert!(message.contains("step 'cache': volume"), "{message}");

    // Withdrawn; every change is an audit event naming who and what.
    put(None);
    let (st, a, _) = s.call("GET", "/audit?user=admin", None);
    assert_eq!(st, 200, "{a}");
    let changes: Vec<&str> = a["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "imageTask.stepPermissions")
        .map(|e| e["result"].as_str().unwrap())
        .collect();
    let granted = format!("privileged, hostPaths={}", cache.display());
    let narrowed = format!("hostPaths={}", cache.display());
    // Newest first.
    assert_eq!(
        changes,
        vec!["none", narrowed.as_str(), granted.as_str()],
        "{a}"
    );
}

#[test]
fn the_spare_runner_network_of_a_killed_server_is_removed_at_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = Server::start(&data);
    let prefix = format!("slw-{}-spare-", slipway_runner::instance_id_for(&data));
    let one_spare = |what: &str, not: &[String]| {
        poll(what, Duration::from_secs(60), || {
            let found = namespaces_named(&prefix);
            if found.len() == 1 && !not.contains(&found[0]) {
                Ok(found)
            } else {
                Err(format!("{found:?}"))
            }
        })
    };
    let first = one_spare("the spare runner network", &[]);
    let port = s.port;
    s.kill();
    assert_eq!(namespaces_named(&prefix), first, "a SIGKILL leaves it");
    let s = Server::start_on(&data, port);
    // The restarted server reaps the old spare and makes a new one: never two.
    one_spare("the old spare gone and a new one made", &first);
    drop(s);
}
