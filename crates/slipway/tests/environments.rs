//! Acceptance tests of the spine: environments deployed through real runner
//! containers (Podman), real Terraform and real git catalogs.

#![allow(clippy::unwrap_used)]

mod common;

use common::arm_stand_in::ArmStandIn;
use common::entra_stand_in::EntraStandIn;
use common::netns_host::NetnsHost;
use common::{
    fixture_image, git_repo, repo_root, scripted_catalog, stored_state_archives, zip_entry, Server,
};
use serde_json::{json, Value};

fn examples_catalog() -> Value {
    json!({"kind": "local", "uri": repo_root().join("examples/catalog").display().to_string()})
}

fn env_path(name: &str) -> String {
    format!("/projects/demo/users/me/environments/{name}")
}

#[test]
fn terraform_deploy_redeploy_and_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    s.setup("examples", examples_catalog());

    // Deploy.
    let (st, body, op) = s.put_env("web", "examples", "HelloTerraform", json!({"name": "shop"}));
    assert_eq!(st, 201, "{body}");
    assert_eq!(body["provisioningState"], "Creating");
    let op = op.expect("Operation-Location header");
    let log = s.succeeded_log("web", &op);
    assert_eq!(s.get(&env_path("web"))["provisioningState"], "Succeeded");
    assert!(
        log.contains("Apply complete! Resources: 2 added, 0 changed, 0 destroyed."),
        "{log}"
    );
    let outputs = s.get(&format!("{}/outputs", env_path("web")))["outputs"].clone();
    assert_eq!(
        outputs["app_name"],
        json!({"type": "string", "value": "shop", "sensitive": false})
    );
    assert_eq!(outputs["instance_count"]["type"], "number");
    assert_eq!(outputs["instance_count"]["value"], 1);
    assert_eq!(outputs["logs_enabled"]["type"], "boolean");
    assert_eq!(outputs["logs_enabled"]["value"], false);
    assert_eq!(outputs["instances"]["type"], "array");
    assert_eq!(outputs["instances"]["value"], json!(["shop-0"]));
    assert_eq!(outputs["labels"]["type"], "object");
    assert_eq!(
        outputs["labels"]["value"],
        json!({"tier": "dev", "environment": "web"})
    );
    let app_id = outputs["app_id"]["value"].clone();
    let archives = stored_state_archives(&s.data);
    assert_eq!(archives.len(), 1);
    let state = zip_entry(&archives[0].1, "environment.tfstate").expect("state in storage.zip");
    assert!(state.contains("terraform_data"), "{state}");

    // Redeploy with a changed parameter: Terraform updates from the stored state.
    let (st, body, op2) = s.put_env(
        "web",
        "examples",
        "HelloTerraform",
        json!({"name": "shop", "instance_count": 2}),
    );
    assert_eq!(st, 201, "{body}");
    assert_eq!(body["provisioningState"], "Updating");
    let op2 = op2.unwrap();
    let log = s.succeeded_log("web", &op2);
    assert!(
        log.contains("Apply complete! Resources: 1 added, 0 changed, 0 destroyed."),
        "{log}"
    );
    let outputs = s.get(&format!("{}/outputs", env_path("web")))["outputs"].clone();
    assert_eq!(
        outputs["app_id"]["value"], app_id,
        "unchanged resource must not be recreated"
    );
    assert_eq!(outputs["instance_count"]["value"], 2);
    assert_eq!(outputs["instances"]["value"], json!(["shop-0", "shop-1"]));
    let ops = s.get(&format!("{}/operations", env_path("web")))["value"].clone();
    assert_eq!(ops.as_array().unwrap().len(), 2);
    assert_eq!(ops[0]["environmentParameters"]["instance_count"], 2);

    // Delete: destroy runs with the state; the environment is gone.
    let (st, body, op3) = s.call("DELETE", &env_path("web"), None);
    assert_eq!(st, 202, "{body}");
    let op3 = op3.unwrap().rsplit('/').next().unwrap().to_string();
    let log = s.succeeded_log("web", &op3);
    assert!(
        log.contains("Resources: 0 added, 0 changed, 3 destroyed."),
        "{log}"
    );
    assert_eq!(s.call("GET", &env_path("web"), None).0, 404);
    assert!(
        stored_state_archives(&s.data).is_empty(),
        "environment files are removed with it"
    );
    let op3_doc = s.get(&format!("{}/operations/{op3}", env_path("web")));
    assert_eq!(op3_doc["kind"], "Delete");
    assert_eq!(op3_doc["status"], "Succeeded");
}

