//! Governance as users meet it: tokens and roles on every endpoint,
//! credentials developers never see, expiration, cancel, limits and audit.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::registry::Registry;
use common::{fixture_image, git_repo, stored_state_archives, zip_entry, Server};
use serde_json::{json, Value};

/// A git catalog whose definitions run with the `scripted` fixture image,
/// taking deploy.sh from the definition folder.
fn scripted_catalog(dir: &Path, defs: &[(&str, &str)]) -> Value {
    catalog_on_runner(dir, &fixture_image("scripted"), defs)
}

/// A git catalog whose definitions `(name, deploy.sh)` run on `image`.
fn catalog_on_runner(dir: &Path, image: &str, defs: &[(&str, &str)]) -> Value {
    let mut files = Vec::new();
    for (name, deploy) in defs {
        files.push((
            format!("Environments/{name}/environment.yaml"),
            format!("name: {name}\nrunner: {image}\ntemplatePath: template.txt\n"),
        ));
        files.push((format!("Environments/{name}/template.txt"), "t".to_string()));
        files.push((format!("Environments/{name}/deploy.sh"), deploy.to_string()));
        files.push((
            format!("Environments/{name}/delete.sh"),
            "#!/bin/bash\necho deleted\n".to_string(),
        ));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let repo = dir.join("repo");
    git_repo(&repo, &refs);
    json!({"kind": "git", "uri": format!("file://{}", repo.display()), "branch": "main", "path": "/Environments"})
}

/// Fails when any regular file under `dir` contains `secret`.
fn assert_no_file_holds(dir: &Path, secret: &str) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let (path, kind) = (entry.path(), entry.file_type().unwrap());
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{} holds the credential in plain text",
                    path.display()
                );
            }
        }
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    common::poll(what, Duration::from_secs(120), || {
        cond().then_some(()).ok_or_else(String::new)
    })
}

fn put(s: &Server, path: &str, body: Value) {
    let (st, v, _) = s.call("PUT", path, Some(body));
    assert!(st == 200 || st == 201, "PUT {path}: {st} {v}");
}

fn rfc3339_in(d: Duration) -> String {
    (chrono::Utc::now() + chrono::Duration::from_std(d).unwrap())
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn parse_time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap()
        .with_timezone(&chrono::Utc)
}

