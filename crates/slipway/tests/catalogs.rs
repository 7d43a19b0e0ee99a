//! Catalogs end to end through `slipway serve`: git sources over file://,
//! git://, http:// with a token and ssh:// with a key; discovery and
//! validation codes; project catalogs; scheduled sync; a server killed
//! during a sync.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use common::git_servers::Sshd;
use common::{free_port, git, git_repo, Server};
use serde_json::{json, Value};
use slipway_git::test_support::{GitDaemon, GitHttp};

/// A manifest the way real catalogs write them: `$schema` comment, quoted and
/// unquoted scalars, unknown keys. Stored with a BOM and CRLF line endings.
const GOOD: &str = r#"# yaml-language-server: $schema=https://github.com/Azure/deployment-environments/releases/download/2022-11-11-preview/manifest.schema.json
name: Good
version: "1.0.0"
summary: 'A tolerant manifest'
description: CRLF, BOM, $schema comment, quoted and unquoted scalars
runner: Terraform
templatePath: ./main.tf
owner: platform-team
parameters:
- id: "name"
  name: Name
  type: string
  required: true
- id: count
  type: integer
  default: 2
- id: tier
  allowed: [dev, "test", 'prod']
  default: dev
- id: logs
  type: boolean
  default: "true"
  readOnly: true
  color: blue
"#;

fn good_with_bom_and_crlf() -> String {
    format!("\u{feff}{}", GOOD.replace('\n', "\r\n"))
}

/// A minimal manifest (leaked: test fixtures live for the whole test).
fn manifest(name: &str, extra: &str) -> &'static str {
    Box::leak(format!("name: {name}\ntemplatePath: main.tf\n{extra}").into_boxed_str())
}

/// `(path, content)` of a catalog under `/Environments` with one folder per rule.
fn validation_catalog() -> Vec<(String, String)> {
    let m = |name: &str, extra: &str| manifest(name, extra).to_string();
    let mut files: Vec<(String, String)> = vec![
        (
            "Environments/Good/environment.yaml".into(),
            good_with_bom_and_crlf(),
        ),
        ("Environments/Good/main.tf".into(), "# tf\n".into()),
        (
            "Environments/Good/modules/net/main.tf".into(),
            "# module\n".into(),
        ),
        ("Environments/Legacy/manifest.yaml".into(), m("Legacy", "")),
        (
            "Environments/LegacyYml/manifest.yml".into(),
            m("LegacyYml", ""),
        ),
        (
            "Environments/Group/Deep/environment.yaml".into(),
            m("Deep", ""),
        ),
        ("Environments/DupA/environment.yaml".into(), m("Dup", "")),
        ("Environments/DupB/environment.yaml".into(), m("Dup", "")),
        (
            "Environments/RequiredDefault/environment.yaml".into(),
            m(
                "RequiredDefault",
                "parameters:\n- id: p\n  required: true\n  default: x\n",
            ),
        ),
        (
            "Environments/MissingName/environment.yaml".into(),
            "templatePath: main.tf\n".into(),
        ),
        (
            "Environments/MissingTemplate/environment.yaml".into(),
            "name: MissingTemplate\n".into(),
        ),
        (
            "Environments/BadType/environment.yaml".into(),
            m("BadType", "parameters:\n- id: p\n  type: float\n"),
        ),
        (
            "Environments/EmptyAllowed/environment.yaml".into(),
            m("EmptyAllowed", "parameters:\n- id: p\n  allowed: []\n"),
        ),
        (
            "Environments/RepeatedAllowed/environment.yaml".into(),
            m(
                "RepeatedAllowed",
                "parameters:\n- id: p\n  allowed: [a, a]\n",
            ),
        ),
        (
            "Environments/DefaultType/environment.yaml".into(),
            m(
                "DefaultType",
                "parameters:\n- id: p\n  type: integer\n  default: many\n",
            ),
        ),
        (
            "Environments/DefaultNotAllowed/environment.yaml".into(),
            m(
                "DefaultNotAllowed",
                "parameters:\n- id: p\n  allowed: [a, b]\n  default: c\n",
            ),
        ),
        (
            "Environments/ReadOnlyNoDefault/environment.yaml".into(),
            m(
                "ReadOnlyNoDefault",
                "parameters:\n- id: p\n  readOnly: true\n",
            ),
        ),
        (
            "Environments/ShortName/environment.yaml".into(),
            m("ab", ""),
        ),
        (
            "Environments/BadChars/environment.yaml".into(),
            m("bad/name#", ""),
        ),
        (
            "Environments/BadYaml/environment.yaml".into(),
            "name: BadYaml\ntemplatePath: main.tf\nparameters:\n  - id: [unclosed\n".into(),
        ),
        (
            "Environments/NoTemplate/environment.yaml".into(),
            "name: NoTemplate\ntemplatePath: missing.tf\n".into(),
        ),
        (
            "Environments/DotDot/environment.yaml".into(),
            "name: DotDot\ntemplatePath: ../Good/main.tf\n".into(),
        ),
        (
            "Environments/Absolute/environment.yaml".into(),
            "name: Absolute\ntemplatePath: /etc/hostname\n".into(),
        ),
        (
            "Environments/LinkOut/environment.yaml".into(),
            "name: LinkOut\ntemplatePath: main.tf\n".into(),
        ),
        (
            "Environments/ContentLink/environment.yaml".into(),
            m("ContentLink", ""),
        ),
        (
            "Environments/NotADefinition/readme.md".into(),
            "no manifest here\n".into(),
        ),
        ("Outside/environment.yaml".into(), m("Outside", "")),
        ("Outside/main.tf".into(), String::new()),
        ("secret.tf".into(), "# above every definition\n".into()),
    ];
    for d in [
        "Legacy",
        "LegacyYml",
        "Group/Deep",
        "DupA",
        "DupB",
        "RequiredDefault",
        "MissingName",
        "BadType",
        "EmptyAllowed",
        "RepeatedAllowed",
        "DefaultType",
        "DefaultNotAllowed",
        "ReadOnlyNoDefault",
        "ShortName",
        "BadChars",
        "BadYaml",
        "ContentLink",
    ] {
        files.push((format!("Environments/{d}/main.tf"), String::new()));
    }
    files
}