#[test]
fn failing_definition_reports_deployment_error_and_keeps_state() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    s.setup("examples", examples_catalog());
    let (st, _, op) = s.put_env("broken", "examples", "FailingDeploy", json!({}));
    assert_eq!(st, 201);
    let op = op.unwrap();
    let done = s.wait_op(&op);
    assert_eq!(done["status"], "Failed");
    let env = s.get(&env_path("broken"));
    assert_eq!(env["provisioningState"], "Failed");
    assert_eq!(env["error"]["code"], "DeploymentError");
    let msg = env["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with(
            "Operation failed with exit code DeploymentError ! Additional Error Details:"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("Deployment failed: this definition fails on purpose."),
        "{msg}"
    );
    assert_eq!(done["error"]["code"], "DeploymentError");
    // The resource created before the failure is in the uploaded state.
    let archives = stored_state_archives(&s.data);
    assert_eq!(archives.len(), 1);
    let state = zip_entry(&archives[0].1, "environment.tfstate").unwrap();
    assert!(state.contains("created_first"), "{state}");
}

#[test]
fn invalid_parameters_are_rejected_before_anything_is_queued() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start(&tmp.path().join("data"));
    s.setup("examples", examples_catalog());
    let (st, body, op) = s.put_env(
        "bad",
        "examples",
        "HelloTerraform",
        json!({"instance_count": "test", "tier": "huge"}),
    );
    assert_eq!(st, 400, "{body}");
    assert!(op.is_none());
    assert_eq!(body["error"]["code"], "ParameterValueInvalid");
    let details: Vec<String> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["message"].as_str().unwrap().to_string())
        .collect();
    assert!(
        details.contains(&"Missing required parameter 'name'.".to_string()),
        "{details:?}"
    );
    assert!(
        details.contains(&"Expected parameter value for 'instance_count' to be integer but found the string 'test'.".to_string()),
        "{details:?}"
    );
    assert!(
        details.iter().any(|d| d.contains("'tier' must be one of")),
        "{details:?}"
    );
    assert_eq!(
        s.call("GET", &env_path("bad"), None).0,
        404,
        "nothing was stored"
    );

    // A valid environment, then an invalid redeploy: rejected, no operation queued.
    let (st, _, op) = s.put_env("good", "examples", "HelloTerraform", json!({"name": "ok"}));
    assert_eq!(st, 201);
    s.wait_op(&op.unwrap());
    let (st, body, _) = s.put_env(
        "good",
        "examples",
        "HelloTerraform",
        json!({"name": "ok", "enable_logs": "yes"}),
    );
    assert_eq!(st, 400, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("'enable_logs'"));
    let ops = s.get(&format!("{}/operations", env_path("good")))["value"].clone();
    assert_eq!(ops.as_array().unwrap().len(), 1);
}

#[test]
fn server_killed_during_an_operation_recovers_it_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let deploy = r#"#!/bin/bash
set -e
n=$(cat "$ADE_STORAGE/count" 2>/dev/null || echo 0)
n=$((n + 1))
echo "deploy $n started"
if [ "$n" -ge 2 ]; then sleep 5; fi
echo "$n" > "$ADE_STORAGE/count"
echo "deploy $n done"
"#;
    let catalog = scripted_catalog(tmp.path(), "Slow", deploy);
    let data = tmp.path().join("data");
    let mut s = Server::start(&data);
    s.setup("git", catalog);
    let (st, _, op1) = s.put_env("slow", "git", "Slow", json!({}));
    assert_eq!(st, 201);
    assert_eq!(s.wait_op(&op1.unwrap())["status"], "Succeeded");

    let (_, _, op2) = s.put_env("slow", "git", "Slow", json!({}));
    let op2 = op2.unwrap();
    s.wait_log("slow", &op2, |l| l.contains("deploy 2 started"));
    let port = s.port;
    s.kill();
    let s = Server::start_on(&data, port);
    let log = s.succeeded_log("slow", &op2);
    assert!(log.contains("deploy 2 done"), "{log}");
    let archives = stored_state_archives(&s.data);
    assert_eq!(archives.len(), 1);
    assert_eq!(
        zip_entry(&archives[0].1, "count").unwrap().trim(),
        "2",
        "state carried across the restart"
    );
    assert_eq!(s.get(&env_path("slow"))["provisioningState"], "Succeeded");
}