#[test]
fn authorization_matrix_every_endpoint_every_role_in_and_out_of_scope() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    // A definition whose runner image cannot exist: operations fail at once, no container runs.
    let cat = tmp.path().join("cat/Def");
    std::fs::create_dir_all(&cat).unwrap();
    std::fs::write(
        cat.join("environment.yaml"),
        "name: Def\nrunner: localhost/slipway-test/absent-runner:none\ntemplatePath: main.tf\n",
    )
    .unwrap();
    std::fs::write(cat.join("main.tf"), "").unwrap();
    put(&s, "/admin/environmentTypes/Dev", json!({}));
    for p in ["prj1", "prj2"] {
        put(&s, &format!("/admin/projects/{p}"), json!({}));
        put(
            &s,
            &format!("/admin/projects/{p}/environmentTypes/Dev"),
            json!({}),
        );
    }
    put(
        &s,
        "/admin/catalogs/cat",
        json!({"kind": "local", "uri": tmp.path().join("cat").display().to_string()}),
    );
    s.assign("padmin", "Project Admin", "/projects/prj1");
    s.assign("dev", "Deployment Environments User", "/projects/prj1");
    s.assign("rdr", "Deployment Environments Reader", "/projects/prj1");
    s.assign("owner", "Deployment Environments User", "/projects/prj1");
    // Every environment in both projects belongs to `owner`.
    for p in ["prj1", "prj2"] {
        let (st, v, _) = s.call(
            "PUT",
            &format!("/projects/{p}/users/owner/environments/shared"),
            Some(json!({"environmentType": "Dev", "catalogName": "cat", "environmentDefinitionName": "Def"})),
        );
        assert_eq!(st, 201, "{v}");
    }
    let tokens: Vec<(&str, String)> = vec![
        ("anonymous", String::new()),
        ("norole", s.token_for("norole")),
        ("reader", s.token_for("rdr")),
        ("user", s.token_for("dev")),
        ("padmin", s.token_for("padmin")),
        ("dcadmin", s.admin_token.clone()),
    ];
    let env = |p: &str| format!("/projects/{p}/users/owner/environments/shared");
    // (method, path for project P, body, roles allowed in P = prj1, success status)
    type Row = (
        &'static str,
        String,
        Option<Value>,
        &'static [&'static str],
        u16,
    );
    let readers: &[&str] = &["reader", "user", "padmin", "dcadmin"];
    let env_readers: &[&str] = &["reader", "padmin", "dcadmin"];
    let admins: &[&str] = &["padmin", "dcadmin"];
    let dc: &[&str] = &["dcadmin"];
    let rows = |p: &str, role: &str| -> Vec<Row> {
        vec![
            (
                "PUT",
                format!("/admin/projects/{p}"),
                Some(json!({})),
                admins,
                200,
            ),
            (
                "PUT",
                "/admin/environmentTypes/Dev".into(),
                Some(json!({})),
                dc,
                200,
            ),
            (
                "GET",
                "/admin/environmentTypes".into(),
                None,
                &["norole", "reader", "user", "padmin", "dcadmin"],
                200,
            ),
            (
                "GET",
                format!("/admin/projects/{p}/environmentTypes"),
                None,
                readers,
                200,
            ),
            (
                "GET",
                format!("/admin/projects/{p}/environmentTypes/Dev"),
                None,
                readers,
                200,
            ),
            (
                "PUT",
                format!("/admin/projects/{p}/environmentTypes/Dev"),
                Some(json!({})),
                admins,
                200,
            ),
            (
                "GET",
                format!("/admin/roleAssignments?project={p}"),
                None,
                admins,
                200,
            ),
            (
                "POST",
                "/admin/roleAssignments".into(),
                Some(
                    json!({"principalId": "x", "role": "Deployment Environments Reader", "scope": format!("/projects/{p}")}),
                ),
                admins,
                201,
            ),
            ("GET", "/admin/roleAssignments".into(), None, dc, 200),
            ("GET", "/admin/secrets".into(), None, dc, 200),
            (
                "PUT",
                "/admin/secrets/sec1".into(),
                Some(json!({"kind": "generic", "value": "v"})),
                dc,
                200,
            ),
            ("GET", "/admin/catalogs".into(), None, dc, 200),
            (
                "GET",
                format!("/admin/projects/{p}/catalogs"),
                None,
                admins,
                200,
            ),
            ("GET", format!("/audit?project={p}"), None, admins, 200),
            ("GET", "/audit".into(), None, dc, 200),
            (
                "POST",
                "/admin/tokens".into(),
                Some(json!({"user": "someone-else"})),
                dc,
                201,
            ),
            ("GET", format!("/projects/{p}/catalogs"), None, readers, 200),
            (
                "GET",
                format!("/projects/{p}/catalogs/cat"),
                None,
                readers,
                200,
            ),
            (
                "GET",
                format!("/projects/{p}/environmentDefinitions"),
                None,
                readers,
                200,
            ),
            (
                "GET",
                format!("/projects/{p}/catalogs/cat/environmentDefinitions/Def"),
                None,
                readers,
                200,
            ),
            (
                "GET",
                format!("/projects/{p}/environmentTypes"),
                None,
                readers,
                200,
            ),
            (
                "GET",
                format!("/projects/{p}/environmentTypes/Dev"),
                None,
                readers,
                200,
            ),
            (
                "GET",
                format!("/projects/{p}/environments"),
                None,
                readers,
                200,
            ),
            ("GET", env(p), None, env_readers, 200),
            (
                "GET",
                format!("{}/operations", env(p)),
                None,
                env_readers,
                200,
            ),
            ("GET", format!("{}/outputs", env(p)), None, env_readers, 200),
            ("GET", format!("{}/actions", env(p)), None, env_readers, 200),
            (
                "PATCH",
                env(p),
                Some(json!({"expirationDate": null})),
                admins,
                200,
            ),
            (
                "PUT",
                format!("/projects/{p}/users/me/environments/own-{role}"),
                Some(
                    json!({"environmentType": "Dev", "catalogName": "cat", "environmentDefinitionName": "Def"}),
                ),
                &["user", "padmin", "dcadmin"],
                201,
            ),
        ]
    };
    let mut failures = Vec::new();
    let mut checked = 0;
    for (p, in_scope) in [("prj1", true), ("prj2", false)] {
        for (role, token) in &tokens {
            for (method, path, body, allowed, ok) in rows(p, role) {
                let scoped =
                    path.contains(p) || body.as_ref().is_some_and(|b| b.to_string().contains(p));
                let expected = if *role == "anonymous" {
                    401
                } else if allowed.contains(role) && (in_scope || *role == "dcadmin" || !scoped) {
                    ok
                } else if *role == "user" && in_scope && path.starts_with(&env(p)) {
                    // In the project but no reader of another user's
                    // environment: the same 404 as for a missing one.
                    404
                } else {
                    403
                };
                let (st, v, _) = s.call_as(token, method, &path, body);
                checked += 1;
                if st != expected {
                    failures.push(format!(
                        "{role} {method} {path}: expected {expected}, got {st} {v}"
                    ));
                } else if st == 403 {
                    let m = v["error"]["message"].as_str().unwrap_or_default();
                    if v["error"]["code"] != "AuthorizationFailed" || !m.contains("needs role '") {
                        failures.push(format!(
                            "{role} {method} {path}: 403 without the needed role: {v}"
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} cases wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The owner manages their own environment; a token of another user does not.
    let owner = s.token_for("owner");
    assert_eq!(
        s.call_as(
            &owner,
            "GET",
            "/projects/prj1/users/me/environments/shared",
            None
        )
        .0,
        200
    );
    let (st, v, _) = s.call_as(
        &owner,
        "PATCH",
        "/projects/prj1/users/me/environments/shared",
        Some(json!({"expirationDate": rfc3339_in(Duration::from_secs(3600))})),
    );
    assert_eq!(st, 200, "{v}");
    // A reader sees the environment, so a refused change names the role.
    let (st, v, _) = s.call_as(&tokens[2].1, "DELETE", &env("prj1"), None);
    assert_eq!(st, 403, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'Project Admin' at scope '/projects/prj1'"),
        "{v}"
    );
    // Another user may not read it: the answer is the one for a name that
    // does not exist, so environment names do not leak.
    let (st, v, _) = s.call_as(&tokens[3].1, "DELETE", &env("prj1"), None);
    let missing = "/projects/prj1/users/owner/environments/no-such-env";
    let (st2, v2, _) = s.call_as(&tokens[3].1, "DELETE", missing, None);
    assert_eq!(
        (st, &v["error"]["code"]),
        (404, &v2["error"]["code"]),
        "{v} {v2}"
    );
    assert_eq!(st2, 404, "{v2}");
    // Out of the owner's scope: the same environment name in prj2.
    assert_eq!(
        s.call_as(
            &owner,
            "GET",
            "/projects/prj2/users/me/environments/shared",
            None
        )
        .0,
        403
    );

    // Tokens: revoked and expired ones stop working; a role can be taken away.
    let (st, t, _) = s.call_as(&owner, "POST", "/admin/tokens", Some(json!({"name": "ci"})));
    assert_eq!(st, 201, "{t}");
    let ci = t["token"].as_str().unwrap().to_string();
    assert_eq!(
        s.call_as(&ci, "GET", "/projects/prj1/environments", None).0,
        200
    );
    let listed = s
        .call_as(&owner, "GET", "/admin/tokens", None)
        .1
        .to_string();
    assert!(
        !listed.contains(&ci) && listed.contains(t["id"].as_str().unwrap()),
        "{listed}"
    );
    assert_eq!(
        s.call_as(
            &owner,
            "DELETE",
            &format!("/admin/tokens/{}", t["id"].as_str().unwrap()),
            None
        )
        .0,
        204
    );
    assert_eq!(
        s.call_as(&ci, "GET", "/projects/prj1/environments", None).0,
        401
    );
    let (st, v, _) = s.call(
        "POST",
        "/admin/tokens",
        Some(json!({"user": "owner", "expiresAt": "2020-01-01T00:00:00Z"})),
    );
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'expiresAt'"),
        "{v}"
    );
    // Found by scripts/api-fuzz: an expiry past any representable time
    // dropped the connection (the handler panicked).
    let (st, v, _) = s.call(
        "POST",
        "/admin/tokens",
        Some(json!({"user": "owner", "expiresInDays": 2_147_483_648u64})),
    );
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'expiresInDays' is 2147483648"),
        "{v}"
    );
    let db = std::fs::read(s.data.join("slipway.db")).unwrap();
    let wal = std::fs::read(s.data.join("slipway.db-wal")).unwrap_or_default();
    let secret_part = owner.rsplit('_').next().unwrap();
    for bytes in [&db, &wal] {
        assert!(
            !bytes
                .windows(secret_part.len())
                .any(|w| w == secret_part.as_bytes()),
            "token stored in plain text"
        );
    }

    // Audit: who, what, when, from where, result; filterable by project and user.
    let (st, a, _) = s.call("GET", "/audit?project=prj1&user=dev", None);
    assert_eq!(st, 200, "{a}");
    let events = a["value"].as_array().unwrap();
    let created = events
        .iter()
        .find(|e| e["action"] == "PUT /projects/prj1/users/me/environments/own-user")
        .unwrap_or_else(|| panic!("no audit event of dev's create: {a}"));
    assert_eq!(created["result"], "201");
    assert!(
        created["source"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{created}"
    );
    assert!(
        events.iter().any(|e| e["result"] == "403"),
        "refusals are audited: {a}"
    );
    assert!(
        events
            .iter()
            .all(|e| e["user"] == "dev" && e["project"] == "prj1"),
        "{a}"
    );
    wait_until("an audited operation end", || {
        let (_, all, _) = s.call("GET", "/audit?project=prj1", None);
        all["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "operation.end" && e["result"] == "Failed")
    });
    let later = rfc3339_in(Duration::from_secs(3600));
    assert_eq!(s.get(&format!("/audit?since={later}"))["value"], json!([]));
}

#[test]
fn a_developer_deploys_with_a_credential_they_cannot_read() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = format!(
        "s3cr3t-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    // deploy.sh succeeds only with the credential, prints it (masked in the
    // log) and publishes a sensitive output.
    let deploy = r#"#!/bin/bash
set -e
if [ -z "$ARM_CLIENT_SECRET" ] || [ "$ADE_CLIENT_ID" != "client-123" ]; then
  echo "no credential" >&2
  exit 1
fi
echo "using $ARM_CLIENT_SECRET for $ADE_CLIENT_ID in $ADE_TENANT_ID"
echo "stderr also has $ARM_CLIENT_SECRET" >&2
cat > "$ADE_OUTPUTS" <<EOF
{"outputs": {"endpoint": {"type": "string", "value": "https://app"}, "password": {"type": "string", "value": "pw-only-for-owner", "sensitive": true}}}
EOF
"#;
    let catalog = scripted_catalog(tmp.path(), &[("NeedsCred", deploy)]);
    let s = Server::start(&tmp.path().join("data"));
    put(&s, "/admin/projects/demo", json!({}));
    put(&s, "/admin/environmentTypes/Dev", json!({}));
    put(&s, "/admin/environmentTypes/Bare", json!({}));
    let (st, v, _) = s.call(
        "PUT",
        "/admin/secrets/deployer",
        Some(json!({"kind": "deploymentIdentity", "value": {"clientId": "client-123", "tenantId": "tenant-456", "variables": {"ARM_CLIENT_SECRET": secret}}})),
    );
    assert_eq!(st, 200, "{v}");
    put(
        &s,
        "/admin/projects/demo/environmentTypes/Dev",
        json!({"deploymentIdentity": "deployer"}),
    );
    put(&s, "/admin/projects/demo/environmentTypes/Bare", json!({}));
    put(&s, "/admin/catalogs/cat", catalog);
    s.assign("dana", "Deployment Environments User", "/projects/demo");
    s.assign("rita", "Deployment Environments Reader", "/projects/demo");
    let dana = s.token_for("dana");
    let rita = s.token_for("rita");
    let mut seen = String::new(); // every API answer and CLI output dana and rita got

    let deploy_as = |token: &str, env: &str, env_type: &str| {
        let (st, v, loc) = s.call_as(
            token,
            "PUT",
            &format!("/projects/demo/users/me/environments/{env}"),
            Some(json!({"environmentType": env_type, "catalogName": "cat", "environmentDefinitionName": "NeedsCred"})),
        );
        assert_eq!(st, 201, "{v}");
        let op = loc.unwrap().rsplit('/').next().unwrap().to_string();
        let done = s.wait_op_as(token, "demo", &op);
        (op, done)
    };
    // Without a credential the definition cannot succeed...
    let (_, bare) = deploy_as(&dana, "bare", "Bare");
    assert_eq!(bare["status"], "Failed", "{bare}");
    assert!(
        bare["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no credential"),
        "{bare}"
    );
    // ...through Slipway, with the type's identity, it does.
    let (op, done) = deploy_as(&dana, "app", "Dev");
    let base = "/projects/demo/users/dana/environments/app";
    let log = s
        .call_as(&dana, "GET", &format!("{base}/operations/{op}/logs"), None)
        .1;
    assert_eq!(done["status"], "Succeeded", "{done}\n{log}");
    let log = log.as_str().unwrap().to_string();
    assert!(
        log.contains("using *** for client-123 in tenant-456"),
        "{log}"
    );
    assert!(log.contains("stderr also has ***"), "{log}");
    seen.push_str(&log);

    // Dana cannot read the credential by any route.
    for path in ["/admin/secrets/deployer", "/admin/secrets"] {
        let (st, v, _) = s.call_as(&dana, "GET", path, None);
        assert_eq!(st, 403, "{path}: {v}");
        seen.push_str(&v.to_string());
    }
    for (token, path) in [
        (
            &dana,
            "/admin/projects/demo/environmentTypes/Dev".to_string(),
        ),
        (&dana, base.to_string()),
        (&dana, format!("{base}/operations")),
        (&dana, format!("{base}/outputs")),
        (&rita, format!("{base}/outputs")),
        (&s.admin_token, "/admin/secrets/deployer".to_string()),
    ] {
        let (st, v, _) = s.call_as(token, "GET", &path, None);
        assert_eq!(st, 200, "{path}: {v}");
        seen.push_str(&v.to_string());
    }
    // Sensitive outputs: the owner sees the value, a Reader does not.
    let mine = s.call_as(&dana, "GET", &format!("{base}/outputs"), None).1;
    assert_eq!(
        mine["outputs"]["password"]["value"], "pw-only-for-owner",
        "{mine}"
    );
    let theirs = s.call_as(&rita, "GET", &format!("{base}/outputs"), None).1;
    assert_eq!(
        theirs["outputs"]["password"]["value"],
        Value::Null,
        "{theirs}"
    );
    assert_eq!(theirs["outputs"]["password"]["sensitive"], true);
    assert_eq!(theirs["outputs"]["endpoint"]["value"], "https://app");
    // The CLI shows no more than the API.
    for args in [
        vec!["admin", "secret", "list"],
        vec!["env", "logs", "app", "--project", "demo"],
        vec![
            "admin",
            "project-environment-type",
            "list",
            "--project",
            "demo",
        ],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args(&args)
            .env("SLIPWAY_SERVER", &s.base)
            .env(
                "SLIPWAY_TOKEN",
                if args[0] == "env" {
                    &dana
                } else {
                    &s.admin_token
                },
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        seen.push_str(&String::from_utf8_lossy(&out.stdout));
        seen.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    assert!(seen.contains("using ***"), "the CLI printed the masked log");
    assert!(
        !seen.contains(&secret),
        "the credential leaked into an answer:\n{seen}"
    );
    assert_no_file_holds(&s.data, &secret);
    // A secret in use cannot be deleted.
    let (st, v, _) = s.call("DELETE", "/admin/secrets/deployer", None);
    assert_eq!(st, 409, "{v}");
}

/// Issue 19 item 1: an Entra identity's client secret stays on the server;
/// the runner signs in like an App Service app (`IDENTITY_ENDPOINT` +
/// `IDENTITY_HEADER`, what `az login --identity` and MSAL use) and gets
/// short-lived tokens. A rejected identity fails the operation before its
/// runner starts, even when the runner's sign-in loop would never give up.
#[test]
fn a_runner_gets_tokens_from_its_managed_identity_and_never_the_client_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = "entra-Secret~Vq8x_3Zk.9w";
    let idp = common::entra_stand_in::EntraStandIn::start("tenant-456", "client-123", secret);
    // What MSAL's App Service managed identity sends, twice for ARM (the
    // second from the cache), once for Key Vault; then the whole
    // environment, reversed so the log's masking could not hide a leak.
    let deploy = r#"#!/bin/bash
set -euo pipefail
ask() {
  curl -sS -H "X-IDENTITY-HEADER: $IDENTITY_HEADER" -H "Metadata: true" \
    "$IDENTITY_ENDPOINT?api-version=2019-08-01&resource=$1"
}
arm=$(ask https://management.azure.com/)
again=$(ask https://management.azure.com/)
vault=$(ask https://vault.azure.net)
echo "arm answer: $arm"
wrong=$(curl -sS -H "X-IDENTITY-HEADER: not-this-operations-token" -H "Metadata: true" \
  "$IDENTITY_ENDPOINT?api-version=2019-08-01&resource=https://management.azure.com/")
echo "wrong header answer: $wrong"
env | rev
jq -n --argjson arm "$arm" --argjson again "$again" --argjson vault "$vault" '{outputs: {
  arm: {type: "string", value: $arm.access_token},
  again: {type: "string", value: $again.access_token},
  vault: {type: "string", value: $vault.access_token},
  expiresOn: {type: "string", value: $arm.expires_on},
  clientId: {type: "string", value: $arm.client_id}}}' > "$ADE_OUTPUTS"
"#;
    // The official scripts' sign-in: retry until it works.
    let forever = r#"#!/bin/bash
until curl -fsS -H "X-IDENTITY-HEADER: $IDENTITY_HEADER" "$IDENTITY_ENDPOINT?api-version=2019-08-01&resource=https://management.azure.com/"; do
  sleep 1
done
"#;
    let catalog = scripted_catalog(
        tmp.path(),
        &[("SignsIn", deploy), ("SignsInForever", forever)],
    );
    let s = Server::start(&tmp.path().join("data"));
    put(&s, "/admin/projects/demo", json!({}));
    put(&s, "/admin/environmentTypes/Dev", json!({}));
    put(&s, "/admin/environmentTypes/Broken", json!({}));
    for (name, value) in [("entra", secret), ("entra-wrong", "not-the-secret-at-all")] {
        let (st, v, _) = s.call(
            "PUT",
            &format!("/admin/secrets/{name}"),
            Some(json!({"kind": "deploymentIdentity", "value": {"clientId": "client-123", "tenantId": "tenant-456", "subscriptionId": "sub-1", "clientSecret": value, "authorityHost": idp.authority}})),
        );
        assert_eq!(st, 200, "{v}");
    }
    put(
        &s,
        "/admin/projects/demo/environmentTypes/Dev",
        json!({"deploymentIdentity": "entra"}),
    );
    put(
        &s,
        "/admin/projects/demo/environmentTypes/Broken",
        json!({"deploymentIdentity": "entra-wrong"}),
    );
    put(&s, "/admin/catalogs/cat", catalog);
    s.assign("dana", "Deployment Environments User", "/projects/demo");
    let dana = s.token_for("dana");
    let deploy_as = |env: &str, env_type: &str, definition: &str| {
        let (st, v, loc) = s.call_as(
            &dana,
            "PUT",
            &format!("/projects/demo/users/me/environments/{env}"),
            Some(json!({"environmentType": env_type, "catalogName": "cat", "environmentDefinitionName": definition})),
        );
        assert_eq!(st, 201, "{v}");
        let op = loc.unwrap().rsplit('/').next().unwrap().to_string();
        (op.clone(), s.wait_op_as(&dana, "demo", &op))
    };

    let (op, done) = deploy_as("app", "Dev", "SignsIn");
    let base = "/projects/demo/users/dana/environments/app";
    let log = s
        .call_as(&dana, "GET", &format!("{base}/operations/{op}/logs"), None)
        .1;
    let log = log.as_str().unwrap_or_default().to_string();
    assert_eq!(done["status"], "Succeeded", "{done}\n{log}");
    let outputs = s.call_as(&dana, "GET", &format!("{base}/outputs"), None).1;
    let value = |k: &str| {
        outputs["outputs"][k]["value"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let name = |k: &str| common::entra_stand_in::token_name(&value(k));
    assert!(
        name("arm").starts_with("standin-token-")
            && name("arm").ends_with("-for-https___management_azure_com___default"),
        "{outputs}"
    );
    assert_eq!(
        value("again"),
        value("arm"),
        "a cached token is handed out again"
    );
    assert!(
        name("vault").ends_with("-for-https___vault_azure_net__default"),
        "{outputs}"
    );
    assert_eq!(value("clientId"), "client-123");
    let expires: i64 = value("expiresOn").parse().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(
        expires > now + 3000 && expires <= now + 3600,
        "{expires} vs {now}"
    );
    // The runner had the endpoint, not the secret.
    let reversed = |v: &str| v.chars().rev().collect::<String>();
    assert!(
        log.contains(&reversed("IDENTITY_ENDPOINT=http://")),
        "{log}"
    );
    assert!(log.contains(&reversed("ADE_CLIENT_ID=client-123")), "{log}");
    assert!(
        !log.contains(&reversed(secret)) && !log.contains("***"),
        "{log}"
    );
    // The identity provider saw the sign-in before the runner (ARM's
    // audience, as az uses it), then one request per resource.
    let scopes: Vec<String> = idp
        .seen()
        .iter()
        .map(|r| r.field("scope").unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        scopes,
        [
            "https://management.core.windows.net//.default",
            "https://management.azure.com//.default",
            "https://vault.azure.net/.default"
        ],
        "{:?}",
        idp.seen()
    );
    // The endpoint answers only its own operation's token, in App Service's shape.
    let wrong: serde_json::Value = serde_json::from_str(
        log.lines()
            .find_map(|l| l.strip_prefix("wrong header answer: "))
            .unwrap_or_else(|| panic!("{log}")),
    )
    .unwrap();
    assert_eq!(wrong["statusCode"], 403, "{wrong}");

    // A rejected identity: Failed with ADE's code and the provider's words,
    // although the runner's own loop would retry forever.
    let (_, broken) = deploy_as("broken", "Broken", "SignsInForever");
    assert_eq!(broken["status"], "Failed", "{broken}");
    assert_eq!(
        broken["error"]["code"], "DeploymentIdentitySignInError",
        "{broken}"
    );
    let message = broken["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("invalid_client") && message.contains("AADSTS7000215"),
        "{broken}"
    );
    assert_no_file_holds(&s.data, secret);
}

/// A self-signed RSA certificate made by `openssl` in `dir`: (PKCS#8 key
/// PEM, certificate PEM, certificate DER).
fn openssl_certificate(dir: &std::path::Path, name: &str) -> (String, String, Vec<u8>) {
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.crt"));
    let der = dir.join(format!("{name}.der"));
    let run = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req".as_ref(),
        "-x509".as_ref(),
        "-newkey".as_ref(),
        "rsa:2048".as_ref(),
        "-nodes".as_ref(),
        "-keyout".as_ref(),
        key.as_os_str(),
        "-out".as_ref(),
        cert.as_os_str(),
        "-subj".as_ref(),
        "/CN=slipway-test".as_ref(),
        "-days".as_ref(),
        "2".as_ref(),
    ]);
    run(&[
        "x509".as_ref(),
        "-in".as_ref(),
        cert.as_os_str(),
        "-outform".as_ref(),
        "DER".as_ref(),
        "-out".as_ref(),
        der.as_os_str(),
    ]);
    (
        std::fs::read_to_string(key).unwrap(),
        std::fs::read_to_string(cert).unwrap(),
        std::fs::read(der).unwrap(),
    )
}

/// Issue 19 item 1, certificates: a deployment identity may hold the app
/// registration's certificate instead of a client secret. Slipway signs a
/// fresh client assertion (RS256, `x5t` of the certificate) for each token
/// it mints; the runner signs in through its managed-identity endpoint as
/// before and never sees the key, and a certificate the identity provider
/// does not know fails the deploy with `DeploymentIdentitySignInError`.
/// The same token is served IMDS-shaped at `ARM_MSI_ENDPOINT` (what
/// Terraform's azurerm asks with `ARM_USE_MSI=true`).
#[test]
fn a_certificate_identity_mints_tokens_with_signed_assertions_and_keeps_its_key() {
    use common::entra_stand_in::{Accepts, EntraStandIn};
    let tmp = tempfile::tempdir().unwrap();
    let (key_pem, cert_pem, cert_der) = openssl_certificate(tmp.path(), "registered");
    let (other_key, other_cert, _) = openssl_certificate(tmp.path(), "unknown");
    let idp = EntraStandIn::start_accepting(
        "tenant-456",
        "client-123",
        Accepts::Certificate {
            key_pem: key_pem.clone(),
            cert_der,
        },
    );
    let deploy = r#"#!/bin/bash
set -euo pipefail
arm=$(curl -sS -H "X-IDENTITY-HEADER: $IDENTITY_HEADER" "$IDENTITY_ENDPOINT?api-version=2019-08-01&resource=https://management.azure.com/")
# What Terraform's azurerm asks with ARM_USE_MSI=true (go-azure-sdk's IMDS request).
imds=$(curl -sS -H "Metadata: true" "$ARM_MSI_ENDPOINT?api-version=2018-02-01&resource=https://management.azure.com/")
no_header=$(curl -sS -o /dev/null -w '%{http_code}' "$ARM_MSI_ENDPOINT?api-version=2018-02-01&resource=https://management.azure.com/")
wrong_key=$(curl -sS -o /dev/null -w '%{http_code}' -H "Metadata: true" "${ARM_MSI_ENDPOINT%/imds/*}/imds/not-the-token/token?api-version=2018-02-01&resource=https://management.azure.com/")
env | rev
jq -n --argjson arm "$arm" --argjson imds "$imds" --arg noHeader "$no_header" --arg wrongKey "$wrong_key" '{outputs: {
  arm: {type: "string", value: $arm.access_token},
  imds: {type: "string", value: $imds.access_token},
  imdsExpiresIn: {type: "string", value: $imds.expires_in},
  noHeader: {type: "string", value: $noHeader},
  wrongKey: {type: "string", value: $wrongKey}}}' > "$ADE_OUTPUTS"
"#;
    let catalog = scripted_catalog(tmp.path(), &[("SignsIn", deploy)]);
    let s = Server::start(&tmp.path().join("data"));
    put(&s, "/admin/projects/demo", json!({}));
    for (t, secret, key, cert) in [
        ("Dev", "entra-cert", &key_pem, &cert_pem),
        ("Broken", "entra-unknown-cert", &other_key, &other_cert),
    ] {
        put(&s, &format!("/admin/environmentTypes/{t}"), json!({}));
        let (st, v, _) = s.call(
            "PUT",
            &format!("/admin/secrets/{secret}"),
            Some(json!({"kind": "deploymentIdentity", "value": {"clientId": "client-123", "tenantId": "tenant-456", "subscriptionId": "sub-1", "clientCertificate": format!("{cert}{key}"), "authorityHost": idp.authority}})),
        );
        assert_eq!(st, 200, "{v}");
        put(
            &s,
            &format!("/admin/projects/demo/environmentTypes/{t}"),
            json!({"deploymentIdentity": secret}),
        );
    }
    // A certificate without its key is refused when it is stored.
    let (st, v, _) = s.call(
        "PUT",
        "/admin/secrets/half",
        Some(json!({"kind": "deploymentIdentity", "value": {"clientId": "c", "tenantId": "t", "clientCertificate": cert_pem}})),
    );
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("PRIVATE KEY"),
        "{v}"
    );
    put(&s, "/admin/catalogs/cat", catalog);
    s.assign("dana", "Deployment Environments User", "/projects/demo");
    let dana = s.token_for("dana");
    let deploy_as = |env: &str, env_type: &str| {
        let (st, v, loc) = s.call_as(
            &dana,
            "PUT",
            &format!("/projects/demo/users/me/environments/{env}"),
            Some(json!({"environmentType": env_type, "catalogName": "cat", "environmentDefinitionName": "SignsIn"})),
        );
        assert_eq!(st, 201, "{v}");
        let op = loc.unwrap().rsplit('/').next().unwrap().to_string();
        (op.clone(), s.wait_op_as(&dana, "demo", &op))
    };
    let (op, done) = deploy_as("app", "Dev");
    let base = "/projects/demo/users/dana/environments/app";
    let log = s
        .call_as(&dana, "GET", &format!("{base}/operations/{op}/logs"), None)
        .1;
    let log = log.as_str().unwrap_or_default().to_string();
    assert_eq!(done["status"], "Succeeded", "{done}\n{log}");
    let outputs = s.call_as(&dana, "GET", &format!("{base}/outputs"), None).1;
    let value = |k: &str| outputs["outputs"][k]["value"].as_str().unwrap_or_default();
    assert!(
        common::entra_stand_in::token_name(value("arm"))
            .ends_with("-for-https___management_azure_com___default"),
        "{outputs}"
    );
    // The IMDS-shaped endpoint gives the same identity's token (numbers as
    // strings, as IMDS sends them), needs `Metadata: true` and its own key.
    assert_eq!(value("imds"), value("arm"), "{outputs}");
    assert!(
        value("imdsExpiresIn")
            .parse::<u64>()
            .is_ok_and(|s| s > 3000),
        "{outputs}"
    );
    assert_eq!(
        (value("noHeader"), value("wrongKey")),
        ("400", "403"),
        "{outputs}"
    );
    // Every request carried an assertion (the stand-in checked its
    // signature, thumbprint, audience and lifetime), never a secret.
    let seen = idp.seen();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|r| r.field("client_assertion").is_some() && r.field("client_secret").is_none()),
        "{seen:?}"
    );
    // Neither the runner's environment nor the stored files hold the key.
    let key_line = key_pem.lines().nth(1).unwrap();
    let reversed: String = key_line.chars().rev().collect();
    assert!(!log.contains(key_line) && !log.contains(&reversed), "{log}");
    assert!(
        log.contains(
            &"IDENTITY_ENDPOINT=http://"
                .chars()
                .rev()
                .collect::<String>()
        ),
        "{log}"
    );
    assert_no_file_holds(&s.data, key_line);

    let (_, broken) = deploy_as("broken", "Broken");
    assert_eq!(broken["status"], "Failed", "{broken}");
    assert_eq!(
        broken["error"]["code"], "DeploymentIdentitySignInError",
        "{broken}"
    );
    assert!(
        broken["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("AADSTS700027"),
        "{broken}"
    );
}

/// Issue 19 item 2: on an Azure subscription target, Slipway makes the
/// environment's resource group `<project>-<environment>` (tagged, in the
/// configured region) with the identity's token before the deploy runs,
/// and deletes it (following ARM's asynchronous operation) after a
/// successful delete, as ADE does; a refused group fails the deploy before
/// its runner starts; other targets see no ARM call.
#[test]
fn an_azure_target_gets_its_resource_group_before_deploy_and_loses_it_after_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = "entra-Secret~rg-Zk.9w";
    let idp = common::entra_stand_in::EntraStandIn::start("tenant-456", "client-123", secret);
    let arm = common::arm_stand_in::ArmStandIn::start();
    let deploy = "#!/bin/bash\necho \"deploying into $ADE_RESOURCE_GROUP_NAME\"\n";
    let catalog = scripted_catalog(tmp.path(), &[("InGroup", deploy)]);
    let ca = arm.certs.ca_file.to_string_lossy().to_string();
    let s = Server::start_with(
        &tmp.path().join("data"),
        common::free_port(),
        &["--ca-file", &ca, "--azure-location", "westeurope"],
    );
    put(&s, "/admin/projects/demo", json!({}));
    put(&s, "/admin/environmentTypes/Dev", json!({}));
    put(&s, "/admin/environmentTypes/Local", json!({}));
    let (st, v, _) = s.call(
        "PUT",
        "/admin/secrets/entra",
        Some(json!({"kind": "deploymentIdentity", "value": {"clientId": "client-123", "tenantId": "tenant-456", "clientSecret": secret, "authorityHost": idp.authority, "resourceManagerEndpoint": arm.base_url}})),
    );
    assert_eq!(st, 200, "{v}");
    let subscription = "11111111-2222-3333-4444-555555555555";
    put(
        &s,
        "/admin/projects/demo/environmentTypes/Dev",
        json!({"deploymentIdentity": "entra", "deploymentTargetId": format!("/subscriptions/{subscription}")}),
    );
    put(
        &s,
        "/admin/projects/demo/environmentTypes/Local",
        json!({"deploymentIdentity": "entra"}),
    );
    put(&s, "/admin/catalogs/cat", catalog);
    let env = |name: &str| format!("/projects/demo/users/me/environments/{name}");
    let run = |method: &str, name: &str, body: Option<Value>| {
        let (st, v, loc) = s.call(method, &env(name), body);
        assert!(st == 201 || st == 202, "{method} {name}: {st} {v}");
        let op = loc.unwrap().rsplit('/').next().unwrap().to_string();
        let done = s.wait_op_as(&s.admin_token, "demo", &op);
        let log = s
            .call("GET", &format!("{}/operations/{op}/logs", env(name)), None)
            .1;
        (done, log.as_str().unwrap_or_default().to_string())
    };
    let body = |env_type: &str| {
        Some(
            json!({"environmentType": env_type, "catalogName": "cat", "environmentDefinitionName": "InGroup"}),
        )
    };
    let group = format!("/subscriptions/{subscription}/resourcegroups/demo-app");

    let (done, log) = run("PUT", "app", body("Dev"));
    assert_eq!(done["status"], "Succeeded", "{done}\n{log}");
    assert!(log.contains("deploying into demo-app"), "{log}");
    let seen = arm.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["method"], "PUT");
    assert_eq!(seen[0]["path"], group.as_str());
    assert_eq!(seen[0]["query"], "api-version=2021-04-01");
    assert!(
        common::entra_stand_in::token_name(seen[0]["auth"].as_str().unwrap())
            .starts_with("standin-token-"),
        "{seen:?}"
    );
    let created: Value = serde_json::from_str(seen[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(created["location"], "westeurope");
    assert_eq!(created["tags"]["Project"], "demo");
    assert_eq!(created["tags"]["EnvironmentName"], "app");
    assert_eq!(created["tags"]["EnvironmentType"], "Dev");
    assert_eq!(created["tags"]["CreatedBy"], "admin");
    // The environment answers with the same group.
    let answer = s.get(&env("app"));
    assert_eq!(
        answer["resourceGroupId"],
        format!("/subscriptions/{subscription}/resourceGroups/demo-app"),
        "{answer}"
    );

    // Delete: the runner, then the group, followed until ARM says it is gone.
    let (done, log) = run("DELETE", "app", None);
    assert_eq!(done["status"], "Succeeded", "{done}\n{log}");
    let seen = arm.requests();
    let calls: Vec<String> = seen[1..]
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["method"].as_str().unwrap(),
                r["path"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        calls,
        [
            format!("DELETE {group}"),
            "GET /operationresults/demo-app".to_string(),
            "GET /operationresults/demo-app".to_string()
        ],
        "{seen:?}"
    );
    assert_eq!(s.call("GET", &env("app"), None).0, 404);

    // A group ARM refuses: the deploy fails before its runner starts.
    let (done, log) = run("PUT", "refused", body("Dev"));
    assert_eq!(done["status"], "Failed", "{done}");
    assert_eq!(
        done["error"]["code"], "ResourceGroupCreationFailed",
        "{done}"
    );
    let message = done["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("demo-refused") && message.contains("AuthorizationFailed"),
        "{done}"
    );
    assert!(!log.contains("deploying into"), "{log}");

    // ARM pointing the deletion's follow-up at another host: Slipway does
    // not send the identity's token there; the delete fails and the
    // environment stays.
    let (done, log) = run("PUT", "elsewhere", body("Dev"));
    assert_eq!(done["status"], "Succeeded", "{done}\n{log}");
    let (done, _) = run("DELETE", "elsewhere", None);
    assert_eq!(done["status"], "Failed", "{done}");
    assert_eq!(
        done["error"]["code"], "ResourceGroupDeletionFailed",
        "{done}"
    );
    assert!(
        done["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is not beneath"),
        "{done}"
    );
    assert_eq!(s.call("GET", &env("elsewhere"), None).0, 200);

    // Not an Azure subscription: no ARM call.
    let before = arm.requests().len();
    let (done, log) = run("PUT", "local", body("Local"));
    assert_eq!(done["status"], "Succeeded", "{done}\n{log}");
    assert_eq!(arm.requests().len(), before);
    assert_no_file_holds(&s.data, secret);
}

#[test]
fn expiration_deletes_on_time_across_a_restart_and_actions_can_be_skipped_or_delayed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let catalog = scripted_catalog(tmp.path(), &[("Quick", "#!/bin/bash\necho up\n")]);
    let mut s = Server::start(&data);
    s.setup("cat", catalog);
    for env in ["doomed", "skipped", "delayed"] {
        let (st, v, op) = s.put_env(env, "cat", "Quick", json!({}));
        assert_eq!(st, 201, "{v}");
        s.succeeded_log(env, &op.unwrap());
    }
    let path = |e: &str| format!("/projects/demo/users/me/environments/{e}");
    // A past expiration is refused with the field named.
    let (st, v, _) = s.call(
        "PATCH",
        &path("doomed"),
        Some(json!({"expirationDate": "2001-01-01T00:00:00Z"})),
    );
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'expirationDate'"),
        "{v}"
    );
    let (st, v, _) = s.call("PATCH", &path("doomed"), Some(json!({"parameters": {}})));
    assert_eq!(st, 400, "{v}");

    let expiry = rfc3339_in(Duration::from_secs(4));
    for env in ["doomed", "skipped", "delayed"] {
        let (st, v, _) = s.call("PATCH", &path(env), Some(json!({"expirationDate": expiry})));
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["expirationDate"], expiry.as_str());
    }
    let actions = s.get(&format!("{}/actions", path("doomed")));
    assert_eq!(actions["value"][0]["name"], "doomed-Delete", "{actions}");
    assert_eq!(actions["value"][0]["actionType"], "Delete");
    assert_eq!(
        actions["value"][0]["next"]["scheduledTime"],
        expiry.as_str()
    );
    let (st, _, _) = s.call(
        "POST",
        &format!("{}/actions/skipped-Delete:skip", path("skipped")),
        None,
    );
    assert_eq!(st, 204);
    let later = rfc3339_in(Duration::from_secs(3600));
    let (st, v, _) = s.call(
        "POST",
        &format!(
            "{}/actions/delayed-Delete:delay?until={later}",
            path("delayed")
        ),
        None,
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["next"]["scheduledTime"], later.as_str());

    // The server goes down and comes back before the expiration.
    let port = s.port;
    s.kill();
    let s = Server::start_on(&data, port);
    let expiry_t = parse_time(&json!(expiry));
    wait_until("the doomed environment to be deleted", || {
        s.call("GET", &path("doomed"), None).0 == 404
    });
    // The delete was queued within 1 s of the expiration, not on a sweep.
    let (_, audit, _) = s.call("GET", "/audit?project=demo&user=slipway-scheduler", None);
    let fired = audit["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["action"] == "action.delete" && e["target"].as_str().unwrap().ends_with("/doomed")
        })
        .unwrap_or_else(|| panic!("no action event: {audit}"))
        .clone();
    let lag = parse_time(&fired["time"]) - expiry_t;
    assert!(
        lag >= chrono::Duration::zero() && lag <= chrono::Duration::seconds(1),
        "action fired {lag} after the expiration: {fired}"
    );
    // The skipped and the delayed environments are still there.
    assert_eq!(s.get(&path("skipped"))["provisioningState"], "Succeeded");
    let delayed = s.get(&format!("{}/actions", path("delayed")));
    assert_eq!(
        delayed["value"][0]["next"]["scheduledTime"],
        later.as_str(),
        "{delayed}"
    );
    let skipped = s.get(&format!("{}/actions", path("skipped")));
    assert!(skipped["value"][0].get("next").is_none(), "{skipped}");
}

