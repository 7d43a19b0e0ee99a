//! A `build` step: docker build words, the Dockerfile's dependencies, the
//! confined build through the engine.

use std::collections::HashMap;

use bollard::query_parameters::BuildImageOptions;
use serde_json::{json, Value};
use slipway_core::tasks::dockerfile::{scan, Dependencies, ImageReference};
use slipway_core::tasks::taskfile::{Step, WORKSPACE};
use slipway_runner::netns::HeldNetwork;
use slipway_runner::{BuildConfinement, RunnerNetwork};

use super::{split_tag, workspace_rel, RunEnv, StepOutput, MAX_DOCKERFILE_BYTES};
use crate::context::tar_tree;
use crate::registry::manifest_digest;
use crate::TaskError;

/// A `build` step's arguments (docker build CLI words).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BuildArgs {
    /// `-t` / `--tag`.
    pub tags: Vec<String>,
    /// `-f` / `--file`.
    pub file: Option<String>,
    /// `--build-arg K=V`.
    pub build_args: Vec<String>,
    /// `--target`.
    pub target: Option<String>,
    /// `--platform`.
    pub platform: Option<String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--label K=V`.
    pub labels: Vec<String>,
    /// Positional context (default `.`).
    pub context: String,
}

/// A step `build` string that cannot be run as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildFlagsError {
    /// Unbalanced quotes or a dangling escape.
    #[error("build {build:?}: {reason}")]
    Unparsable {
        /// The step's `build`.
        build: String,
        /// What the shell-word splitter said.
        reason: String,
    },
    /// A flag given last, without its value.
    #[error("build flag '{0}' needs a value")]
    MissingValue(String),
    /// A flag Slipway does not build with.
    #[error("build flag '{0}' is not supported: expected -t, -f, --build-arg, --target, --platform, --label, --no-cache")]
    Unsupported(String),
    /// More than one positional context.
    #[error("build {0:?} names two contexts")]
    TwoContexts(String),
}

/// Parses a `build` string (`-t x -f Dockerfile --build-arg A=1 .`), also
/// the `--tag=x` forms acb misses.
///
/// Errors: unbalanced quotes, an unsupported flag (named), two contexts.
pub fn parse_build(build: &str) -> Result<BuildArgs, BuildFlagsError> {
    let words = shell_words::split(build).map_err(|e| BuildFlagsError::Unparsable {
        build: build.to_string(),
        reason: e.to_string(),
    })?;
    let mut b = BuildArgs::default();
    let mut it = words.into_iter();
    let mut context = None;
    while let Some(w) = it.next() {
        let (flag, inline) = match w.split_once('=') {
            Some((f, v)) if f.starts_with('-') => (f.to_string(), Some(v.to_string())),
            _ => (w.clone(), None),
        };
        let value = |it: &mut std::vec::IntoIter<String>| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| BuildFlagsError::MissingValue(flag.clone()))
        };
        match flag.as_str() {
            "-t" | "--tag" => b.tags.push(value(&mut it)?),
            "-f" | "--file" => b.file = Some(value(&mut it)?),
            "--build-arg" => b.build_args.push(value(&mut it)?),
            "--target" => b.target = Some(value(&mut it)?),
            "--platform" => b.platform = Some(value(&mut it)?),
            "--label" => b.labels.push(value(&mut it)?),
            "--no-cache" => b.no_cache = true,
            "--pull" | "--rm" | "--force-rm" | "-q" | "--quiet" => {}
            "--network" | "--isolation" | "--cache-from" => {
                value(&mut it)?;
            }
            f if f.starts_with('-') && f != "-" => {
                return Err(BuildFlagsError::Unsupported(f.to_string()))
            }
            _ => {
                if context.replace(w.clone()).is_some() {
                    return Err(BuildFlagsError::TwoContexts(build.to_string()));
                }
            }
        }
    }
    b.context = context.unwrap_or_else(|| ".".into());
    Ok(b)
}

pub(super) async fn run_build(env: &RunEnv, step: &Step) -> Result<StepOutput, TaskError> {
    let args = parse_build(step.build.as_deref().unwrap_or_default())
        .map_err(|e| TaskError::Validation(e.to_string()))?;
    if step
        .cache
        .as_deref()
        .is_some_and(|c| c.eq_ignore_ascii_case("enabled"))
    {
        // acb exports a buildx registry cache (`<repo>:cache_<task>_<step>`);
        // Slipway builds through the engine, whose layer cache is local.
        env.log
            .line("cache: enabled: layers are reused from the container engine's local cache; no registry cache is exported")
            .await;
    }
    let workdir = workspace_rel("", &step.workdir().unwrap_or_else(|| WORKSPACE.into()))?;
    let context_rel = workspace_rel(&workdir, &args.context)?;
    let dockerfile_name = args.file.clone().unwrap_or_else(|| "Dockerfile".into());
    let dockerfile_rel = workspace_rel(&workdir, &dockerfile_name)?;
    // Every read below goes through the workspace tree: a symlink a step
    // planted cannot lead the server to a host file.
    let workspace = slipway_hostfs::Tree::open(&env.workspace)
        .map_err(|e| TaskError::Step(format!("run workspace {e}")))?;
    let dockerfile_text = workspace
        .read_to_string(&dockerfile_rel, MAX_DOCKERFILE_BYTES)
        .map_err(|e| TaskError::Step(format!("cannot read Dockerfile: {e}")))?;
    let in_context = if context_rel.is_empty() {
        Some(dockerfile_rel.clone())
    } else {
        dockerfile_rel
            .strip_prefix(&format!("{context_rel}/"))
            .map(str::to_string)
    };
    let deps = scan(&dockerfile_text, &args.build_args, args.target.as_deref())
        .map_err(|e| TaskError::Step(e.to_string()))?;
    let context_tree = workspace
        .subtree(&context_rel)
        .map_err(|e| TaskError::Step(format!("build context {e}")))?;
    let in_ctx = in_context.clone();
    let mut tar = tokio::task::spawn_blocking(move || tar_tree(&context_tree, in_ctx.as_deref()))
        .await
        .map_err(|e| TaskError::Engine(e.to_string()))??;
    let dockerfile_in_tar = match in_context {
        Some(p) => p,
        None => {
            // A Dockerfile outside the context travels inside the tarball
            // under a generated name, like `az acr build`.
            let name = format!(
                "{}_{}",
                env.run_id,
                dockerfile_name.rsplit('/').next().unwrap_or("Dockerfile")
            );
            tar = append_file(tar, &name, dockerfile_text.as_bytes())?;
            name
        }
    };
    let tag = args
        .tags
        .first()
        .cloned()
        .unwrap_or_else(|| format!("localhost/slipway-build/{}", env.run_id));
    // `--build-arg NAME` without a value takes it from the caller's
    // environment in docker; the server's environment is not the caller's,
    // so the Dockerfile's own default applies instead.
    let buildargs: HashMap<String, String> = args
        .build_args
        .iter()
        .filter_map(|a| a.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let labels: HashMap<String, String> = args
        .labels
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    // Always look for a newer base in its registry (a base-image update must
    // be seen), except for images that only exist locally (`localhost/…`).
    let bases = deps.runtime.iter().chain(deps.buildtime.iter());
    let pull = !bases.clone().any(|r| r.registry == "localhost");
    // RUN instructions join a namespace of their own with the runner
    // egress policy (removed with `held` however the step ends).
    let mut held = HeldNetwork(
        RunnerNetwork::create(&env.container(&step.id), &env.network_pool, &[])
            .await
            .map_err(|e| TaskError::Step(format!("build network: {e}")))?,
    );
    held.0
        .install_closed_filter()
        .await
        .map_err(|e| TaskError::Step(format!("build network: {e}")))?;
    let mut secrets = Vec::new();
    for (i, (name, value)) in env.build_secrets.iter().enumerate() {
        let file = format!(".slipway-build-secret-{i}");
        tar = append_file(tar, &file, value.as_bytes())?;
        secrets.push((name.clone(), file));
    }
    let confinement = BuildConfinement {
        network_namespace: held.0.path().into(),
        secrets,
    };
    let options = BuildImageOptions {
        dockerfile: dockerfile_in_tar,
        t: Some(tag.clone()),
        buildargs: Some(buildargs),
        target: args.target.clone().unwrap_or_default(),
        platform: args.platform.clone().unwrap_or_default(),
        nocache: args.no_cache,
        pull: pull.then(|| "true".to_string()),
        rm: true,
        forcerm: true,
        labels: Some(labels),
        ..Default::default()
    };
    let mut output = env
        .engine
        .build_image(&options, &env.credentials, tar, &confinement)
        .await
        .map_err(|e| TaskError::Step(format!("build: {}", env.scrubber.scrub(&e.to_string()))))?;
    while let Some(item) = output.next_line().await {
        match item {
            Ok(line) => env.log.raw(&env.scrubber.scrub(&line)).await,
            Err(e) => {
                return Err(TaskError::Step(format!(
                    "build: {}",
                    env.scrubber.scrub(&e.to_string())
                )))
            }
        }
    }
    drop(held);
    for extra in args.tags.iter().skip(1) {
        let (repo, t) = split_tag(extra);
        env.engine
            .tag_image(&tag, &repo, &t)
            .await
            .map_err(|e| TaskError::Step(format!("tag {extra}: {e}")))?;
    }
    let mut dependencies = Vec::new();
    let images: Vec<Option<&String>> = if args.tags.is_empty() {
        vec![None]
    } else {
        args.tags.iter().map(Some).collect()
    };
    for image in images {
        dependencies.push(dependency_doc(env, image.map(|s| s.as_str()), &deps).await);
    }
    Ok(StepOutput {
        images: vec![],
        dependencies,
    })
}

pub(super) async fn dependency_doc(
    env: &RunEnv,
    image: Option<&str>,
    deps: &Dependencies,
) -> Value {
    let resolve = |r: ImageReference| async move {
        let cred = env.credential_for(&r.reference);
        let mut r = r;
        if r.digest.is_empty() {
            if let Ok(Some(d)) =
                manifest_digest(&env.fetcher, &r.registry, &r.repository, &r.tag, cred).await
            {
                r.digest = d;
            }
        }
        json!(r)
    };
    let runtime = match &deps.runtime {
        Some(r) => resolve(r.clone()).await,
        None => Value::Null,
    };
    let mut buildtime = Vec::new();
    for b in &deps.buildtime {
        buildtime.push(resolve(b.clone()).await);
    }
    let mut doc = json!({
        "image": image.map(|i| json!(ImageReference::parse(i))),
        "runtime-dependency": runtime,
        "buildtime-dependency": buildtime,
    });
    if !env.git_commit.is_empty() {
        doc["git"] = json!({ "git-head-revision": env.git_commit });
    }
    doc
}

pub(super) fn append_file(tar: Vec<u8>, name: &str, bytes: &[u8]) -> Result<Vec<u8>, TaskError> {
    // A tar ends with two zero blocks; drop them, append, re-terminate.
    let mut t = tar;
    while t.len() >= 512 && t[t.len() - 512..].iter().all(|&b| b == 0) {
        t.truncate(t.len() - 512);
    }
    let mut b = tar::Builder::new(t);
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    b.append_data(&mut header, name, bytes)
        .map_err(|e| TaskError::Engine(e.to_string()))?;
    b.into_inner().map_err(|e| TaskError::Engine(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_strings() {
        let b = parse_build("-t r/app:{v} --tag=r/app:latest -f sub/Dockerfile --build-arg A=1 --target final ./src").unwrap();
        assert_eq!(b.tags, vec!["r/app:{v}", "r/app:latest"]);
        assert_eq!(b.file.as_deref(), Some("sub/Dockerfile"));
        assert_eq!(b.build_args, vec!["A=1"]);
        assert_eq!(b.target.as_deref(), Some("final"));
        assert_eq!(b.context, "./src");
        assert!(parse_build("--squash .")
            .unwrap_err()
            .to_string()
            .contains("'--squash'"));
        assert_eq!(
            split_tag("127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app".into(), "latest".into())
        );
    }
}