#[test]
fn runner_token_only_works_for_its_own_running_operation() {
    let tmp = tempfile::tempdir().unwrap();
    let deploy = r#"#!/bin/bash
set -e
echo "token=$ADE_HTTP__TOKEN"
echo "endpoint=$ADE_HTTP__ENDPOINT"
until ade files list | grep -q '"go"'; do sleep 0.2; done
echo released
"#;
    let catalog = scripted_catalog(tmp.path(), "Waiter", deploy);
    let s = Server::start(&tmp.path().join("data"));
    s.setup("git", catalog);
    let (_, _, a) = s.put_env("env-a", "git", "Waiter", json!({}));
    let (_, _, b) = s.put_env("env-b", "git", "Waiter", json!({}));
    let (a, b) = (a.unwrap(), b.unwrap());
    // Each runner's token and its own runner API address.
    let printed = |env: &str, op: &str| {
        let log = s.wait_log(env, op, |l| l.contains("endpoint="));
        let line = |key: &str| {
            log.lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap()
                .trim()
                .to_string()
        };
        (line("token="), line("endpoint="))
    };
    let ((ta, ea), (tb, eb)) = (printed("env-a", &a), printed("env-b", &b));
    let endpoint = |op: &str| if *op == a { ea.clone() } else { eb.clone() };
    let auth = |t: &str| format!("Bearer {t}");
    let runner = |op: &str, rest: &str| format!("{}/operations/{op}/{rest}", endpoint(op));

    // The main listener serves no runner API, not even with the
    // operation's own token.
    let (st, v, _) = s.call_with(
        "GET",
        &format!("/runner/v1/operations/{a}/files"),
        None,
        &[("Authorization", &auth(&ta))],
    );
    assert_eq!(st, 401, "{v}");
    // An operation's address serves only that operation.
    let (st, v, _) = s.call_with(
        "GET",
        &format!("{ea}/operations/{b}/files"),
        None,
        &[("Authorization", &auth(&tb))],
    );
    assert_eq!(st, 404, "{v}");

    // Its own operation: allowed.
    let (st, v, _) = s.call_with(
        "GET",
        &runner(&a, "files"),
        None,
        &[("Authorization", &auth(&ta))],
    );
    assert_eq!(st, 200, "{v}");
    // Another environment's operation: refused for files, logs, outputs and environment.
    for (method, rest, body) in [
        ("GET", "files", None),
        ("GET", "files/storage.zip", None),
        ("PUT", "files/go", Some(json!("x"))),
        ("POST", "logs", Some(json!({"content": "intruder"}))),
        ("PUT", "outputs", Some(json!({"outputs": {}}))),
        ("GET", "environment", None),
    ] {
        let (st, v, _) = s.call_with(
            method,
            &runner(&b, rest),
            body,
            &[("Authorization", &auth(&ta))],
        );
        assert_eq!(
            st, 403,
            "{method} {rest} with another operation's token: {v}"
        );
        assert_eq!(v["error"]["code"], "SecurityError");
    }
    let (st, _, _) = s.call_with("GET", &runner(&b, "files"), None, &[]);
    assert_eq!(st, 401, "no token");
    assert!(!s.op_log("env-b", &b).contains("intruder"));

    // Release both runners with their own tokens.
    for (op, t) in [(&a, &ta), (&b, &tb)] {
        let (st, v, _) = s.call_with(
            "PUT",
            &runner(op, "files/go"),
            Some(json!("go")),
            &[("Authorization", &auth(t))],
        );
        assert_eq!(st, 204, "{v}");
    }
    assert_eq!(s.wait_op(&a)["status"], "Succeeded");
    assert_eq!(s.wait_op(&b)["status"], "Succeeded");
    // Once the operation has ended, its token is dead (403) or its address
    // already gone.
    let ended = ureq::get(&runner(&a, "files"))
        .set("Authorization", &auth(&ta))
        .timeout(std::time::Duration::from_secs(5))
        .call();
    assert!(
        matches!(
            ended,
            Err(ureq::Error::Transport(_) | ureq::Error::Status(403, _))
        ),
        "{:?}",
        ended.map(|r| r.status())
    );
}

#[test]
fn custom_image_with_its_own_entrypoint_works_through_ade() {
    let tmp = tempfile::tempdir().unwrap();
    let image = fixture_image("own-entrypoint");
    let repo = tmp.path().join("repo");
    let manifest =
        format!("name: OwnEntrypoint\nrunner: {image}\ntemplatePath: infra/template.txt\n");
    git_repo(
        &repo,
        &[
            ("OwnEntrypoint/environment.yaml", &manifest),
            ("OwnEntrypoint/infra/template.txt", "hello-from-template"),
        ],
    );
    let s = Server::start(&tmp.path().join("data"));
    s.setup(
        "git",
        json!({"kind": "git", "uri": format!("file://{}", repo.display()), "branch": "main"}),
    );
    let (st, _, op) = s.put_env("own", "git", "OwnEntrypoint", json!({}));
    assert_eq!(st, 201);
    let op = op.unwrap();
    let log = s.succeeded_log("own", &op);
    assert!(log.contains("own entrypoint for own (deploy)"), "{log}");
    assert!(log.contains("template says: hello-from-template"), "{log}");
    let outputs = s.get(&format!("{}/outputs", env_path("own")))["outputs"].clone();
    assert_eq!(outputs["who"]["value"], "custom");
    let archives = stored_state_archives(&s.data);
    assert_eq!(
        zip_entry(&archives[0].1, "marker").unwrap().trim(),
        "custom-state"
    );
}

#[test]
fn outputs_in_arm_types_as_the_official_arm_runner_uploads_them_are_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    // The official ARM-Bicep runner maps only Bool and Int; the other ARM
    // types reach `ade outputs upload` as ARM spells them.
    let deploy = r#"#!/bin/bash