#[test]
fn cancel_stops_a_long_deploy_within_the_grace_period_and_keeps_its_state() {
    let tmp = tempfile::tempdir().unwrap();
    let deploy = "#!/bin/bash\necho checkpoint-1 > \"$ADE_STORAGE/state.txt\"\necho started\nsleep 300\necho never\n";
    let catalog = scripted_catalog(tmp.path(), &[("Long", deploy)]);
    let s = Server::start_with(
        &tmp.path().join("data"),
        common::free_port(),
        &["--cancel-grace-seconds", "8"],
    );
    s.setup("cat", catalog);
    let (_, _, op) = s.put_env("long", "cat", "Long", json!({}));
    let op = op.unwrap();
    // The log streams while the operation runs (`?follow=true`)…
    let logs = format!("/projects/demo/users/me/environments/long/operations/{op}/logs");
    let stream = ureq::get(&format!("{}{logs}?follow=true", s.base))
        .set("Authorization", &format!("Bearer {}", s.admin_token))
        .call()
        .unwrap();
    let mut stream = std::io::BufReader::new(stream.into_reader());
    let mut streamed = String::new();
    while !streamed.contains("started") {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut stream, &mut line).unwrap();
        assert!(
            n > 0,
            "the stream ended before the runner's line: {streamed}"
        );
        streamed.push_str(&line);
    }
    let running = s.get(&format!("/projects/demo/operationstatuses/{op}"));
    assert_eq!(running["status"], "Running", "{running}");
    // …and an offset read says where the next one starts.
    let from = streamed.find("started").unwrap();
    let part = ureq::get(&format!("{}{logs}?offset={from}", s.base))
        .set("Authorization", &format!("Bearer {}", s.admin_token))
        .call()
        .unwrap();
    let next: usize = part
        .header("x-slipway-next-offset")
        .unwrap()
        .parse()
        .unwrap();
    let text = part.into_string().unwrap();
    assert!(text.starts_with("started"), "{text}");
    assert_eq!(next, from + text.len());
    let asked = Instant::now();
    let (st, v, _) = s.call(
        "POST",
        &format!("/projects/demo/users/me/environments/long/operations/{op}:cancel"),
        None,
    );
    assert_eq!(st, 202, "{v}");
    let done = s.wait_op(&op);
    let took = asked.elapsed();
    assert_eq!(done["status"], "Canceled", "{done}");
    assert_eq!(done["error"]["code"], "OperationCanceled", "{done}");
    assert!(
        took < Duration::from_secs(8),
        "canceled after {took:?}, beyond the 8 s grace"
    );
    let env = s.get("/projects/demo/users/me/environments/long");
    assert_eq!(env["provisioningState"], "Canceled", "{env}");
    // The catch handler uploaded the state written before the cancel.
    let archives = stored_state_archives(&s.data);
    assert_eq!(archives.len(), 1, "{archives:?}");
    assert_eq!(
        zip_entry(&archives[0].1, "state.txt").as_deref(),
        Some("checkpoint-1\n")
    );
    assert!(!s.op_log("long", &op).contains("never"));
    // The stream ended with the operation, carrying the whole log.
    std::io::Read::read_to_string(&mut stream, &mut streamed).unwrap();
    assert_eq!(streamed, s.op_log("long", &op));
    // An ended operation cannot be canceled again.
    let (st, v, _) = s.call(
        "POST",
        &format!("/projects/demo/users/me/environments/long/operations/{op}:cancel"),
        None,
    );
    assert_eq!(st, 409, "{v}");
}

