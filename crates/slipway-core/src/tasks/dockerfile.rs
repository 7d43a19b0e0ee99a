//! Dockerfile dependency scanning: the runtime base image and the
//! build-time bases of a build.
//!
//! Contract: acb `scan/dependencies.go` (reference `acr-tasks.md` §3.3) with
//! the fixes §6 asks for: line continuations, parser directives, `FROM
//! --platform=…`, `COPY --from=<image>` as a build-time base, `ARG`
//! expansion (`--build-arg` wins over `ARG` defaults), stage aliases
//! followed back to their image, scanning stops at `--target`.

use serde::{Deserialize, Serialize};

/// An image reference split like acb's `image.Reference`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageReference {
    /// `registry.hub.docker.com` for Docker Hub images.
    pub registry: String,
    /// `library/alpine`, `team/app`.
    pub repository: String,
    /// Tag (`latest` when none and no digest).
    pub tag: String,
    /// `sha256:…` when known.
    pub digest: String,
    /// The reference as written (normalized with `:latest`).
    pub reference: String,
}

impl ImageReference {
    /// Parses `image` (Docker rules: the first component is a registry when
    /// it has `.` or `:` or is `localhost`).
    pub fn parse(image: &str) -> ImageReference {
        let (name, digest) = match image.split_once('@') {
            Some((n, d)) => (n, d.to_string()),
            None => (image, String::new()),
        };
        let (name, tag) = match name.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, t.to_string()),
            _ => (
                name,
                if digest.is_empty() {
                    "latest".into()
                } else {
                    String::new()
                },
            ),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            Some(_) => ("registry.hub.docker.com".to_string(), name.to_string()),
            None => (
                "registry.hub.docker.com".to_string(),
                format!("library/{name}"),
            ),
        };
        let reference = if digest.is_empty() {
            format!("{name}:{tag}")
        } else if tag.is_empty() {
            format!("{name}@{digest}")
        } else {
            format!("{name}:{tag}@{digest}")
        };
        ImageReference {
            registry,
            repository,
            tag,
            digest,
            reference,
        }
    }

    /// `registry/repository:tag` (no digest): what a base-image trigger watches.
    pub fn tracked(&self) -> String {
        format!("{}/{}:{}", self.registry, self.repository, self.tag)
    }
}

/// The bases of one build.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Dependencies {
    /// The final stage's (or `--target` stage's) base; `None` for `scratch`.
    pub runtime: Option<ImageReference>,
    /// Every other external base, deduplicated, in order of appearance.
    pub buildtime: Vec<ImageReference>,
}

/// A Dockerfile whose dependencies cannot be read (acb's messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerfileError {
    /// A `FROM` line without an image.
    #[error("unable to understand line {0:?}: FROM needs an image")]
    FromWithoutImage(String),
    /// `--target` names no stage.
    #[error("target stage {0:?} could not be found")]
    UnknownTarget(String),
    /// No `FROM` at all.
    #[error("unexpected dockerfile format: no FROM")]
    NoFrom,
}