set -e
cat > "$ADE_OUTPUTS" <<'JSON'
{"outputs": {
  "siteName": {"type": "String", "value": "web-1"},
  "instances": {"type": "number", "value": 2},
  "settings": {"type": "Object", "value": {"tier": "basic"}},
  "zones": {"type": "Array", "value": ["1", "2"]},
  "adminKey": {"type": "SecureString", "value": "s3cret"}
}}
JSON
echo deployed
"#;
    let s = Server::start(&tmp.path().join("data"));
    s.setup("git", scripted_catalog(tmp.path(), "ArmTyped", deploy));
    let (st, _, op) = s.put_env("armtyped", "git", "ArmTyped", json!({}));
    assert_eq!(st, 201);
    let done = s.wait_op(&op.unwrap());
    assert_eq!(done["status"], "Succeeded", "{done}");
    let outputs = s.get(&format!("{}/outputs", env_path("armtyped")))["outputs"].clone();
    let types: Vec<&str> = ["siteName", "instances", "settings", "zones", "adminKey"]
        .iter()
        .map(|n| outputs[n]["type"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        types,
        ["string", "number", "object", "array", "string"],
        "{outputs}"
    );
    assert_eq!(outputs["siteName"]["value"], "web-1");
    assert_eq!(outputs["adminKey"]["sensitive"], true, "{outputs}");
}

#[test]
fn an_image_built_from_microsofts_core_talks_to_slipway_through_the_mounted_ade() {
    let tmp = tempfile::tempdir().unwrap();
    let image = fixture_image("microsoft-core");
    let repo = tmp.path().join("repo");
    git_repo(
        &repo,
        &[
            (
                "FromMicrosoftCore/environment.yaml",
                &format!("name: FromMicrosoftCore\nrunner: {image}\ntemplatePath: main.txt\n"),
            ),
            ("FromMicrosoftCore/main.txt", "template"),
        ],
    );
    let catalog =
        json!({"kind": "git", "uri": format!("file://{}", repo.display()), "branch": "main"});

    // With the image's own ade (Microsoft's, which talks to Azure) the
    // operation cannot even start its protocol.
    let plain = Server::start_plain(&tmp.path().join("plain"), common::free_port(), &[]);
    plain.setup("git", catalog.clone());
    let (st, _, op) = plain.put_env("msft", "git", "FromMicrosoftCore", json!({}));
    assert_eq!(st, 201);
    let op = op.unwrap();
    let done = plain.wait_op(&op);
    assert_eq!(done["status"], "Failed", "{done}");
    let log = plain.op_log("msft", &op);
    assert!(log.contains("Microsoft ADE CLI"), "{done}\n{log}");
    drop(plain);

    // Slipway's static ade mounted over it: the same image deploys.
    let s = Server::start(&tmp.path().join("data"));
    s.setup("git", catalog);
    let (st, _, op) = s.put_env("msft", "git", "FromMicrosoftCore", json!({}));
    assert_eq!(st, 201);
    let log = s.succeeded_log("msft", &op.unwrap());
    assert!(!log.contains("Microsoft ADE CLI"), "{log}");
}

/// Azure for the predefined ARM runners, as a test can have it: the Entra
/// and ARM stand-ins (ARM over https in a network namespace of the test's
/// own, which the type's `allowedCidrs` opens), a runner image FROM
/// `base_image` that trusts the stand-in's CA and reads its cloud metadata
/// (what an operator of a private cloud adds), a server whose `ARM` runner
/// is that image, and project `demo` whose type `Dev` deploys to a
/// subscription with an Entra identity. Manifests may say `{image}`.
struct AzureLab {
    s: Server,
    arm: ArmStandIn,
    image: String,
    secret: &'static str,
    _host: NetnsHost,
    _idp: EntraStandIn,
    _tmp: tempfile::TempDir,
}

/// Azure's built-in Owner and Reader role definitions.
const OWNER_ROLE: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
const READER_ROLE: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
/// Entra object ids: a user given Reader by the type, an environment owner.
const READER_OID: &str = "aaaaaaaa-0000-4000-8000-00000000000a";
const OWNER_OID: &str = "bbbbbbbb-0000-4000-8000-00000000000b";

const ARM_TEMPLATE_SCHEMA: &str =
    "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#";