#[test]
fn environment_type_rules_limits_and_force_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let big = "#!/bin/bash\nhead -c 3000000 /dev/urandom > \"$ADE_STORAGE/big.bin\"\necho wrote\n";
    let catalog = scripted_catalog(
        tmp.path(),
        &[("Big", big), ("Small", "#!/bin/bash\necho ok\n")],
    );
    let s = Server::start(&tmp.path().join("data"));
    s.setup("cat", catalog);
    put(
        &s,
        "/admin/projects/demo/environmentTypes/Dev",
        json!({"properties": {"status": "Enabled", "limits": {"maxStorageMB": 1, "maxEnvironmentsPerUser": 2}, "userRoleAssignments": {"dev": {"roles": {"Deployment Environments User": {}}}}}}),
    );
    let pet = s.get("/admin/projects/demo/environmentTypes/Dev");
    assert_eq!(
        pet["userRoleAssignments"]["dev"]["roles"],
        json!({"Deployment Environments User": {}}),
        "{pet}"
    );
    assert_eq!(pet["limits"]["maxStorageMB"], 1);
    let (st, v, _) = s.call(
        "PUT",
        "/admin/projects/demo/environmentTypes/Dev",
        Some(json!({"limits": {"maxStorageMB": 0}})),
    );
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'limits.maxStorageMB' is 0"),
        "{v}"
    );
    let (st, v, _) = s.call(
        "PUT",
        "/admin/projects/demo/environmentTypes/Dev",
        Some(json!({"deploymentIdentity": "nope"})),
    );
    assert_eq!(st, 400, "{v}");

    // Storage over the type's limit: the upload fails with ADE exit code 14.
    let (_, _, op) = s.put_env("big", "cat", "Big", json!({}));
    let done = s.wait_op(&op.unwrap());
    assert_eq!(done["status"], "Failed", "{done}");
    assert_eq!(
        done["error"]["code"], "EnvironmentStorageExceeded",
        "{done}"
    );
    // At most two environments of the type per user.
    let (st, _, small) = s.put_env("small", "cat", "Small", json!({}));
    assert_eq!(st, 201);
    s.succeeded_log("small", &small.unwrap());
    let (st, v, _) = s.put_env("third", "cat", "Small", json!({}));
    assert_eq!(st, 409, "{v}");
    assert_eq!(v["error"]["code"], "EnvironmentLimitExceeded", "{v}");
    // A type with environments cannot be removed; a disabled one blocks creation.
    let (st, v, _) = s.call("DELETE", "/admin/projects/demo/environmentTypes/Dev", None);
    assert_eq!(st, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2 environment(s)"),
        "{v}"
    );
    let (st, v, _) = s.call("DELETE", "/admin/environmentTypes/Dev", None);
    assert_eq!(st, 409, "{v}");
    put(
        &s,
        "/admin/projects/demo/environmentTypes/Dev",
        json!({"status": "Disabled"}),
    );
    let dev = s.token_for("dev");
    let (st, v, _) = s.call_as(&dev, "PUT", "/projects/demo/users/me/environments/devs", Some(json!({"environmentType": "Dev", "catalogName": "cat", "environmentDefinitionName": "Small"})));
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["code"], "EnvironmentTypeDisabled", "{v}");

    // Force delete: with the definition gone, the record goes at once.
    let (st, _, _) = s.call("DELETE", "/admin/catalogs/cat", None);
    assert_eq!(st, 204);
    let (st, v, _) = s.call("DELETE", "/projects/demo/users/me/environments/big", None);
    assert_eq!(
        st, 202,
        "without force the last definition snapshot still runs: {v}"
    );
    let (st, v, _) = s.call(
        "DELETE",
        "/projects/demo/users/me/environments/small?force=true",
        None,
    );
    assert_eq!(st, 204, "{v}");
    assert_eq!(
        s.call("GET", "/projects/demo/users/me/environments/small", None)
            .0,
        404
    );
}

