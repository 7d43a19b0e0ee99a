//! Slipway's task pipeline against acr-builder's own test tables
//! (`Azure/acr-builder`, `templating/*_test.go` and `graph/*_test.go`):
//! every row that Slipway's interfaces can express, each citing its source
//! as `file:Test[row]`. Values and expectations are acb's; the task text is
//! written the way a Slipway user writes it (values under `.Values`, the
//! alias `directive:` key).
//!
//! Rows that no Slipway interface can express, and why:
//! - `templating/engine_test.go:TestRender_IgnoredTemplate`: acb renders a
//!   job of several templates with a keep-set; Slipway renders one task file.
//! - `templating/values_test.go:TestToYAMLString`, `load_test.go`
//!   (`LoadConfig`, `DecodeConfig`, `LoadTemplate`, `DecodeTemplate`):
//!   acb's Go file-loading helpers; Slipway reads the same files beneath the
//!   context (`slipway task render`, covered in `slipway/tests/cli.rs`).
//! - `templating/base_render_options_test.go:TestRenderAndResolveSecrets`'s
//!   resolved values: they come from a mock Key Vault; Slipway refuses
//!   `keyvault` secrets (no Azure) — the rendered secret IDs are checked.
//! - `graph/task_test.go:TestUsingRegistryCreds`, `TestNewTask`,
//!   `credential_test.go`, `registry_credential_test.go`: acb's
//!   `--credential` JSON; Slipway's run registry credentials are server-side.
//! - `graph/task_test.go:TestNewTaskFromString[""]` and
//!   `TestValidateTaskVersion[""]`: Go constructors called without a file;
//!   through a task file acb (and Slipway) refuse an empty rendered template
//!   and default an empty version to v1.0.0.
//! - `graph/task_test.go:TestUnmarshalTaskFromString_Envs`: `acb exec --env`
//!   defaults; a Slipway run has no such flag.
//! - `graph/step_test.go:TestEquals`, `secret_test.go:TestSecretEquals`,
//!   the `nil` rows of `TestValidate`/`TestValidateSecret`/
//!   `TestShouldExecuteImmediately`/`TestHasNoWhen`/`TestIsAkvSecret`: Go
//!   pointer and struct equality.
//! - `graph/network_test.go:TestNetwork`: docker CLI argument lists; Slipway
//!   creates networks through the Engine API, and its isolation policy
//!   refuses `ipv6` and drivers other than `bridge` (see the deviation rows).
//! - `graph/preprocessor_test.go` remote sources (`https://httpstat.us/404`,
//!   `raw.githubusercontent.com/…`): no internet here; the same rows run
//!   with the source served by the loader Slipway passes in.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use serde_json::{json, Value};
use slipway_core::isolation::StepPermissions;
use slipway_core::shell::quote;
use slipway_core::tasks::taskfile::{parse_task, plan, Plan, StepKind};
use slipway_core::tasks::template::render;
use slipway_core::tasks::values::{
    merge_values, parse_set, preprocess_aliases, strip_comment_lines, template_data, LoadError,
    RunVariables,
};
use slipway_tasks::exec::parse_build;

/// Pass/fail per row.
#[derive(Default)]
struct Tally {
    passed: usize,
    failed: Vec<String>,
}

impl Tally {
    fn row(&mut self, source: &str, ok: bool, detail: impl std::fmt::Debug) {
        if ok {
            self.passed += 1;
        } else {
            self.failed.push(format!("{source}: {detail:?}"));
        }
    }

    /// A template rendered with `data` gives `want`.
    fn renders(&mut self, source: &str, tpl: &str, data: &Value, want: &str) {
        let got = render(tpl, data);
        let ok = got.as_deref().ok() == Some(want);
        self.row(source, ok, (tpl, got, want));
    }
}

fn task_plan(yaml: &str, permissions: &StepPermissions) -> Result<Plan, String> {
    parse_task(yaml)
        .and_then(|t| plan(t, false, permissions))
        .map_err(|e| e.to_string())
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap()
}