fn build_validation_repo(repo: &Path) {
    let files = validation_catalog();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    std::fs::create_dir_all(repo).unwrap();
    // Symlinks leaving their definition folder: as the template, and as other content.
    for (path, _) in &refs {
        let p = repo.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    }
    std::os::unix::fs::symlink("../../secret.tf", repo.join("Environments/LinkOut/main.tf"))
        .unwrap();
    std::os::unix::fs::symlink(
        "../../secret.tf",
        repo.join("Environments/ContentLink/extra.tf"),
    )
    .unwrap();
    git_repo(repo, &refs);
}

/// Commits one definition, `<folder>/environment.yaml` naming `name` plus an
/// empty `main.tf`, to the repository at `repo` (created if needed).
fn commit_definition(repo: &Path, folder: &str, name: &str) {
    git_repo(
        repo,
        &[
            (&format!("{folder}/environment.yaml"), manifest(name, "")),
            (&format!("{folder}/main.tf"), ""),
        ],
    );
}

fn errors_by_path(details: &Value) -> BTreeMap<String, (String, String)> {
    details["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let d = &e["errorDetails"][0];
            (
                e["path"].as_str().unwrap().to_string(),
                (
                    d["code"].as_str().unwrap().to_string(),
                    d["message"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

fn names(v: &Value) -> Vec<String> {
    v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn discovery_and_validation_report_ade_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    build_validation_repo(&repo);
    let head = git(&repo, &["rev-parse", "HEAD"]);
    let s = Server::start(&tmp.path().join("data"));
    s.setup_project();

    // ADE's catalog body; the folder path with a leading slash.
    let (st, cat, _) = s.call(
        "PUT",
        "/admin/catalogs/main",
        Some(json!({"properties": {"gitHub": {"uri": format!("file://{}", repo.display()), "branch": "main", "path": "/Environments"}, "syncType": "Manual"}})),
    );
    assert_eq!(st, 201, "{cat}");
    assert_eq!(cat["syncState"], "Succeeded", "{cat}");
    assert_eq!(cat["connectionState"], "Connected");
    assert_eq!(cat["lastSyncCommit"], head.as_str());
    let stats = &cat["lastSyncStats"];
    // Good, Legacy, LegacyYml, Deep, RequiredDefault, and DefaultNotAllowed
    // (ADE syncs a default outside `allowed`; Slipway warns).
    assert_eq!(stats["added"], 6, "{stats} {}", cat["syncErrorDetails"]);
    assert_eq!(stats["validationErrors"], 17, "{stats}"); // 2 conflicts + 15 errors

    let (st, details, _) = s.call("POST", "/admin/catalogs/main:getSyncErrorDetails", None);
    assert_eq!(st, 200);
    assert_eq!(details["operationError"], Value::Null);
    let mut conflicts: Vec<_> = details["conflicts"].as_array().unwrap().clone();
    conflicts.sort_by_key(|c| c["path"].as_str().unwrap().to_string());
    assert_eq!(
        Value::Array(conflicts),
        json!([
            {"path": "/DupA/environment.yaml", "name": "DuplicateEnvironmentName"},
            {"path": "/DupB/environment.yaml", "name": "DuplicateEnvironmentName"}
        ])
    );
    let errors = errors_by_path(&details);
    let expect = [
        ("MissingName", "ParseError", "Missing Name"),
        ("MissingTemplate", "ParseError", "Missing TemplatePath"),
        ("BadType", "ParseError", "parameters[0].type"),
        ("EmptyAllowed", "ParseError", "parameters[0].allowed"),
        ("RepeatedAllowed", "ParseError", "parameters[0].allowed"),
        ("DefaultType", "ParseError", "parameters[0].default"),
        ("ReadOnlyNoDefault", "ParseError", "parameters[0]"),
        ("ShortName", "ParseError", "'ab'"),
        ("BadChars", "ParseError", "'bad/name#'"),
        ("BadYaml", "ParseError", "line 5, column 1"),
        ("NoTemplate", "TemplatePathInvalid", "does not exist"),
        ("DotDot", "TemplatePathInvalid", ".."),
        ("Absolute", "TemplatePathInvalid", "absolute"),
        (
            "LinkOut",
            "TemplatePathInvalid",
            "outside the definition folder",
        ),
        ("ContentLink", "InvalidReference", "extra.tf"),
    ];
    for (folder, code, fragment) in expect {
        let path = format!("/{folder}/environment.yaml");
        let (c, m) = errors
            .get(&path)
            .unwrap_or_else(|| panic!("no error for {path}: {details}"));
        assert_eq!(c, code, "{path}: {m}");
        assert!(
            m.contains(fragment),
            "{path}: '{m}' should mention '{fragment}'"
        );
    }
    assert_eq!(errors.len(), expect.len(), "{details}");
    assert!(
        !errors.contains_key("/Outside/environment.yaml"),
        "outside the catalog path"
    );

    // Developers see exactly the valid definitions.
    let defs = s.get("/projects/demo/catalogs/main/environmentDefinitions");
    assert_eq!(
        names(&defs),
        [
            "Deep",
            "DefaultNotAllowed",
            "Good",
            "Legacy",
            "LegacyYml",
            "RequiredDefault"
        ]
    );
    let good = s.get("/projects/demo/catalogs/main/environmentDefinitions/Good");
    assert_eq!(good["templatePath"], "Good/main.tf");
    assert_eq!(good["catalogCommit"], head.as_str());
    assert_eq!(good["runner"], "Terraform");
    assert_eq!(good["version"], "1.0.0");
    assert_eq!(
        good["parameters"],
        json!([
            {"id": "name", "name": "Name", "type": "string", "required": true, "readOnly": false},
            {"id": "count", "name": "count", "type": "integer", "required": false, "readOnly": false, "default": "2"},
            {"id": "tier", "name": "tier", "type": "string", "required": false, "readOnly": false, "default": "dev", "allowed": ["dev", "test", "prod"]},
            {"id": "logs", "name": "logs", "type": "boolean", "required": false, "readOnly": true, "default": "true"}
        ])
    );
    let schema: Value = serde_json::from_str(good["parametersSchema"].as_str().unwrap()).unwrap();
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["required"], json!(["name"]));
    assert_eq!(
        schema["properties"]["tier"]["enum"],
        json!(["dev", "test", "prod"])
    );

    // Admin view: warnings for unknown keys, per-definition error details.
    let (_, admin_good, _) = s.call(
        "GET",
        "/admin/catalogs/main/environmentDefinitions/Good",
        None,
    );
    assert_eq!(admin_good["validationStatus"], "Succeeded");
    let warnings = admin_good["warnings"].to_string();
    assert!(
        warnings.contains("owner") && warnings.contains("color"),
        "{warnings}"
    );
    let (_, rd, _) = s.call(
        "GET",
        "/admin/catalogs/main/environmentDefinitions/RequiredDefault",
        None,
    );
    assert!(rd["warnings"].to_string().contains("required"), "{rd}");
    let (_, dna, _) = s.call(
        "GET",
        "/admin/catalogs/main/environmentDefinitions/DefaultNotAllowed",
        None,
    );
    assert_eq!(dna["validationStatus"], "Succeeded", "{dna}");
    assert!(
        dna["warnings"]
            .to_string()
            .contains("is not one of the allowed values"),
        "{dna}"
    );
    let (st, bad, _) = s.call(
        "POST",
        "/admin/catalogs/main/environmentDefinitions/BadType/getErrorDetails",
        None,
    );
    assert_eq!(st, 200, "{bad}");
    assert_eq!(bad["errors"][0]["code"], "ParseError");
    assert!(
        bad["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("float"),
        "{bad}"
    );

    // A rejected definition cannot be deployed; the error says why.
    let (st, v, _) = s.put_env("env-bad", "main", "BadType", json!({}));
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["code"], "EnvironmentDefinitionInvalid");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("float"),
        "{v}"
    );
}

#[test]
fn git_daemon_branch_resync_and_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let repos = tmp.path().join("repos");
    let repo = repos.join("catalog.git");
    git_repo(
        &repo,
        &[
            ("defs/A/environment.yaml", manifest("Alpha", "")),
            ("defs/A/main.tf", "# a\n"),
            ("defs/B/environment.yaml", manifest("Beta", "")),
            ("defs/B/main.tf", "# b\n"),
            ("defs/C/environment.yaml", manifest("Gamma", "")),
            ("defs/C/main.tf", "# c\n"),
        ],
    );
    git(&repo, &["branch", "release"]);
    // main moves on; the catalog follows `release`.
    commit_definition(&repo, "defs/Z", "Zeta");
    let daemon = GitDaemon::start(&repos);
    let s = Server::start(&tmp.path().join("data"));
    s.setup_project();
    let uri = format!("git://127.0.0.1:{}/catalog.git", daemon.port);
    let (st, cat, _) = s.call(
        "PUT",
        "/admin/catalogs/daemon",
        Some(json!({"kind": "git", "uri": uri, "branch": "release", "path": "defs/", "syncType": "Manual"})),
    );
    assert_eq!(st, 201, "{cat}");
    assert_eq!(cat["syncState"], "Succeeded", "{cat}");
    assert_eq!(cat["lastSyncStats"]["added"], 3);
    assert_eq!(
        names(&s.get("/projects/demo/environmentDefinitions")),
        ["Alpha", "Beta", "Gamma"]
    );

    // No change: every definition unchanged.
    let (st, again, _) = s.call("POST", "/admin/catalogs/daemon:sync", None);
    assert_eq!(st, 200);
    assert_eq!(
        again["lastSyncStats"],
        json!({"added": 0, "updated": 0, "unchanged": 3, "removed": 0, "validationErrors": 0, "synchronizationErrors": 0})
    );

    // On release: B's template changes, C goes, D arrives.
    git(&repo, &["checkout", "-q", "release"]);
    std::fs::remove_dir_all(repo.join("defs/C")).unwrap();
    git_repo(
        &repo,
        &[
            ("defs/B/main.tf", "# b v2\n"),
            ("defs/D/environment.yaml", manifest("Delta", "")),
            ("defs/D/main.tf", ""),
        ],
    );
    let release = git(&repo, &["rev-parse", "HEAD"]);
    git(&repo, &["checkout", "-q", "main"]);
    let (_, third, _) = s.call("POST", "/admin/catalogs/daemon/sync", None);
    assert_eq!(
        third["lastSyncStats"],
        json!({"added": 1, "updated": 1, "unchanged": 1, "removed": 1, "validationErrors": 0, "synchronizationErrors": 0}),
        "{third}"
    );
    assert_eq!(third["lastSyncCommit"], release.as_str());
    assert_eq!(
        names(&s.get("/projects/demo/environmentDefinitions")),
        ["Alpha", "Beta", "Delta"]
    );

    // An unreachable source fails the sync and keeps the snapshot.
    drop(daemon);
    let (_, failed, _) = s.call("POST", "/admin/catalogs/daemon:sync", None);
    assert_eq!(failed["syncState"], "Failed", "{failed}");
    assert_eq!(failed["connectionState"], "Disconnected");
    assert_eq!(
        failed["syncErrorDetails"]["operationError"]["code"],
        "SourceUnreachable"
    );
    assert_eq!(
        names(&s.get("/projects/demo/environmentDefinitions")),
        ["Alpha", "Beta", "Delta"]
    );
}

fn grep_dir(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(p.display().to_string());
                }
            }
        }
    }
    hits
}