#[test]
fn a_private_runner_image_is_pulled_with_the_registry_credential() {
    let tmp = tempfile::tempdir().unwrap();
    let password = "reg-pw-4c1e9a77d2";
    let registry = Registry::start(&tmp.path().join("registry"), Some(("puller", password)));
    let image = registry.push(
        &fixture_image("scripted"),
        "private/scripted:v1",
        Some(&format!("puller:{password}")),
    );
    let catalog = catalog_on_runner(
        tmp.path(),
        &image,
        &[(
            "Private",
            "#!/bin/bash\necho deployed from the private image\n",
        )],
    );
    let s = Server::start(&tmp.path().join("data"));
    put(&s, "/admin/projects/demo", json!({}));
    put(&s, "/admin/environmentTypes/Dev", json!({}));
    put(&s, "/admin/projects/demo/environmentTypes/Dev", json!({}));
    put(&s, "/admin/catalogs/cat", catalog);
    let deploy = |env: &str| {
        let (st, v, loc) = s.call(
            "PUT",
            &format!("/projects/demo/users/me/environments/{env}"),
            Some(json!({"environmentType": "Dev", "catalogName": "cat", "environmentDefinitionName": "Private"})),
        );
        assert_eq!(st, 201, "{v}");
        let op = loc.unwrap().rsplit('/').next().unwrap().to_string();
        let done = s.wait_op(&op);
        (op, done)
    };
    let local = |image: &str| {
        std::process::Command::new("podman")
            .args(["image", "exists", image])
            .status()
            .unwrap()
            .success()
    };
    assert!(!local(&image), "the pushed image is only in the registry");

    // Without a credential the registry refuses the pull.
    let (_, refused) = deploy("anonymous");
    assert_eq!(refused["status"], "Failed", "{refused}");
    assert_eq!(
        refused["error"]["code"], "RunnerImageUnavailable",
        "{refused}"
    );
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains(&image), "{message}");
    assert!(message.contains("authentication required"), "{message}");

    // A malformed credential is refused with the field named.
    let (st, v, _) = s.call(
        "PUT",
        "/admin/secrets/private-registry",
        Some(json!({"kind": "registry", "value": {"server": registry.host, "username": "puller"}})),
    );
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("password"),
        "{v}"
    );

    // With the credential of the image's registry the runner starts.
    let (st, v, _) = s.call(
        "PUT",
        "/admin/secrets/private-registry",
        Some(json!({"kind": "registry", "value": {"server": format!("http://{}/", registry.host), "username": "puller", "password": password}})),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["kind"], "registry", "{v}");
    assert!(v.get("value").is_none(), "{v}");
    let (op, done) = deploy("pulled");
    let log = s.op_log("pulled", &op);
    assert_eq!(done["status"], "Succeeded", "{done}\n{log}");
    assert!(log.contains("deployed from the private image"), "{log}");
    assert!(!log.contains(password), "{log}");
    assert!(local(&image), "the runner image was pulled");
    assert_no_file_holds(&s.data, password);

    let _ = std::process::Command::new("podman")
        .args(["rmi", "--force", &image])
        .output();
}