fn templating(t: &mut Tally) {
    // engine_test.go:TestRenderAllTemplates — the job's values overridden
    // by the run's (here: a values file and --set).
    let set = parse_set(&["description=THIS IS a FRuiT JoB".into()]).unwrap();
    let values = merge_values(
        Some("jobName: fruitjob\ndescription: this should get overridden\n"),
        &set,
    )
    .unwrap();
    t.renders(
        "templating/engine_test.go:TestRenderAllTemplates",
        "{{ .Values.jobName | upper }} - {{ .Values.description | lower }}",
        &json!({ "Values": values }),
        "FRUITJOB - this is a fruit job",
    );
    // engine_test.go:TestRenderMath.
    let values = merge_values(Some("foo: 5\nbar: 10\n"), &[]).unwrap();
    t.renders(
        "templating/engine_test.go:TestRenderMath",
        "{{.Values.foo | add .Values.bar}}, {{- .Values.bar | sub .Values.foo }}, {{- .Values.foo | mul .Values.bar}}",
        &json!({ "Values": values }),
        "15,-5,50",
    );

    // values_test.go:TestDeserialize (and TestDeserializeFromFile, the same data).
    let fruits = merge_values(
        Some("# TestDeserialize\ntitle: A grocery list\nfruits: [banana, apple, pear]\nfruit:\n  fruit:\n    nested: star\n    fruit: nested\n"),
        &[],
    )
    .unwrap();
    for (tpl, want) in [
        ("{{.title}}", "A grocery list"),
        ("{{len .fruits}}", "3"),
        ("{{.fruit.fruit.nested}}", "star"),
    ] {
        t.renders(
            "templating/values_test.go:TestDeserialize",
            tpl,
            &fruits,
            want,
        );
    }

    // values_test.go:TestOverrideValues (testdata/curie/values.yaml).
    let curie = merge_values(
        Some("born: 1867\nfirst: Marie\nlast: Curie\nresearch: radioactivity\nfrom: Poland\n\nawards:\n  - id: Nobel Prize in Physics\n\n  - id: Davy Medal\n\n  - id: Albert Medal\n"),
        &[],
    )
    .unwrap();
    let awards = "[map[id:Nobel Prize in Physics] map[id:Davy Medal] map[id:Albert Medal]]";
    for (tpl, want) in [
        ("{{.born}}", "1867"),
        ("{{.first}}", "Marie"),
        ("{{ .last }}", "Curie"),
        ("{{.research}}", "radioactivity"),
        ("{{.from}}", "Poland"),
        ("{{.awards}}", awards),
    ] {
        t.renders(
            "templating/values_test.go:TestOverrideValues",
            tpl,
            &curie,
            want,
        );
    }

    // values_test.go:TestOverrideValuesWithBuildInfo.
    let date = chrono::NaiveDateTime::parse_from_str("20100520-131422", "%Y%m%d-%H%M%S")
        .unwrap()
        .and_utc();
    let run = RunVariables {
        id: "SomeID".into(),
        commit: "Some Commit".into(),
        repository: "some RePo".into(),
        branch: "br".into(),
        triggered_by: "triggered from someone cool!!1".into(),
        registry: "foo.azurecr.io".into(),
        registry_name: RunVariables::registry_name_of("foo.azurecr.io"),
        git_tag: "some git tag".into(),
        date: RunVariables::date_of(date),
        shared_volume: "acb_home_vol_12345".into(),
        os: "linux".into(),
        ..Default::default()
    };
    let data = template_data(&run, &curie, &BTreeMap::new());
    for (tpl, want) in [
        ("{{.Build.ID}}", "SomeID"),
        ("{{.Run.ID}}", "SomeID"),
        ("{{.Run.Commit}}", "Some Commit"),
        ("{{ .Run.Repository}}", "some RePo"),
        ("{{.Run.Branch}}", "br"),
        ("{{.Run.TriggeredBy}}", "triggered from someone cool!!1"),
        ("{{.Run.Registry}}", "foo.azurecr.io"),
        ("{{.Run.GitTag}}", "some git tag"),
        ("{{.Run.Date}}", "20100520-131422z"),
        ("{{.Run.SharedContextDirectory}}", "acb_home_vol_12345"),
        ("{{.Run.OS}}", "linux"),
        ("{{.Values.born}}", "1867"),
        ("{{.Values.first}}", "Marie"),
        ("{{.Values.last}}", "Curie"),
        ("{{.Values.from}}", "Poland"),
        ("{{.Values.awards }}", awards),
    ] {
        t.renders(
            "templating/values_test.go:TestOverrideValuesWithBuildInfo",
            tpl,
            &data,
            want,
        );
    }

    // base_render_options_test.go:TestParseValues_Valid.
    let src = "templating/base_render_options_test.go:TestParseValues_Valid";
    let items: Vec<String> = ["a=b", "b===ll", "c=12345", "d=ab=", "e=", "f=sadf=234"]
        .map(String::from)
        .to_vec();
    let got = parse_set(&items).and_then(|s| merge_values(None, &s));
    let want = json!({"a": "b", "b": "==ll", "c": "12345", "d": "ab=", "e": "", "f": "sadf=234"});
    t.row(src, got.as_ref().ok() == Some(&want), &got);
    let items: Vec<String> = ["a=b", "a=c", "a=d"].map(String::from).to_vec();
    let got = parse_set(&items).and_then(|s| merge_values(None, &s));
    t.row(src, got.as_ref().ok() == Some(&json!({"a": "d"})), &got);
    // base_render_options_test.go:TestParseValues_Invalid (each item alone).
    for item in ["apple", "=k", "=====", "=", "", "           "] {
        let got = parse_set(&[item.to_string()]);
        t.row(
            "templating/base_render_options_test.go:TestParseValues_Invalid",
            got.is_err(),
            (item, got),
        );
    }
    // base_render_options_test.go:TestParseRegistryName.
    for (registry, want) in [
        ("", ""),
        ("foo", "foo"),
        ("foo.azurecr.io", "foo"),
        ("foo-bar.azurecr-test.io", "foo-bar"),
        ("  ", "  "),
    ] {
        let got = RunVariables::registry_name_of(registry);
        t.row(
            "templating/base_render_options_test.go:TestParseRegistryName",
            got == want,
            (registry, got),
        );
    }
    // base_render_options_test.go:TestShellQuote (the quoting of
    // .ValuesJSON and .RunJSON).
    for (original, want) in [
        ("", "''"),
        ("''", r#"''"'"''"'"''"#),
        ("'single quotes'", r#"''"'"'single quotes'"'"''"#),
        ("double quotes", "'double quotes'"),
        ("no quotes", "'no quotes'"),
        (r"{;$\}", r"'{;$\}'"),
        ("nothingtoescape", "nothingtoescape"),
        (
            r#"{"val": "foo", "bar": "something#@$!()"}"#,
            r#"'{"val": "foo", "bar": "something#@$!()"}'"#,
        ),
    ] {
        let got = quote(original);
        t.row(
            "templating/base_render_options_test.go:TestShellQuote",
            got == want,
            (original, got),
        );
    }
    // base_render_options_test.go:TestLoadAndRenderSteps
    // (testdata/caching/cache.yaml with values.yaml; and an empty file).
    let values = merge_values(Some("pullStep: puller"), &[]).unwrap();
    let data = template_data(&RunVariables::default(), &values, &BTreeMap::new());
    let cache = "steps:\n  - id: \"{{.Values.pullStep}}\"\n    cmd: docker pull golang:1.10.1-stretch\n\n  - id: build-foo\n    cmd: build -f Dockerfile https://github.com/Azure/acr-builder.git --cache-from=ubuntu\n\n  - id: build-bar\n    cmd: build -f Dockerfile https://github.com/Azure/acr-builder.git --cache-from=ubuntu\n    when: [\"{{.Values.pullStep}}\"]";
    let want = "steps:\n  - id: \"puller\"\n    cmd: docker pull golang:1.10.1-stretch\n\n  - id: build-foo\n    cmd: build -f Dockerfile https://github.com/Azure/acr-builder.git --cache-from=ubuntu\n\n  - id: build-bar\n    cmd: build -f Dockerfile https://github.com/Azure/acr-builder.git --cache-from=ubuntu\n    when: [\"puller\"]";
    t.renders(
        "templating/base_render_options_test.go:TestLoadAndRenderSteps",
        &strip_comment_lines(cache),
        &data,
        want,
    );
    t.renders(
        "templating/base_render_options_test.go:TestLoadAndRenderSteps",
        &strip_comment_lines(""),
        &data,
        "",
    );
    // base_render_options_test.go:TestLoadAndRenderBuildSteps
    // (testdata/caching/Dockerfile-test).
    let dockerfile = "FROM node:9-alpine\n\nENV NODE_VERSION 9.11.1a";
    t.renders(
        "templating/base_render_options_test.go:TestLoadAndRenderBuildSteps",
        &strip_comment_lines(dockerfile),
        &json!({}),
        dockerfile,
    );
    // base_render_options_test.go:TestRenderAndResolveSecrets: the secret IDs
    // after rendering (values also serve as .Run, as in the test).
    let cases: [(&str, Value, &[&str]); 5] = [
        (
            "secrets:\n  - id: mysecret\n    keyvault: https://myvault.vault.azure.net/secrets/mysecret\n  - id: mysecret1\n    keyvault: https://myvault.vault.azure.net/secrets/mysecret1\n    clientID: c72b2df0-b9d8-4ac6-9363-7c1eb06c1c86",
            json!({"mykey": "myvalue"}),
            &["mysecret", "mysecret1"],
        ),
        (
            "secrets:\n  - id: mysecret\n    keyvault: {{.Values.myakv}}\n  - id: {{.Values.myid2}}\n    keyvault: {{.Values.myakv2}}\n    clientID: {{.Values.myclientID}}",
            json!({"myid2": "mysecret1", "myakv": "https://myvault.vault.azure.net/secrets/mysecret", "myakv2": "https://myvault.vault.azure.net/secrets/mysecret1", "myclientID": "c72b2df0-b9d8-4ac6-9363-7c1eb06c1c86"}),
            &["mysecret", "mysecret1"],
        ),
        (
            "secrets:\n  - id: mysecret\n    keyvault: {{.Values.myakv}}\n  - id: {{.Run.ID}}_{{.Values.myid2}}\n    keyvault: {{.Values.myakv2}}\n    clientID: {{.Values.myclientID}}",
            json!({"ID": "runId", "myid2": "mysecret1", "myakv": "https://myvault.vault.azure.net/secrets/mysecret", "myakv2": "https://myvault.vault.azure.net/secrets/mysecret1", "myclientID": "c72b2df0-b9d8-4ac6-9363-7c1eb06c1c86"}),
            &["mysecret", "runId_mysecret1"],
        ),
        (
            "secrets:\n  - id: mysecret\n    keyvault: myakv",
            json!({"mykey": "myvalue"}),
            &["mysecret"],
        ),
        (
            "steps:\n  - id: secrets\n    cmd: bash echo hello world",
            json!({"mykey": "myvalue"}),
            &[],
        ),
    ];
    for (tpl, values, want) in cases {
        let data = json!({"Values": values, "Run": values});
        let got = render(&strip_comment_lines(tpl), &data)
            .map_err(|e| e.to_string())
            .and_then(|r| parse_task(&r).map_err(|e| e.to_string()))
            .map(|task| {
                task.secrets
                    .iter()
                    .map(|s| s.id.clone())
                    .collect::<Vec<_>>()
            });
        t.row(
            "templating/base_render_options_test.go:TestRenderAndResolveSecrets",
            got.as_ref().is_ok_and(|ids| ids == want),
            (tpl, got),
        );
    }

    // template_test.go:TestNewTemplate (comment lines dropped).
    for (template, want) in [
        ("", ""),
        ("# Something with a comment", ""),
        (
            "# comments\nsteps:\n # should be skipped\n  - build: -f Dockerfile -t . # this should be preserved\n           #everywhere\n  #even at the end of the file",
            "steps:\n  - build: -f Dockerfile -t . # this should be preserved",
        ),
    ] {
        let got = strip_comment_lines(template);
        t.row(
            "templating/template_test.go:TestNewTemplate",
            got == want,
            (template, got),
        );
    }
}

/// graph/testdata/acb.yaml: its header, then the same steps as
/// preprocessing-stress.yaml's "Expected" ([`STRESS_EXPECTED_STEPS`]).
fn acb_yaml() -> String {
    format!(
        "# root -> puller\n#      -> C -> B\n#      -> build-qux -> build-foo -> build-qaz\n#      -> build-bar\nstepTimeout: 600\nversion: v1.0.0\n\nenv:\n  - \"foo=taskEnv\"\n\nsteps:\n{STRESS_EXPECTED_STEPS}"
    )
}

/// What acb's build-qaz asks for, granted as a DevCenter Admin would.
fn qaz_grant() -> StepPermissions {
    StepPermissions {
        privileged: true,
        host_network: true,
        host_paths: vec![],
    }
}

fn graph(t: &mut Tally, deviations: &mut Vec<String>) {
    // dag_test.go:TestDagCreation_ValidFile.
    let src = "graph/dag_test.go:TestDagCreation_ValidFile";
    let refused = task_plan(
        &strip_comment_lines(&acb_yaml()),
        &StepPermissions::default(),
    );
    deviations.push(format!(
        "{src}: without a grant Slipway refuses build-qaz's privileged/host network: {}",
        refused.as_ref().err().cloned().unwrap_or_default()
    ));
    assert!(refused.is_err(), "build-qaz must need a grant");
    let p = task_plan(&strip_comment_lines(&acb_yaml()), &qaz_grant());
    t.row(src, p.is_ok(), p.as_ref().err());
    if let Ok(p) = p {
        let step = |id: &str| p.task.steps.iter().find(|s| s.id == id).unwrap();
        let after = |id: &str| {
            let i = p.task.steps.iter().position(|s| s.id == id).unwrap();
            p.deps[i]
                .iter()
                .map(|&d| p.task.steps[d].id.clone())
                .collect::<Vec<_>>()
        };
        t.row(
            src,
            p.task.version.as_deref() == Some("v1.0.0"),
            &p.task.version,
        );
        for (id, parents) in [
            ("puller", vec![]),
            ("C", vec![]),
            ("build-qux", vec![]),
            ("build-bar", vec![]),
            ("B", vec!["C"]),
            ("build-foo", vec!["build-qux"]),
            ("build-qaz", vec!["build-foo"]),
        ] {
            let got = after(id);
            t.row(src, got == parents, (id, got));
        }
        let puller = step("puller");
        t.row(
            src,
            puller.env == ["eric=foo", "foo=bar"]
                && puller.timeout == 600
                && puller.retries == 5
                && puller.retry_delay == 90
                && puller.pull
                && puller.entry_point.as_deref() == Some("someEntryPoint")
                && puller.working_directory.as_deref() == Some("pullDir")
                && puller.network.as_deref() == Some("acb_default_network"),
            puller,
        );
        let c = step("C");
        t.row(
            src,
            c.ports == ["8000:8000", "8080:8080"]
                && c.expose == ["80", "81"]
                && c.keep
                && c.isolation.as_deref() == Some("default")
                && c.env == ["foo=taskEnv"]
                && c.retry_delay == 5,
            c,
        );
        let b = step("B");
        t.row(
            src,
            b.ignore_errors && b.disable_working_directory_override && b.env == ["foo=taskEnv"],
            b,
        );
        let build_foo = step("build-foo");
        t.row(src, build_foo.env == ["eric=foo", "foo=taskEnv"], build_foo);
        let qux = step("build-qux");
        t.row(src, qux.detach && qux.start_delay == 50, qux);
        let qaz = step("build-qaz");
        t.row(
            src,
            qaz.privileged
                && qaz.user.as_deref() == Some("root")
                && qaz.network.as_deref() == Some("host")
                && qaz.repeat == 2
                && qaz.kind() == Ok(StepKind::Build),
            qaz,
        );
    }

    // step_test.go:TestValidate (one step per task; nil is Go-only).
    let src = "graph/step_test.go:TestValidate";
    for (step, should_error) in [
        ("{}", true),
        ("{id: a}", true),
        ("{id: foo bar}", true),
        ("{id: a, cmd: b, when: [a]}", true),
        ("{id: a, cmd: b, when: ['-', c]}", true),
        ("{id: a, cmd: b}", false),
        ("{id: a, push: [b]}", false),
        ("{id: a, build: b}", false),
        ("{id: a, cmd: b, push: [a]}", true),
        ("{id: a, cmd: b, build: f}", true),
        ("{id: apple, build: banana, push: [d]}", true),
        ("{id: repeat, build: b, repeat: -1}", true),
        ("{id: retries, build: b, retries: -1}", true),
    ] {
        let got = task_plan(
            &format!("steps:\n  - {step}\n"),
            &StepPermissions::default(),
        );
        t.row(src, got.is_err() == should_error, (step, got.err()));
    }
    // step_test.go:TestIsBuildStep.
    for (step, build) in [
        ("{build: -t foo .}", true),
        ("{cmd: builder build -t foo .}", false),
        ("{cmd: build -f Dockerfile -t blah .}", false),
    ] {
        let got = parse_task(&format!("steps:\n  - {step}\n"))
            .map(|t| t.steps[0].kind() == Ok(StepKind::Build));
        t.row(
            "graph/step_test.go:TestIsBuildStep",
            got == Ok(build),
            (step, got),
        );
    }
    // step_test.go:TestShouldExecuteImmediately and TestHasNoWhen: a second
    // step's `when` → whether it waits for the first.
    for (when, immediately, no_when) in [
        ("[]", false, true),
        ("null", false, true),
        ("[a]", false, false),
        ("['-']", true, false),
    ] {
        let got = task_plan(
            &format!("steps:\n  - {{id: a, cmd: x}}\n  - {{id: b, cmd: y, when: {when}}}\n"),
            &StepPermissions::default(),
        )
        .map(|p| p.deps[1].clone());
        let waits_for_previous = got.as_ref().is_ok_and(|d| d == &[0]);
        let at_once = got.as_ref().is_ok_and(|d| d.is_empty());
        t.row(
            "graph/step_test.go:TestShouldExecuteImmediately",
            at_once == immediately,
            (when, &got),
        );
        // acb: a step without `when` follows the previous one.
        t.row(
            "graph/step_test.go:TestHasNoWhen",
            !no_when || waits_for_previous,
            (when, &got),
        );
    }

    // task_test.go:TestInitializeTimeouts.
    for (step_timeout, want) in [(0, 600), (20000, 20000)] {
        let got = task_plan(
            &format!("stepTimeout: {step_timeout}\nsteps:\n  - cmd: x\n"),
            &StepPermissions::default(),
        )
        .map(|p| (p.task.step_timeout, p.task.steps[0].timeout));
        t.row(
            "graph/task_test.go:TestInitializeTimeouts",
            got == Ok((want, want)),
            (step_timeout, got),
        );
    }
    // task_test.go:TestMergeEnvs (task env, step env → the step's).
    let rows: [(&[&str], &[&str], &[&str]); 8] = [
        (
            &["key1=val1", "key2=val2", "key3=val3"],
            &[],
            &["key1=val1", "key2=val2", "key3=val3"],
        ),
        (
            &["key1=val1", "key2=val2", "key3=val3"],
            &["key1=newVal1", "key2=newVal2"],
            &["key1=newVal1", "key2=newVal2", "key3=val3"],
        ),
        (
            &["key1=val1,key2=val2,key3=val3"],
            &["key1=newVal1", "key2=newVal2", "key3=newVal3="],
            &["key1=newVal1", "key2=newVal2", "key3=newVal3="],
        ),
        (
            &["key1=val1,key2=val2,key3=val3"],
            &[],
            &["key1=val1", "key2=val2", "key3=val3"],
        ),
        (
            &["key1=val1,key2=val2", "key3=val3,key4=val4"],
            &["key1=newVal1", "key2=newVal2"],
            &["key1=newVal1", "key2=newVal2", "key3=val3", "key4=val4"],
        ),
        (
            &["key1=val1,key2=val2", "key3=val3,key4=val4"],
            &["key1=newVal1", "key2=newVal2", "key3=newVal3="],
            &["key1=newVal1", "key2=newVal2", "key3=newVal3=", "key4=val4"],
        ),
        (&[], &[], &[]),
        (&[], &["key=val1"], &["key=val1"]),
    ];
    for (task_env, step_env, want) in rows {
        let yaml = format!(
            "env: {}\nsteps:\n  - cmd: x\n    env: {}\n",
            json!(task_env),
            json!(step_env)
        );
        let got =
            task_plan(&yaml, &StepPermissions::default()).map(|p| p.task.steps[0].env.clone());
        t.row(
            "graph/task_test.go:TestMergeEnvs",
            got.as_ref().is_ok_and(|e| e == want),
            (task_env, step_env, got),
        );
    }
    // task_test.go:TestNewTaskFromString.
    let src = "graph/task_test.go:TestNewTaskFromString";
    let got = task_plan(
        "secrets:\n  - id: mysecret\n    keyvault: https://myvault.vault.azure.net/secrets/mysecret\n  - id: mysecret1\n    keyvault: https://myvault.vault.azure.net/secrets/mysecret1\n    clientID: c72b2df0-b9d8-4ac6-9363-7c1eb06c1c86",
        &StepPermissions::default(),
    )
    .map(|p| {
        p.task
            .secrets
            .iter()
            .map(|s| (s.id.clone(), s.keyvault.clone(), s.client_id.clone()))
            .collect::<Vec<_>>()
    });
    let want = vec![
        (
            "mysecret".to_string(),
            Some("https://myvault.vault.azure.net/secrets/mysecret".to_string()),
            None,
        ),
        (
            "mysecret1".to_string(),
            Some("https://myvault.vault.azure.net/secrets/mysecret1".to_string()),
            Some("c72b2df0-b9d8-4ac6-9363-7c1eb06c1c86".to_string()),
        ),
    ];
    t.row(src, got.as_ref() == Ok(&want), &got);
    for (yaml, should_error) in [
        ("secrets:\n  - id: MYSecret1\n  - id: mysecret1\n    clientID: c72b2df0-b9d8-4ac6-9363-7c1eb06c1c86", true),
        ("secrets:", false),
        ("secrets:\n  - id: mysecret1\n    keyvault: secretvault1\n  - id: mysecret1\n    keyvault: secretvault2\n    clientID: c72b2df0-b9d8-4ac6-9363-7c1eb06c1c86", true),
        ("steps:\n  - id: mystep\n    cmd: bash echo hello world", false),
        ("steps:\n  - cmd: bash echo hello world", false),
    ] {
        let got = task_plan(yaml, &StepPermissions::default());
        t.row(src, got.is_err() == should_error, (yaml, got.err()));
    }
    // task_test.go:TestValidateTaskVersion.
    for (version, should_error) in [
        ("1.0-preview-1", false),
        ("v1.0.0", false),
        ("v1.0.0-alpha", true),
        ("foo", true),
    ] {
        let got = task_plan(
            &format!("version: {version}\nsteps:\n  - cmd: x\n"),
            &StepPermissions::default(),
        );
        t.row(
            "graph/task_test.go:TestValidateTaskVersion",
            got.is_err() == should_error,
            (version, got.err()),
        );
    }

    // secret_test.go:TestValidateSecret (through a task's `secrets`).
    for (secret, should_error) in [
        ("{}", true),
        ("{id: a}", true),
        ("{id: my secret}", true),
        ("{id: a, keyvault: b}", false),
        ("{id: a, keyvault: b, clientID: test}", true),
        (
            "{id: a, keyvault: b, clientID: c72b2df0-b9d8-4ac6-9363-7c1eb06c1c86}",
            false,
        ),
    ] {
        let got = task_plan(
            &format!("secrets:\n  - {secret}\nsteps:\n  - cmd: x\n"),
            &StepPermissions::default(),
        );
        t.row(
            "graph/secret_test.go:TestValidateSecret",
            got.is_err() == should_error,
            (secret, got.err()),
        );
    }
    // secret_test.go:TestIsAkvSecret.
    for (secret, akv) in [
        ("{id: s, keyvault: a}", true),
        ("{id: s, secret: a}", false),
    ] {
        let got = parse_task(&format!("secrets:\n  - {secret}\n"))
            .map(|t| t.secrets[0].keyvault.is_some());
        t.row(
            "graph/secret_test.go:TestIsAkvSecret",
            got == Ok(akv),
            (secret, got),
        );
    }

    // parse_test.go:TestParseTags and TestParseBuildArgs (a `build` step's words).
    for (build, tags) in [
        (
            "-f Dockerfile -t {{.Build.ID}}:latest --tag blah https://github.com/Azure/acr-builder.git",
            vec!["{{.Build.ID}}:latest", "blah"],
        ),
        (
            "--tag foo https://github.com/Azure/acr-builder.git --tag bar -t qux",
            vec!["foo", "bar", "qux"],
        ),
    ] {
        let got = parse_build(build).map(|b| b.tags);
        t.row(
            "graph/parse_test.go:TestParseTags",
            got.as_ref().is_ok_and(|g| *g == tags),
            (build, got),
        );
    }
    let got = parse_build("-f Dockerfile -t hello:world --build-arg foo https://github.com/Azure/acr-builder.git --build-arg bar")
        .map(|b| b.build_args);
    t.row(
        "graph/parse_test.go:TestParseBuildArgs",
        got.as_ref().is_ok_and(|g| g == &["foo", "bar"]),
        &got,
    );
    let got = parse_build("-f Dockerfile -t hello:world --buildarg ignored --build-arg foo=bar https://github.com/Azure/acr-builder.git --build-arg hello=world");
    deviations.push(format!(
        "graph/parse_test.go:TestParseBuildArgs[2]: acb ignores the unknown flag '--buildarg'; Slipway refuses it: {}",
        got.as_ref().err().map(ToString::to_string).unwrap_or_default()
    ));
    assert!(got.is_err(), "an unknown build flag is refused");

    // network_test.go:TestNetwork: Slipway's policy (deviations).
    for (networks, what) in [
        ("[{name: foo, ipv6: true}]", "ipv6"),
        ("[{name: bar, driver: nat}]", "driver 'nat'"),
        (
            "[{name: foo, skipCreation: true, isDefault: true}]",
            "skipCreation",
        ),
    ] {
        let got = task_plan(
            &format!("networks: {networks}\nsteps:\n  - cmd: x\n"),
            &StepPermissions::default(),
        );
        let e = got.err().unwrap_or_default();
        assert!(e.contains(what), "{e}");
        deviations.push(format!(
            "graph/network_test.go:TestNetwork: acb creates {networks}; Slipway refuses: {e}"
        ));
    }
    let got = task_plan(
        "networks: [{name: foo}]\nsteps:\n  - cmd: x\n",
        &StepPermissions::default(),
    )
    .map(|p| p.task.steps[0].network.clone());
    t.row(
        "graph/network_test.go:TestNetwork",
        got == Ok(None),
        ("a declared network that is not the default", got),
    );
}

fn preprocessor(t: &mut Tally) {
    let data = json!({"Run": {"ID": "cf1"}});
    let files: BTreeMap<&str, String> = [
        (
            "valid-external.yaml",
            "singularity: mcr.microsoft.com/acr-task-commands/singularity-builder:3.3\npack: \"mcr.microsoft.com/azure-task-commands/buildpack:latest pack\"\ngit: \"azure/images/git\"\n".to_string(),
        ),
        (
            "invalid-external.yaml",
            "\"{{.Run.Registry}}\"\n\"{{.Run.Commit}}\"\nid: \"{{.Run.ID}}\"\nbar: https://github.com/ehotinger/bar\nqux: https://github.com/ehotinger/qux\nacb: \"azure/images/acr-builder\"".to_string(),
        ),
        ("empty-external.yaml", String::new()),
        (
            "valid-remote.yaml",
            "docker: azure/images/docker\ncache: --cache-from=ubuntu\n".to_string(),
        ),
        // Every ASCII letter and digit standing for itself.
        (
            "alphanumeric-external.yaml",
            ('a'..='z')
                .chain('A'..='Z')
                .chain('0'..='9')
                .map(|c| format!("{c}: \"{c}\"\n"))
                .collect(),
        ),
    ]
    .into_iter()
    .collect();
    let load = |src: &str| -> Result<String, LoadError> {
        files
            .get(src)
            .cloned()
            .ok_or_else(|| LoadError::from(format!("{src}: not found")))
    };
    let aliases = |block: &str| {
        preprocess_aliases(
            &format!("version: v1.1.0\n{block}steps:\n  - cmd: x\n"),
            &data,
            &load,
        )
        .map(|a| a.aliases)
        .map_err(|e| e.to_string())
    };

    // preprocessor_test.go:TestResolveMapAndValidate (the directive is
    // today's `directive:` key).
    for (name, block, should_error) in [
        (
            "Improper Directive Choice",
            "alias:\n  directive: a\n",
            true,
        ),
        (
            "Improper Key Name",
            "alias:\n  values:\n    totally&^Invalid: hello-world\n",
            true,
        ),
        (
            "Improper Directive Length",
            "alias:\n  directive: '&&&'\n",
            true,
        ),
        (
            "Valid Alias",
            "alias:\n  directive: '&'\n  values:\n    totallyValid: hello-world\n",
            false,
        ),
    ] {
        let got = aliases(block);
        t.row(
            &format!("graph/preprocessor_test.go:TestResolveMapAndValidate[{name}]"),
            got.is_err() == should_error,
            got.err(),
        );
    }
    // preprocessor_test.go:TestLoadExternalAlias, TestAddAliasFromRemote,
    // TestAddAliasFromFile.
    let has = |got: &Result<BTreeMap<String, String>, String>, want: &[(&str, &str)]| {
        got.as_ref().is_ok_and(|m| {
            want.iter()
                .all(|(k, v)| m.get(*k).map(String::as_str) == Some(*v))
        })
    };
    let external = [
        (
            "singularity",
            "mcr.microsoft.com/acr-task-commands/singularity-builder:3.3",
        ),
        (
            "pack",
            "mcr.microsoft.com/azure-task-commands/buildpack:latest pack",
        ),
        ("git", "azure/images/git"),
    ];
    let remote = [
        ("docker", "azure/images/docker"),
        ("cache", "--cache-from=ubuntu"),
    ];
    let src = "graph/preprocessor_test.go:TestLoadExternalAlias";
    let got = aliases("alias:\n  src: [nonexistent.yaml]\n");
    t.row(src, got.is_err(), &got);
    let got = aliases("alias:\n  src: [valid-remote.yaml]\n");
    t.row(src, has(&got, &remote), &got);
    let got = aliases("alias:\n  src: [valid-external.yaml]\n");
    t.row(src, has(&got, &external), &got);
    let got = aliases(
        "alias:\n  src: [empty-external.yaml]\n  values:\n    d: docker\n    azureCmd: mcr.microsoft.com/azure-cli\n",
    );
    t.row(
        src,
        has(
            &got,
            &[("d", "docker"), ("azureCmd", "mcr.microsoft.com/azure-cli")],
        ),
        &got,
    );
    let got = aliases("alias:\n  src: [valid-remote.yaml, valid-external.yaml]\n");
    t.row(src, has(&got, &remote) && has(&got, &external), &got);
    let got = aliases(
        "alias:\n  src: [valid-external.yaml]\n  values:\n    singularity: something else\n",
    );
    t.row(
        src,
        has(
            &got,
            &[
                ("singularity", "something else"),
                (
                    "pack",
                    "mcr.microsoft.com/azure-task-commands/buildpack:latest pack",
                ),
                ("git", "azure/images/git"),
            ],
        ),
        &got,
    );
    for (test, file, want) in [
        ("TestAddAliasFromRemote", "valid-remote.yaml", &remote[..]),
        ("TestAddAliasFromFile", "valid-external.yaml", &external[..]),
    ] {
        let src = format!("graph/preprocessor_test.go:{test}");
        let got =
            aliases("alias:\n  src: [invalid-external.yaml]\n  values:\n    pre: someother/pre\n");
        t.row(&src, got.is_err(), &got);
        let got = aliases(&format!(
            "alias:\n  src: [{file}]\n  values:\n    pre: someother/pre\n"
        ));
        let mut all = want.to_vec();
        all.push(("pre", "someother/pre"));
        t.row(&src, has(&got, &all), &got);
    }

    // preprocessor_test.go:TestPreProcessBytes
    // (testdata/preprocessor/preprocessing-stress.yaml): the preprocessed
    // task equals "Expected" as YAML.
    let body = STRESS_EXPECTED_STEPS;
    let expected = yaml(&format!(
        "stepTimeout: 600\nversion: v1.1.0\n\nenv:\n  - \"foo=taskEnv\"\n\nsteps:\n{body}"
    ));
    let whale = body
        .replace("- id: puller", "- 🐳i🐳d: puller")
        .replace("- id: C", "- id: 🐳C")
        .replace("\"8000:8000\"", "\"8000:8🐳0🐳0🐳0\"")
        .replace("\"8080:8080\"", "\"8080:8🐳0🐳8🐳0\"")
        .replace(
            "build -f Dockerfile https://github.com/ehotinger/bar",
            "build -🐳f Dockerfile https://github.com/ehotinger/bar",
        )
        .replace("- id: B\n    when: [C]", "- id: 🐳B\n    when: [🐳C]");
    assert_ne!(whale, body);
    let unicode = format!("alias:\n  src:\n    - alphanumeric-external.yaml\n  directive: 🐳\n\nstepTimeout: 600\nversion: v1.1.0\n\nenv:\n  - \"foo=taskEnv\"\n\nsteps:\n{whale}");
    let multiline = format!(
        "alias:\n  values:\n{}\nstepTimeout: 600\nversion: v1.1.0\n\nenv:\n  - \"foo=taskEnv\"\n\nsteps:\n{}",
        STRESS_STEP_NAMES
            .iter()
            .zip(body.split("\n\n"))
            .map(|(name, step)| format!(
                "    {name}: |\n{}\n",
                step.trim_start_matches("  - ")
                    .lines()
                    .map(|l| format!("      {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ))
            .collect::<String>(),
        STRESS_STEP_NAMES
            .iter()
            .map(|n| format!("  - ${n}\n"))
            .collect::<String>()
    );
    let no_use = format!("alias:\n  values:\n    puller: \"break\"\n    azure: \"break\"\n    images: \"break\"\n    docker: \"break\"\n    id: \"break\"\n    build: \"break\"\n\nstepTimeout: 600\nversion: v1.1.0\n\nenv:\n  - \"foo=taskEnv\"\n\nsteps:\n{body}");
    let escape = "alias:\n  values:\n    puller: \"break\"\n    azure: \"break\"\n    images: \"break\"\n    docker: \"break\"\n\nstepTimeout: 600\nversion: v1.1.0\n\nenv:\n  - \"foo=taskEnv\"\n\nsteps:\n  - id: $$puller\n    cmd: $$azure/$$images/$$docker pull ubuntu\n    entryPoint: $$someEntryPoint\n    env: [eric=foo, foo=bar]\n    exitedWithout: [0, 255]\n    workingDirectory: pullDir\n    retries: 5\n    retryDelay: 90\n    pull: true\n";
    let expected_escape = yaml("stepTimeout: 600\nversion: v1.1.0\n\nenv:\n  - \"foo=taskEnv\"\n\nsteps:\n  - id: $puller\n    cmd: $azure/$images/$docker pull ubuntu\n    entryPoint: $someEntryPoint\n    env: [eric=foo, foo=bar]\n    exitedWithout: [0, 255]\n    workingDirectory: pullDir\n    retries: 5\n    retryDelay: 90\n    pull: true\n");
    for (name, text, want) in [
        ("Chaining Directive Unicode", unicode, &expected),
        ("Multiline Alias", multiline, &expected),
        ("Alias No Use", no_use, &expected),
        ("Escape", escape.to_string(), &expected_escape),
    ] {
        let got = preprocess_aliases(&strip_comment_lines(&text), &data, &load)
            .map_err(|e| e.to_string())
            .and_then(|a| serde_yaml_ng::from_str::<Value>(&a.text).map_err(|e| e.to_string()));
        t.row(
            &format!("graph/preprocessor_test.go:TestPreProcessBytes[{name}]"),
            got.as_ref() == Ok(want),
            (&text, &got),
        );
    }

    // util_test.go:TestIsAlphanumeric (alias names).
    let alnum = "abcdefghijklmnopqrstuvxyzABCDEFGHIJKLMNOPQRSTUVXZ0123456789";
    let got = aliases(&format!("alias:\n  values:\n    {alnum}: x\n"));
    t.row("graph/util_test.go:TestIsAlphanumeric", got.is_ok(), &got);
    let refused: Vec<char> = "ñ-_[]{}';./'#@$%^&*()+=♕⛄ ☀üÌÅ"
        .chars()
        .filter(|c| {
            let key = format!("a{c}b");
            aliases(&format!("alias:\n  values:\n    {}: x\n", json!(key))).is_err()
        })
        .collect();
    t.row(
        "graph/util_test.go:TestIsAlphanumeric",
        refused.len() == "ñ-_[]{}';./'#@$%^&*()+=♕⛄ ☀üÌÅ".chars().count(),
        refused,
    );
}

/// The step names of preprocessing-stress.yaml's "Multiline Alias", in order.
const STRESS_STEP_NAMES: [&str; 7] = [
    "Puller",
    "buildQux",
    "C",
    "buildBar",
    "B",
    "buildFoo",
    "buildQuaz",
];

/// The steps of preprocessing-stress.yaml's "Expected", separated by blank lines.
const STRESS_EXPECTED_STEPS: &str = r#"  - id: puller
    cmd: azure/images/docker pull ubuntu
    entryPoint: someEntryPoint
    env: [eric=foo, foo=bar]
    exitedWithout: [0, 255]
    workingDirectory: pullDir
    retries: 5
    retryDelay: 90
    pull: true

  - id: build-qux
    cmd: "azure/images/acr-builder build -f Dockerfile https://github.com/ehotinger/qux --cache-from=ubuntu"
    when: ["-"]
    detach: true
    startDelay: 50

  - id: C
    cmd: blah
    when: ["-"]
    ports:
      - "8000:8000"
      - "8080:8080"
    expose:
      - "80"
      - "81"
    exitedWith: [0, 1, 2, 3, 4]
    keep: true
    isolation: default

  - id: build-bar
    cmd: azure/images/acr-builder build -f Dockerfile https://github.com/ehotinger/bar --cache-from=ubuntu
    when: ["-"]

  - id: B
    when: [C]
    cmd: azure/images/git clone https://github.com/ehotinger/clone
    ignoreErrors: true
    disableWorkingDirectoryOverride: true

  - id: build-foo
    cmd: azure/images/acr-builder build -f Dockerfile https://github.com/ehotinger/foo --cache-from=ubuntu
    env: ["eric=foo"]
    when: [build-qux]

  - id: build-qaz
    build: "-f Dockerfile https://github.com/ehotinger/qaz --cache-from=ubuntu"
    privileged: true
    user: root
    network: "host"
    repeat: 2
"#;

#[test]
fn acr_builder_templating_and_graph_tests() {
    let mut t = Tally::default();
    let mut deviations = Vec::new();
    templating(&mut t);
    graph(&mut t, &mut deviations);
    preprocessor(&mut t);
    let total = t.passed + t.failed.len();
    println!(
        "acr-builder templating + graph corpus: {}/{total} rows pass ({:.1}%)",
        t.passed,
        t.passed as f64 * 100.0 / total as f64
    );
    println!("Deliberate deviations (Slipway's confinement policy), not counted:");
    for d in &deviations {
        println!("  {d}");
    }
    for f in &t.failed {
        println!("  FAIL {f}");
    }
    assert!(
        t.failed.is_empty(),
        "{} of {total} rows fail:\n{}",
        t.failed.len(),
        t.failed.join("\n")
    );
}