#[test]
fn token_and_ssh_key_credentials_stay_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let repos = tmp.path().join("repos");
    commit_definition(&repos.join("private.git"), "Env", "Private");
    let token = "tok-5f1c0ffee-do-not-leak";
    let http = GitHttp::start(&repos, token);
    let data = tmp.path().join("data");
    let s = Server::start(&data);
    s.setup_project();
    let uri = format!("http://127.0.0.1:{}/private.git", http.port);

    // Without credentials the source refuses: Failed, Conflict, nothing synced.
    let (st, cat, _) = s.call(
        "PUT",
        "/admin/catalogs/private",
        Some(json!({"kind": "git", "uri": uri})),
    );
    assert_eq!(st, 201, "{cat}");
    assert_eq!(cat["syncState"], "Failed", "{cat}");
    assert_eq!(
        cat["syncErrorDetails"]["operationError"]["code"],
        "Conflict"
    );
    assert!(cat["syncErrorDetails"]["operationError"]["message"]
        .as_str()
        .unwrap()
        .starts_with("The source control credentials could not be validated successfully."));

    // A catalog cannot name a secret that does not exist.
    let (st, v, _) = s.call(
        "PUT",
        "/admin/catalogs/private",
        Some(json!({"kind": "git", "uri": uri, "secretIdentifier": "nope"})),
    );
    assert_eq!(st, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("secretIdentifier"));

    // A wrong token fails, and the failure does not echo it.
    let (st, meta, _) = s.call(
        "PUT",
        "/admin/secrets/repo-pat",
        Some(json!({"kind": "token", "value": "wrong-token-123"})),
    );
    assert_eq!(st, 200, "{meta}");
    let (_, cat, _) = s.call(
        "PUT",
        "/admin/catalogs/private",
        Some(json!({"kind": "git", "uri": uri, "secretIdentifier": "repo-pat"})),
    );
    assert_eq!(cat["syncState"], "Failed", "{cat}");
    assert!(!cat.to_string().contains("wrong-token-123"));

    // The right token syncs.
    let (st, meta, _) = s.call(
        "PUT",
        "/admin/secrets/repo-pat",
        Some(json!({"kind": "token", "value": token})),
    );
    assert_eq!(st, 200);
    assert_eq!(meta["name"], "repo-pat");
    assert_eq!(meta["kind"], "token");
    let (_, cat, _) = s.call("POST", "/admin/catalogs/private:sync", None);
    assert_eq!(cat["syncState"], "Succeeded", "{cat}");
    assert_eq!(cat["secretIdentifier"], "repo-pat");
    assert_eq!(
        names(&s.get("/projects/demo/environmentDefinitions")),
        ["Private"]
    );

    // SSH with a key, over a real sshd.
    let sshd = Sshd::start(&tmp.path().join("sshd"));
    let (st, _, _) = s.call(
        "PUT",
        "/admin/secrets/deploy-key",
        Some(json!({"kind": "sshKey", "value": sshd.client_key})),
    );
    assert_eq!(st, 200);
    let ssh_uri = format!(
        "ssh://{}@127.0.0.1:{}{}",
        Sshd::user(),
        sshd.port,
        repos.join("private.git").display()
    );
    let (st, cat, _) = s.call(
        "PUT",
        "/admin/catalogs/over-ssh",
        Some(
            json!({"kind": "git", "uri": ssh_uri, "path": "Env", "secretIdentifier": "deploy-key"}),
        ),
    );
    assert_eq!(st, 201, "{cat}");
    assert_eq!(cat["syncState"], "Succeeded", "{cat}\n{}", s.log());
    assert_eq!(cat["lastSyncStats"]["added"], 1);
    // Without the key, ssh fails in batch mode instead of prompting.
    let (_, cat, _) = s.call(
        "PUT",
        "/admin/catalogs/over-ssh",
        Some(json!({"kind": "git", "uri": ssh_uri, "path": "Env"})),
    );
    assert_eq!(cat["syncState"], "Failed", "{cat}");
    assert_eq!(
        cat["syncErrorDetails"]["operationError"]["code"],
        "Conflict"
    );

    // No API answer carries a value; neither does any file of the data directory.
    for path in [
        "/admin/secrets",
        "/admin/secrets/repo-pat",
        "/admin/catalogs",
        "/admin/catalogs/private",
    ] {
        let v = s.get(path);
        assert!(!v.to_string().contains(token), "{path}: {v}");
        assert!(!v.to_string().contains("PRIVATE KEY"), "{path}: {v}");
    }
    let key_line = sshd.client_key.lines().nth(1).unwrap().as_bytes().to_vec();
    assert_eq!(grep_dir(&data, token.as_bytes()), Vec::<String>::new());
    assert_eq!(grep_dir(&data, &key_line), Vec::<String>::new());
    // A secret in use cannot be deleted; an unused one can.
    assert_eq!(s.call("DELETE", "/admin/secrets/repo-pat", None).0, 409);
    assert_eq!(s.call("DELETE", "/admin/secrets/deploy-key", None).0, 204);
}