impl AzureLab {
    fn start(k: u32, base_image: &str, files: &[(&str, String)]) -> AzureLab {
        let tmp = tempfile::tempdir().unwrap();
        let secret = "entra-Secret~arm-Zk.9w";
        let idp = EntraStandIn::start("tenant-456", "client-123", secret);
        let host = NetnsHost::start(k);
        let arm = ArmStandIn::start_in(&host);
        let image = format!("localhost/slipway/test-runner-{k}:{}", std::process::id());
        let ctx = tmp.path().join("image");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::copy(&arm.certs.ca_file, ctx.join("ca.crt")).unwrap();
        std::fs::write(
            ctx.join("Containerfile"),
            format!(
                "FROM {base_image}\nCOPY ca.crt /etc/slipway/cloud-ca.crt\nENV REQUESTS_CA_BUNDLE=/etc/slipway/cloud-ca.crt SSL_CERT_FILE=/etc/slipway/cloud-ca.crt ARM_CLOUD_METADATA_URL={}/metadata/endpoints?api-version=2022-09-01\n",
                arm.base_url
            ),
        )
        .unwrap();
        let built = std::process::Command::new("podman")
            .args(["build", "--quiet", "-t", &image])
            .arg(&ctx)
            .output()
            .unwrap();
        assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        );
        let files: Vec<(String, String)> = files
            .iter()
            .map(|(p, c)| (format!("Environments/{p}"), c.replace("{image}", &image)))
            .collect();
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        let repo = tmp.path().join("repo");
        git_repo(&repo, &refs);
        let ca = arm.certs.ca_file.to_string_lossy().to_string();
        let s = Server::start_with(
            &tmp.path().join("data"),
            common::free_port(),
            &["--ca-file", &ca, "--runner-arm", &image],
        );
        s.setup_project();
        let (st, v, _) = s.call(
            "PUT",
            "/admin/secrets/entra",
            Some(json!({"kind": "deploymentIdentity", "value": {"clientId": "client-123", "tenantId": "tenant-456", "clientSecret": secret, "authorityHost": idp.authority, "resourceManagerEndpoint": arm.base_url}})),
        );
        assert_eq!(st, 200, "{v}");
        let (st, v, _) = s.call(
            "PUT",
            "/admin/projects/demo/environmentTypes/Dev",
            Some(json!({"deploymentIdentity": "entra", "deploymentTargetId": "/subscriptions/11111111-2222-3333-4444-555555555555", "runnerPolicy": {"allowedCidrs": [host.cidr()]},
                // ADE's Azure role assignments on each environment's group:
                // Owner for the creator, Reader for one more Entra user.
                "creatorRoleAssignment": {"roles": {OWNER_ROLE: {}}},
                "userRoleAssignments": {READER_OID: {"roles": {READER_ROLE: {}}}}})),
        );
        assert_eq!(st, 200, "{v}");
        let (st, v, _) = s.call(
            "PUT",
            "/admin/catalogs/cat",
            Some(json!({"kind": "git", "uri": format!("file://{}", repo.display()), "branch": "main", "path": "/Environments"})),
        );
        assert_eq!(st, 201, "{v}");
        AzureLab {
            s,
            arm,
            image,
            secret,
            _host: host,
            _idp: idp,
            _tmp: tmp,
        }
    }

    /// Deploys `(definition, parameters)` as environment `name`, or deletes
    /// it (`None`); returns the finished operation and its log.
    fn run(&self, name: &str, definition: Option<(&str, Value)>) -> (Value, String) {
        let s = &self.s;
        let (st, v, op) = match definition {
            Some((d, params)) => s.put_env(name, "cat", d, params),
            None => {
                let (st, v, loc) = s.call("DELETE", &env_path(name), None);
                (
                    st,
                    v,
                    loc.and_then(|l| l.rsplit('/').next().map(str::to_string)),
                )
            }
        };
        assert!(st == 201 || st == 202, "{name}: {st} {v}");
        let op = op.unwrap();
        let done = s.wait_op(&op);
        let log = s
            .call(
                "GET",
                &format!("{}/operations/{op}/logs", env_path(name)),
                None,
            )
            .1;
        (done, log.as_str().unwrap_or_default().to_string())
    }

    fn outputs(&self, name: &str) -> Value {
        self.s.get(&format!("{}/outputs", env_path(name)))["outputs"].clone()
    }

    /// The ARM requests whose method is `method` and whose lower-cased path
    /// contains `part`.
    fn requests(&self, method: &str, part: &str) -> Vec<Value> {
        self.arm
            .requests()
            .into_iter()
            .filter(|r| {
                r["method"] == method && r["path"].as_str().unwrap().to_lowercase().contains(part)
            })
            .collect()
    }

    /// Asserts that no request to ARM carried the client secret.
    fn assert_secret_never_reached_arm(&self) {
        assert!(
            !self
                .arm
                .requests()
                .iter()
                .any(|r| r.to_string().contains(self.secret)),
            "the client secret reached ARM"
        );
    }
}