/// Found by scripts/api-fuzz: an admin could remove the last DevCenter Admin
/// assignment, after which nobody could administer the server.
#[test]
fn the_last_dev_center_admin_assignment_cannot_be_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let admins = |s: &Server| -> Vec<String> {
        s.get("/admin/roleAssignments")["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["role"] == "DevCenter Admin")
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    };
    let first = admins(&s);
    assert_eq!(first.len(), 1, "{first:?}");
    let (st, v, _) = s.call(
        "DELETE",
        &format!("/admin/roleAssignments/{}", first[0]),
        None,
    );
    assert_eq!(st, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("last DevCenter Admin"),
        "{v}"
    );
    // The admin still administers.
    assert_eq!(s.call("GET", "/admin/projects", None).0, 200);

    // With a second admin the first may go; then the second is the last.
    s.assign("ops", "DevCenter Admin", "/");
    let ops = s.token_for("ops");
    let (st, v, _) = s.call(
        "DELETE",
        &format!("/admin/roleAssignments/{}", first[0]),
        None,
    );
    assert_eq!(st, 204, "{v}");
    let (st, list, _) = s.call_as(&ops, "GET", "/admin/roleAssignments", None);
    assert_eq!(st, 200, "{list}");
    let rest: Vec<&Value> = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["role"] == "DevCenter Admin")
        .collect();
    assert_eq!(rest.len(), 1, "{list}");
    assert_eq!(rest[0]["principalId"], "ops");
    let (st, v, _) = s.call_as(
        &ops,
        "DELETE",
        &format!("/admin/roleAssignments/{}", rest[0]["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(st, 409, "{v}");
}

#[test]
fn a_request_refused_before_its_body_was_read_is_told_the_connection_closes() {
    // Hyper closes a keep-alive connection whose request body it could not
    // drain; without `Connection: close` a pooling client reuses it and its
    // next request fails with an unexpected EOF.
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    let connect = || {
        let sock = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        sock
    };
    let request = |method: &str, path: &str, token: &str, body: &[u8]| {
        let auth = if token.is_empty() {
            String::new()
        } else {
            format!("\r\nAuthorization: Bearer {token}")
        };
        format!(
            "{method} {path} HTTP/1.1\r\nHost: slipway\r\nContent-Type: application/json\r\nContent-Length: {}{auth}",
            body.len()
        )
    };
    let secret = br#"{"kind":"generic","value":"hunter2"}"#;

    // No token: refused before the body is sent at all.
    let mut sock = connect();
    let head = request("PUT", "/admin/secrets/app-key", "", secret);
    let (status, head, _) = common::exchange(&mut sock, &head, b"");
    assert_eq!(status, 401, "{head}");
    assert!(head.contains("connection: close\r\n"), "{head}");

    // A developer's token on a DevCenter Admin route: refused by the role
    // check before the body, the same.
    let dev = s.token_for("dev");
    let mut sock = connect();
    let head = request("PUT", "/admin/secrets/app-key", &dev, secret);
    let (status, head, text) = common::exchange(&mut sock, &head, b"");
    assert_eq!(status, 403, "{head}{text}");
    assert!(head.contains("connection: close\r\n"), "{head}");

    // A request whose body was read keeps its connection for the next one.
    let mut sock = connect();
    let head = request("PUT", "/admin/secrets/app-key", &s.admin_token, secret);
    let (status, head, text) = common::exchange(&mut sock, &head, secret);
    assert!(status == 200 || status == 201, "{head}{text}");
    assert!(!head.contains("connection: close"), "{head}");
    let (status, head, _) =
        common::exchange(&mut sock, "GET /healthz HTTP/1.1\r\nHost: slipway", b"");
    assert_eq!(status, 200, "{head}");
}