/// Scans a Dockerfile's text.
///
/// `build_args` (`NAME=value`) win over `ARG` defaults; `target` stops the
/// scan at that stage.
///
/// Errors: no `FROM` ("unexpected dockerfile format"), a `FROM` without an
/// image, an unknown `--target`.
pub fn scan(
    text: &str,
    build_args: &[String],
    target: Option<&str>,
) -> Result<Dependencies, DockerfileError> {
    let mut args: Vec<(String, String)> = build_args
        .iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (a.clone(), String::new()),
        })
        .collect();
    let cli_args: Vec<String> = args.iter().map(|(k, _)| k.clone()).collect();
    let mut stages: Vec<(Option<String>, Option<String>)> = Vec::new(); // (alias, origin image; None = scratch)
    let mut buildtime: Vec<String> = Vec::new();
    let mut reached_target = false;
    let mut escape = '\\';
    let mut logical = Vec::new();
    let mut current = String::new();
    let mut in_directives = true;
    for raw in text.trim_start_matches('\u{feff}').lines() {
        let trimmed = raw.trim();
        if in_directives {
            if let Some(d) = trimmed.strip_prefix('#') {
                if let Some((k, v)) = d.split_once('=') {
                    if k.trim().eq_ignore_ascii_case("escape") {
                        escape = v.trim().chars().next().unwrap_or('\\');
                    }
                    continue;
                }
            }
            in_directives = false;
        }
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if !current.is_empty() && trimmed.starts_with('#') {
            continue;
        }
        if let Some(stripped) = trimmed.strip_suffix(escape) {
            current.push_str(stripped);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        logical.push(std::mem::take(&mut current));
    }
    if !current.is_empty() {
        logical.push(current);
    }
    let expand = |s: &str, args: &[(String, String)]| expand_vars(s, args);
    for line in logical {
        let mut words = line.split_whitespace();
        let Some(instr) = words.next() else { continue };
        let rest: Vec<&str> = words.collect();
        match instr.to_ascii_uppercase().as_str() {
            "ARG" => {
                for a in rest {
                    let (k, v) = match a.split_once('=') {
                        Some((k, v)) => (k.to_string(), v.trim_matches('"').to_string()),
                        None => (a.to_string(), String::new()),
                    };
                    if cli_args.contains(&k) || args.iter().any(|(n, _)| *n == k) {
                        continue;
                    }
                    args.push((k, v));
                }
            }
            "FROM" => {
                let words: Vec<&str> = rest.into_iter().filter(|w| !w.starts_with("--")).collect();
                let Some(image) = words.first() else {
                    return Err(DockerfileError::FromWithoutImage(line.to_string()));
                };
                let image = expand(image.trim_matches('"'), &args);
                let alias = match (words.get(1), words.get(2)) {
                    (Some(a), Some(name)) if a.eq_ignore_ascii_case("as") => Some(name.to_string()),
                    _ => None,
                };
                let origin = stage_origin(&stages, &image);
                stages.push((alias.clone(), origin));
                if target.is_some() && alias.as_deref() == target {
                    reached_target = true;
                    break;
                }
            }
            "COPY" | "ADD" => {
                for w in rest {
                    if let Some(from) = w.strip_prefix("--from=") {
                        let from = expand(from.trim_matches('"'), &args);
                        let is_stage = from.parse::<usize>().is_ok()
                            || stages
                                .iter()
                                .any(|(a, _)| a.as_deref() == Some(from.as_str()));
                        if !is_stage && !buildtime.contains(&from) {
                            buildtime.push(from);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(t) = target {
        if !reached_target {
            return Err(DockerfileError::UnknownTarget(t.to_string()));
        }
    }
    let Some((_, runtime)) = stages.last().cloned() else {
        return Err(DockerfileError::NoFrom);
    };
    let mut bt: Vec<String> = stages[..stages.len() - 1]
        .iter()
        .filter_map(|(_, o)| o.clone())
        .collect();
    bt.extend(buildtime);
    let mut seen = Vec::new();
    let mut buildtime = Vec::new();
    for b in bt {
        let r = ImageReference::parse(&b);
        if Some(&b) != runtime.as_ref() && !seen.contains(&r.reference) {
            seen.push(r.reference.clone());
            buildtime.push(r);
        }
    }
    Ok(Dependencies {
        runtime: runtime.map(|r| ImageReference::parse(&r)),
        buildtime,
    })
}

fn stage_origin(stages: &[(Option<String>, Option<String>)], image: &str) -> Option<String> {
    if image.eq_ignore_ascii_case("scratch") {
        return None;
    }
    match stages
        .iter()
        .rev()
        .find(|(a, _)| a.as_deref() == Some(image))
    {
        Some((_, origin)) => origin.clone(),
        None => Some(image.to_string()),
    }
}

/// `$VAR` / `${VAR}` / `${VAR:-default}` from `args`; unknown → empty.
fn expand_vars(s: &str, args: &[(String, String)]) -> String {
    let get = |k: &str| {
        args.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '$' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        if chars.get(i + 1) == Some(&'{') {
            if let Some(end) = chars[i + 2..].iter().position(|&c| c == '}') {
                let inner: String = chars[i + 2..i + 2 + end].iter().collect();
                let v = match inner.split_once(":-") {
                    Some((k, d)) => get(k)
                        .filter(|v| !v.is_empty())
                        .unwrap_or_else(|| d.to_string()),
                    None => get(&inner).unwrap_or_default(),
                };
                out.push_str(&v);
                i += end + 3;
                continue;
            }
        }
        let mut j = i + 1;
        while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
            j += 1;
        }
        let name: String = chars[i + 1..j].iter().collect();
        out.push_str(&get(&name).unwrap_or_default());
        i = j.max(i + 1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_stage_args_platform_and_copy_from() {
        let df = "# syntax=docker/dockerfile:1\nARG BASE=alpine:3.19\nARG GO=1.22\nFROM --platform=$BUILDPLATFORM golang:${GO} AS build\nRUN go build \\\n  -o /app\nFROM build AS test\nFROM $BASE\nCOPY --from=build /app /app\nCOPY --from=registry.example.com:5000/tools/jq:1 /jq /jq\n";
        let d = scan(df, &["BASE=127.0.0.1:5000/base:1".into()], None).unwrap();
        let rt = d.runtime.unwrap();
        assert_eq!(rt.registry, "127.0.0.1:5000");
        assert_eq!(rt.repository, "base");
        assert_eq!(rt.tag, "1");
        let bt: Vec<_> = d.buildtime.iter().map(|r| r.reference.as_str()).collect();
        assert_eq!(
            bt,
            vec!["golang:1.22", "registry.example.com:5000/tools/jq:1"]
        );
        assert_eq!(d.buildtime[0].repository, "library/golang");
        assert_eq!(d.buildtime[0].registry, "registry.hub.docker.com");
    }

    #[test]
    fn target_stops_and_stage_aliases_follow_their_origin() {
        let df = "FROM node:20 AS deps\nFROM deps AS test\nFROM nginx\n";
        let d = scan(df, &[], Some("test")).unwrap();
        assert_eq!(d.runtime.unwrap().reference, "node:20");
        assert!(d.buildtime.is_empty());
        assert!(scan(df, &[], Some("nope"))
            .unwrap_err()
            .to_string()
            .contains("\"nope\""));
        assert!(scan("RUN x\n", &[], None)
            .unwrap_err()
            .to_string()
            .contains("no FROM"));
        let d = scan("FROM scratch\nCOPY x /\n", &[], None).unwrap();
        assert!(d.runtime.is_none());
        assert_eq!(ImageReference::parse("alpine").reference, "alpine:latest");
    }
}