impl Drop for AzureLab {
    fn drop(&mut self) {
        let _ = std::process::Command::new("podman")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

/// A template with one site named by parameter `siteName` and outputs of
/// four ARM types (one secure).
fn site_template() -> String {
    json!({
        "$schema": ARM_TEMPLATE_SCHEMA,
        "contentVersion": "1.0.0.0",
        "parameters": {
            "siteName": {"type": "string"},
            "adminPassword": {"type": "securestring", "defaultValue": "not-shown"}
        },
        "resources": [{"type": "Microsoft.Web/sites", "apiVersion": "2022-03-01", "name": "[parameters('siteName')]", "location": "westeurope"}],
        "outputs": {
            "siteName": {"type": "string", "value": "[parameters('siteName')]"},
            "instances": {"type": "int", "value": 2},
            "https": {"type": "bool", "value": true},
            "adminPassword": {"type": "securestring", "value": "[parameters('adminPassword')]"}
        }
    })
    .to_string()
}

/// A template whose one resource ARM refuses with `message`.
fn failing_template(message: &str) -> String {
    json!({
        "$schema": ARM_TEMPLATE_SCHEMA,
        "contentVersion": "1.0.0.0",
        "resources": [{"type": "StandIn/fail", "name": "site", "properties": {"message": message}}]
    })
    .to_string()
}

/// The outputs of [`site_template`] for `site`, as ADE types.
fn assert_site_outputs(outputs: &Value, site: &str) {
    assert_eq!(outputs["siteName"]["value"], site, "{outputs}");
    assert_eq!(outputs["siteName"]["type"], "string", "{outputs}");
    assert_eq!(outputs["instances"]["type"], "number", "{outputs}");
    assert_eq!(outputs["https"]["type"], "boolean", "{outputs}");
    assert_eq!(outputs["adminPassword"]["sensitive"], true, "{outputs}");
}

const SITE_MANIFEST_PARAMETERS: &str =
    "parameters:\n- id: siteName\n  name: Site name\n  type: string\n  required: true\n";

/// Issue 19 item 3 (with items 1 and 2): a definition with `runner: ARM`
/// (or no runner, ADE's default) runs on the predefined ARM runner — the
/// Azure CLI signs in through the runner's managed identity, the template
/// is deployed into the resource group Slipway made, outputs arrive in ADE
/// types, a redeploy updates them, a delete empties the group by a
/// Complete-mode deployment and Slipway removes the group; a failed ARM
/// deployment ends Failed with ARM's words; Bicep needs a bicep binary.
#[test]
fn an_arm_template_deploys_redeploys_and_deletes_on_the_predefined_arm_runner() {
    let lab = AzureLab::start(
        1,
        "localhost/slipway/runner-arm:latest",
        &[
            (
                "WebApp/environment.yaml",
                format!("name: WebApp\nrunner: ARM\ntemplatePath: azuredeploy.json\n{SITE_MANIFEST_PARAMETERS}"),
            ),
            ("WebApp/azuredeploy.json", site_template()),
            (
                "Taken/environment.yaml",
                "name: Taken\ntemplatePath: azuredeploy.json\n".into(),
            ),
            (
                "Taken/azuredeploy.json",
                failing_template("The site name 'bad' is already taken."),
            ),
            (
                "BicepApp/environment.yaml",
                "name: BicepApp\nrunner: Bicep\ntemplatePath: main.bicep\n".into(),
            ),
            (
                "BicepApp/main.bicep",
                "param siteName string = 'bicep-site'\noutput siteName string = siteName\n".into(),
            ),
        ],
    );
    let deployments = |group: &str| {
        lab.requests(
            "PUT",
            &format!("/resourcegroups/{group}/providers/microsoft.resources/deployments/"),
        )
    };

    let (done, log) = lab.run("web", Some(("WebApp", json!({"siteName": "contoso"}))));
    assert_eq!(done["status"], "Succeeded", "{done}\n{log}");
    assert!(log.contains("Successfully signed into Azure"), "{log}");
    assert!(
        log.contains("Outputs successfully generated for ADE"),
        "{log}"
    );
    assert_site_outputs(&lab.outputs("web"), "contoso");
    // The group came first, then the deployment with ADE's parameters.
    let seen = lab.arm.requests();
    let group_put = seen
        .iter()
        .position(|r| {
            r["method"] == "PUT"
                && r["path"]
                    .as_str()
                    .unwrap()
                    .ends_with("/resourcegroups/demo-web")
        })
        .expect("the resource group was created");
    let first = deployments("demo-web");
    assert_eq!(first.len(), 1, "{seen:?}");
    let deploy_at = seen.iter().position(|r| r == &first[0]).unwrap();
    assert!(group_put < deploy_at, "{seen:?}");
    assert!(
        first[0]["body"].as_str().unwrap().contains("contoso"),
        "{first:?}"
    );

    // Issue 19 item 2: the type's Azure roles on the group. The Reader
    // user's always; the creator's Owner only for an owner with an Entra
    // object id (this one was made by the admin token's user).
    let assigned = |group: &str| {
        lab.requests(
            "PUT",
            &format!("/resourcegroups/{group}/providers/microsoft.authorization/roleassignments/"),
        )
    };
    let roles = assigned("demo-web");
    assert_eq!(roles.len(), 1, "{roles:?}");
    let body = roles[0]["body"].as_str().unwrap();
    assert!(
        body.contains(READER_OID)
            && body.contains(&format!("/subscriptions/11111111-2222-3333-4444-555555555555/providers/Microsoft.Authorization/roleDefinitions/{READER_ROLE}")),
        "{body}"
    );
    let role_at = seen.iter().position(|r| r == &roles[0]).unwrap();
    assert!(group_put < role_at && role_at < deploy_at, "{seen:?}");
    // An environment created for an Entra user: its owner gets Owner too.
    let (st, v, loc) = lab.s.call(
        "PUT",
        &format!("/projects/demo/users/{OWNER_OID}/environments/owned"),
        Some(json!({"environmentType": "Dev", "catalogName": "cat", "environmentDefinitionName": "WebApp", "parameters": {"siteName": "owned"}})),
    );
    assert_eq!(st, 201, "{v}");
    let done = lab.s.wait_op(loc.unwrap().rsplit('/').next().unwrap());
    assert_eq!(done["status"], "Succeeded", "{done}");
    let roles: Vec<String> = assigned("demo-owned")
        .iter()
        .map(|r| r["body"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(roles.len(), 2, "{roles:?}");
    assert!(
        roles
            .iter()
            .any(|b| b.contains(OWNER_OID) && b.contains(OWNER_ROLE)),
        "{roles:?}"
    );
    let pet = lab.s.get("/admin/projects/demo/environmentTypes/Dev");
    assert!(
        pet["creatorRoleAssignment"]["roles"][OWNER_ROLE].is_object()
            && pet["userRoleAssignments"][READER_OID]["roles"][READER_ROLE].is_object(),
        "{pet}"
    );

    // Redeploy with another name: the outputs follow.
    let (done, log) = lab.run("web", Some(("WebApp", json!({"siteName": "fabrikam"}))));
    assert_eq!(done["status"], "Succeeded", "{done}\n{log}");
    assert_site_outputs(&lab.outputs("web"), "fabrikam");

    // Delete: a Complete-mode deployment of nothing, then the group goes.
    let (done, log) = lab.run("web", None);
    assert_eq!(done["status"], "Succeeded", "{done}\n{log}");
    let all = deployments("demo-web");
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(
        all[2]["body"].as_str().unwrap().contains("Complete"),
        "{all:?}"
    );
    assert_eq!(lab.requests("DELETE", "/resourcegroups/demo-web").len(), 1);
    assert_eq!(lab.s.call("GET", &env_path("web"), None).0, 404);

    // A failing ARM deployment (no runner: ADE's default, ARM): Failed, with ARM's words.
    let (done, log) = lab.run("taken", Some(("Taken", json!({}))));
    assert_eq!(done["status"], "Failed", "{done}\n{log}");
    let message = done["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("The site name 'bad' is already taken."),
        "{done}\n{log}"
    );

    // Bicep needs a bicep binary, copied into runner-arm from the host that
    // built it; without one the deploy says how to supply it.
    let host_has_bicep = std::process::Command::new("sh")
        .args(["-c", "command -v bicep"])
        .output()
        .unwrap()
        .status
        .success();
    let (done, log) = lab.run("bicep", Some(("BicepApp", json!({}))));
    if host_has_bicep {
        assert_eq!(done["status"], "Succeeded", "{done}\n{log}");
    } else {
        assert_eq!(done["status"], "Failed", "{done}\n{log}");
        let message = done["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("needs the bicep CLI") && message.contains("runner-images/build"),
            "{done}\n{log}"
        );
    }
    lab.assert_secret_never_reached_arm();
}

/// Issue 19 item 4: the Deployment Stacks runner manages an environment's
/// resources as one stack named after it (`az stack group`): create,
/// update, outputs in ADE types, a failed stack Failed with ARM's words,
/// and a delete that removes the stack before Slipway removes the group.
#[test]
fn a_deployment_stack_is_created_updated_and_deleted_by_the_deployment_stacks_runner() {
    let lab = AzureLab::start(
        2,
        "localhost/slipway/runner-deploymentstacks:latest",
        &[
            (
                "StackApp/environment.yaml",
                format!("name: StackApp\nrunner: {{image}}\ntemplatePath: azuredeploy.json\n{SITE_MANIFEST_PARAMETERS}"),
            ),
            ("StackApp/azuredeploy.json", site_template()),
            (
                "StackTaken/environment.yaml",
                "name: StackTaken\nrunner: {image}\ntemplatePath: azuredeploy.json\n".into(),
            ),
            (
                "StackTaken/azuredeploy.json",
                failing_template("The site name 'stack' is already taken."),
            ),
        ],
    );
    let stack = "/resourcegroups/demo-shop/providers/microsoft.resources/deploymentstacks/shop";

    let (done, log) = lab.run("shop", Some(("StackApp", json!({"siteName": "contoso"}))));
    assert_eq!(done["status"], "Succeeded", "{done}\n{log}");
    assert!(log.contains("Deployment stack shop: Succeeded"), "{log}");
    assert_site_outputs(&lab.outputs("shop"), "contoso");
    let (done, log) = lab.run("shop", Some(("StackApp", json!({"siteName": "fabrikam"}))));
    assert_eq!(done["status"], "Succeeded", "{done}\n{log}");
    assert_site_outputs(&lab.outputs("shop"), "fabrikam");
    let puts = lab.requests("PUT", stack);
    assert_eq!(puts.len(), 2, "{puts:?}");
    assert!(
        puts[1]["body"].as_str().unwrap().contains("fabrikam"),
        "{puts:?}"
    );

    let (done, log) = lab.run("shop", None);
    assert_eq!(done["status"], "Succeeded", "{done}\n{log}");
    assert_eq!(lab.requests("DELETE", stack).len(), 1, "{log}");
    assert_eq!(
        lab.requests("DELETE", "/resourcegroups/demo-shop").len(),
        2,
        "the stack, then the group"
    );

    let (done, log) = lab.run("taken", Some(("StackTaken", json!({}))));
    assert_eq!(done["status"], "Failed", "{done}\n{log}");
    let message = done["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("The site name 'stack' is already taken."),
        "{done}\n{log}"
    );
    lab.assert_secret_never_reached_arm();
}

/// Issue 19 item 5: the Pulumi runner follows ADE's Pulumi contract — a
/// stack per environment in a backend inside the environment's storage
/// (kept between operations), ADE parameters as stack config, `pulumi up`,
/// outputs typed and secret ones sensitive, `pulumi destroy` on delete —
/// checked against a stand-in Pulumi CLI; without a CLI the deploy says how
/// to build one in.
#[test]
fn the_pulumi_runner_keeps_a_stack_per_environment_in_its_storage() {
    let tmp = tempfile::tempdir().unwrap();
    let stand_in = fixture_image("pulumi-stand-in");
    let yaml = "name: site\nruntime: yaml\n";
    let repo = tmp.path().join("repo");
    git_repo(
        &repo,
        &[
            (
                "Environments/Site/environment.yaml",
                &format!("name: Site\nrunner: {stand_in}\ntemplatePath: Pulumi.yaml\nparameters:\n- id: siteName\n  name: Site name\n  type: string\n  required: true\n- id: replicas\n  name: Replicas\n  type: integer\n  default: 2\n"),
            ),
            ("Environments/Site/Pulumi.yaml", yaml),
            (
                "Environments/NoCli/environment.yaml",
                "name: NoCli\nrunner: localhost/slipway/runner-pulumi:latest\ntemplatePath: Pulumi.yaml\n",
            ),
            ("Environments/NoCli/Pulumi.yaml", yaml),
        ],
    );
    let s = Server::start(&tmp.path().join("data"));
    s.setup(
        "git",
        json!({"kind": "git", "uri": format!("file://{}", repo.display()), "branch": "main", "path": "/Environments"}),
    );
    let (st, v, op) = s.put_env("site", "git", "Site", json!({"siteName": "contoso"}));
    assert_eq!(st, 201, "{v}");
    let done = s.wait_op(&op.unwrap());
    assert_eq!(done["status"], "Succeeded", "{done}");
    let outputs = s.get(&format!("{}/outputs", env_path("site")))["outputs"].clone();
    assert_eq!(outputs["siteName"]["value"], "contoso", "{outputs}");
    assert_eq!(outputs["siteName"]["type"], "string", "{outputs}");
    assert_eq!(outputs["replicas"]["value"], "2", "{outputs}");
    assert_eq!(
        outputs["resource-group-name"]["value"], "demo-site",
        "{outputs}"
    );
    assert_eq!(outputs["configCount"]["type"], "number", "{outputs}");
    assert_eq!(outputs["apiKey"]["sensitive"], true, "{outputs}");
    assert_eq!(outputs["siteName"]["sensitive"], false, "{outputs}");
    // The stack lives in the environment's storage.
    let archives = stored_state_archives(&s.data);
    assert_eq!(archives.len(), 1);
    let stack = zip_entry(&archives[0].1, ".pulumi/stacks/site.json").unwrap();
    assert!(stack.contains("contoso"), "{stack}");

    // The delete finds the stack in the storage and destroys it.
    let (st, v, loc) = s.call("DELETE", &env_path("site"), None);
    assert_eq!(st, 202, "{v}");
    let op = loc.unwrap().rsplit('/').next().unwrap().to_string();
    let done = s.wait_op(&op);
    let log = s
        .call(
            "GET",
            &format!("{}/operations/{op}/logs", env_path("site")),
            None,
        )
        .1;
    assert_eq!(done["status"], "Succeeded", "{done}\n{log}");
    assert!(log.to_string().contains("Destroyed stack site"), "{log}");

    // runner-pulumi built without a CLI says how to build one in.
    let (st, v, op) = s.put_env("nocli", "git", "NoCli", json!({}));
    assert_eq!(st, 201, "{v}");
    let done = s.wait_op(&op.unwrap());
    assert_eq!(done["status"], "Failed", "{done}");
    let message = done["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("no Pulumi CLI") && message.contains("SLIPWAY_PULUMI_DIR"),
        "{done}"
    );
}