#[test]
fn project_catalogs_are_visible_only_in_their_project() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    commit_definition(&repo, "X", "Shared");
    let own = tmp.path().join("own");
    commit_definition(&own, "Y", "TeamOnly");
    let s = Server::start(&tmp.path().join("data"));
    s.setup_project();
    assert_eq!(
        s.call("PUT", "/admin/projects/other", Some(json!({}))).0,
        200
    );
    let (st, v, _) = s.call(
        "PUT",
        "/admin/catalogs/shared",
        Some(json!({"kind": "git", "uri": format!("file://{}", repo.display())})),
    );
    assert_eq!(st, 201, "{v}");
    let (st, v, _) = s.call(
        "PUT",
        "/admin/projects/demo/catalogs/team",
        Some(json!({"kind": "git", "uri": format!("file://{}", own.display())})),
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["project"], "demo");
    assert_eq!(v["syncState"], "Succeeded", "{v}");

    assert_eq!(names(&s.get("/projects/demo/catalogs")), ["shared", "team"]);
    assert_eq!(names(&s.get("/projects/other/catalogs")), ["shared"]);
    assert_eq!(
        names(&s.get("/projects/demo/environmentDefinitions")),
        ["Shared", "TeamOnly"]
    );
    assert_eq!(
        names(&s.get("/projects/other/environmentDefinitions")),
        ["Shared"]
    );
    assert_eq!(s.call("GET", "/projects/other/catalogs/team", None).0, 404);
    assert_eq!(
        s.call(
            "GET",
            "/projects/other/catalogs/team/environmentDefinitions/TeamOnly",
            None
        )
        .0,
        404
    );
    assert_eq!(
        s.call("GET", "/admin/projects/other/catalogs/team", None).0,
        404
    );
    assert_eq!(names(&s.get("/admin/projects/demo/catalogs")), ["team"]);
    // Names are unique per server.
    let (st, v, _) = s.call(
        "PUT",
        "/admin/projects/other/catalogs/team",
        Some(json!({"kind": "git", "uri": "file:///nowhere"})),
    );
    assert_eq!(st, 409, "{v}");
    // Bad bodies name the field.
    let (st, v, _) = s.call(
        "PUT",
        "/admin/catalogs/typo",
        Some(json!({"kind": "git", "uri": "file:///x", "brnach": "main"})),
    );
    assert_eq!(st, 400);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("'brnach'"),
        "{v}"
    );
    let (st, v, _) = s.call(
        "PUT",
        "/admin/catalogs/typo",
        Some(json!({"kind": "git", "uri": "file:///x", "syncType": "Hourly"})),
    );
    assert_eq!(st, 400);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("'Hourly'"),
        "{v}"
    );
    // Deleting a project catalog removes its definitions from the project.
    assert_eq!(
        s.call("DELETE", "/admin/projects/demo/catalogs/team", None)
            .0,
        204
    );
    assert_eq!(
        names(&s.get("/projects/demo/environmentDefinitions")),
        ["Shared"]
    );
}

fn catalog(s: &Server, name: &str) -> Value {
    s.get(&format!("/admin/catalogs/{name}"))
}

#[test]
fn scheduled_sync_fires_on_its_timer_and_manual_catalogs_wait() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    commit_definition(&repo, "A", "Alpha");
    let s = Server::start_with(
        &tmp.path().join("data"),
        free_port(),
        &["--catalog-sync-interval-seconds", "2"],
    );
    s.setup_project();
    let uri = format!("file://{}", repo.display());
    let (st, _, _) = s.call(
        "PUT",
        "/admin/catalogs/timed",
        Some(json!({"kind": "git", "uri": uri, "syncType": "Scheduled"})),
    );
    assert_eq!(st, 201);
    let (st, manual, _) = s.call(
        "PUT",
        "/admin/catalogs/manual",
        Some(json!({"kind": "git", "uri": uri, "syncType": "Manual"})),
    );
    assert_eq!(st, 201);
    let first = catalog(&s, "timed")["lastSyncTime"]
        .as_str()
        .unwrap()
        .to_string();

    commit_definition(&repo, "B", "Beta");
    let head = git(&repo, &["rev-parse", "HEAD"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let synced = loop {
        let c = catalog(&s, "timed");
        if c["lastSyncCommit"] == head.as_str() {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "no scheduled sync: {c}\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
    let gap = at(synced["lastSyncTime"].as_str().unwrap()) - at(&first);
    assert!(
        gap.num_milliseconds() >= 2000,
        "fired early: {gap} {first} {synced}"
    );
    assert_eq!(synced["syncState"], "Succeeded");
    assert_eq!(synced["lastSyncStats"]["added"], 1, "{synced}");
    // The manual catalog did not move.
    let m = catalog(&s, "manual");
    assert_eq!(m["lastSyncTime"], manual["lastSyncTime"]);
    assert_eq!(m["lastSyncStats"]["added"], 1);
}

#[test]
fn server_killed_during_a_sync_keeps_the_previous_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    commit_definition(&repo, "A", "Alpha");
    let data = tmp.path().join("data");
    let port = free_port();
    let mut s = Server::start_on(&data, port);
    s.setup_project();
    let (st, _, _) = s.call(
        "PUT",
        "/admin/catalogs/main",
        Some(json!({"kind": "git", "uri": format!("file://{}", repo.display())})),
    );
    assert_eq!(st, 201);

    // A source that accepts the connection and never answers holds the sync open.
    let hang = TcpListener::bind("127.0.0.1:0").unwrap();
    let hang_port = hang.local_addr().unwrap().port();
    let base = s.base.clone();
    let auth = format!("Bearer {}", s.admin_token);
    let put = std::thread::spawn(move || {
        let _ = ureq::put(&format!("{base}/admin/catalogs/main"))
            .set("Authorization", &auth)
            .timeout(Duration::from_secs(600))
            .send_json(
                json!({"kind": "git", "uri": format!("http://127.0.0.1:{hang_port}/repo.git")}),
            );
    });
    let (mut conn, _) = hang.accept().unwrap();
    let mut buf = [0u8; 16];
    let _ = conn.read(&mut buf).unwrap(); // git sent its request: the sync is in flight
    assert_eq!(catalog(&s, "main")["syncState"], "InProgress");
    s.kill();
    drop(conn);
    let _ = put.join();

    let s = Server::start_on(&data, port);
    let c = catalog(&s, "main");
    assert_eq!(c["syncState"], "Canceled", "{c}");
    assert_eq!(
        names(&s.get("/projects/demo/environmentDefinitions")),
        ["Alpha"]
    );
    // Nothing is stuck: pointing back at the repository syncs again.
    let (st, c, _) = s.call(
        "PUT",
        "/admin/catalogs/main",
        Some(json!({"kind": "git", "uri": format!("file://{}", repo.display())})),
    );
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["syncState"], "Succeeded", "{c}");
}

/// Issue 20 (catalogs): a parameter whose `default` is not among its
/// `allowed` values appears in Microsoft's own sample catalog and ADE syncs
/// it. Slipway syncs it with a warning; a deploy that leaves the parameter
/// out is `ParameterValueInvalid` listing the allowed values, one that picks
/// an allowed value deploys.
#[test]
fn a_default_outside_allowed_syncs_with_a_warning_and_deploys_with_an_allowed_value() {
    let tmp = tempfile::tempdir().unwrap();
    let image = common::fixture_image("scripted");
    let repo = tmp.path().join("repo");
    git_repo(
        &repo,
        &[
            (
                "Environments/WebApp/environment.yaml",
                &format!("name: WebApp\nrunner: {image}\ntemplatePath: template.txt\nparameters:\n- id: sku\n  name: SKU\n  type: string\n  default: B1\n  allowed: [S1, P1v2]\n"),
            ),
            ("Environments/WebApp/template.txt", "t"),
            (
                "Environments/WebApp/deploy.sh",
                "#!/bin/bash\necho \"sku=$(jq -r .sku <<<\"$ADE_OPERATION_PARAMETERS\")\"\n",
            ),
            ("Environments/WebApp/delete.sh", "#!/bin/bash\n"),
        ],
    );
    let s = Server::start(&tmp.path().join("data"));
    s.setup(
        "main",
        json!({"kind": "git", "uri": format!("file://{}", repo.display()), "branch": "main", "path": "/Environments"}),
    );
    let (_, def, _) = s.call(
        "GET",
        "/admin/catalogs/main/environmentDefinitions/WebApp",
        None,
    );
    assert_eq!(def["validationStatus"], "Succeeded", "{def}");
    assert!(
        def["warnings"]
            .to_string()
            .contains("default the string 'B1' is not one of the allowed values"),
        "{def}"
    );
    let (st, v, _) = s.put_env("nosku", "main", "WebApp", json!({}));
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["code"], "ParameterValueInvalid", "{v}");
    assert!(
        v.to_string()
            .contains(r#"must be one of [\"S1\",\"P1v2\"]"#),
        "{v}"
    );
    let (st, v, op) = s.put_env("web", "main", "WebApp", json!({"sku": "P1v2"}));
    assert_eq!(st, 201, "{v}");
    let op = op.unwrap();
    assert_eq!(s.wait_op(&op)["status"], "Succeeded");
    assert!(s.succeeded_log("web", &op).contains("sku=P1v2"));
}
