//! A `cmd` step's string split into container settings, image and argv.
//!
//! acb appends `cmd` verbatim to a `docker run …` line run by `/bin/sh -c`,
//! so users put `docker run` flags before the image (reference
//! `acr-tasks.md` §1.3, §6). Slipway lexes it with shell-words rules
//! (quotes, escapes; no expansion, no `sh -c`) and maps the flags it knows;
//! an unknown flag is an error that names it.

use std::collections::BTreeMap;

/// The parsed `cmd`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunCommand {
    /// Image reference (after alias expansion by the caller).
    pub image: String,
    /// Arguments after the image.
    pub args: Vec<String>,
    /// `-e K=V` / `--env`.
    pub env: Vec<String>,
    /// `-v src:dst[:opts]` / `--volume`.
    pub volumes: Vec<String>,
    /// `--entrypoint`.
    pub entrypoint: Option<String>,
    /// `-w` / `--workdir`.
    pub workdir: Option<String>,
    /// `-u` / `--user`.
    pub user: Option<String>,
    /// `--network`.
    pub network: Option<String>,
    /// `--privileged`.
    pub privileged: bool,
    /// `-p` / `--publish`.
    pub ports: Vec<String>,
    /// `--expose`.
    pub expose: Vec<String>,
    /// `-m` / `--memory`, bytes.
    pub memory: Option<i64>,
    /// `--cpus`.
    pub cpus: Option<f64>,
    /// `-l` / `--label`.
    pub labels: BTreeMap<String, String>,
    /// `--add-host`.
    pub add_hosts: Vec<String>,
}

/// A step `cmd` or port that cannot be run as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdError {
    /// Unbalanced quotes or a dangling escape.
    #[error("cmd {cmd:?}: {reason}")]
    Unparsable {
        /// The step's `cmd`.
        cmd: String,
        /// What the shell-word splitter said.
        reason: String,
    },
    /// A flag given last, without its value.
    #[error("cmd flag '{0}' needs a value")]
    MissingValue(String),
    /// A flag whose value does not have the expected form.
    #[error("cmd flag '{flag}' is '{value}': expected {expected}")]
    BadValue {
        /// The flag, e.g. `--cpus`.
        flag: String,
        /// The refused value.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// A flag Slipway does not run (the list of supported flags follows).
    #[error("cmd flag '{0}' is not supported: expected -e, -v, --entrypoint, -w, -u, --network, -p, --expose, -l, -m, --cpus, --add-host, --privileged, --rm, -i, -t before the image")]
    Unsupported(String),
    /// Only flags, no image.
    #[error("cmd {0:?} names no image")]
    NoImage(String),
    /// A `ports` entry or `-p` value that is not a port mapping.
    #[error("port '{0}' is not valid: expected [[ip:]hostPort:]containerPort[/tcp|udp|sctp]")]
    Port(String),
}

/// Splits `cmd` into flags, image and argv.
///
/// Errors: unbalanced quotes, a flag Slipway does not support (named), a
/// flag without its value, or no image.
pub fn parse_cmd(cmd: &str) -> Result<RunCommand, CmdError> {
    let words = shell_words::split(cmd).map_err(|e| CmdError::Unparsable {
        cmd: cmd.to_string(),
        reason: e.to_string(),
    })?;
    let mut rc = RunCommand::default();
    let mut it = words.into_iter().peekable();
    while let Some(w) = it.next() {
        if !w.starts_with('-') || w == "-" {
            rc.image = w;
            rc.args = it.collect();
            return Ok(rc);
        }
        let (flag, inline) = match w.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (w.clone(), None),
        };
        let boolean = matches!(
            flag.as_str(),
            "--privileged"
                | "--rm"
                | "-t"
                | "-i"
                | "-it"
                | "-ti"
                | "--tty"
                | "--interactive"
                | "--init"
                | "-d"
                | "--detach"
        );
        if boolean {
            if flag == "--privileged" {
                rc.privileged = inline.as_deref() != Some("false");
            }
            continue;
        }
        let mut value = || -> Result<String, CmdError> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it
                    .next()
                    .ok_or_else(|| CmdError::MissingValue(flag.clone())),
            }
        };
        match flag.as_str() {
            "-e" | "--env" => {
                let v = value()?;
                rc.env.push(v);
            }
            "-v" | "--volume" => {
                let v = value()?;
                rc.volumes.push(v);
            }
            "--entrypoint" => rc.entrypoint = Some(value()?),
            "-w" | "--workdir" => rc.workdir = Some(value()?),
            "-u" | "--user" => rc.user = Some(value()?),
            "--network" | "--net" => rc.network = Some(value()?),
            "-p" | "--publish" => {
                let v = value()?;
                rc.ports.push(v);
            }
            "--expose" => {
                let v = value()?;
                rc.expose.push(v);
            }
            "--add-host" => {
                let v = value()?;
                rc.add_hosts.push(v);
            }
            "-l" | "--label" => {
                let v = value()?;
                let (k, val) = v.split_once('=').unwrap_or((v.as_str(), ""));
                rc.labels.insert(k.to_string(), val.to_string());
            }
            "-m" | "--memory" => {
                let v = value()?;
                rc.memory = Some(parse_bytes(&v).ok_or_else(|| CmdError::BadValue {
                    flag: flag.clone(),
                    value: v.clone(),
                    expected: "a size like 512m or 1g",
                })?);
            }
            "--cpus" => {
                let v = value()?;
                rc.cpus = Some(v.parse().map_err(|_| CmdError::BadValue {
                    flag: "--cpus".into(),
                    value: v.clone(),
                    expected: "a number",
                })?);
            }
            // Accepted and ignored: the run sets the name and the engine pulls.
            "--name" | "--pull" | "--isolation" | "--platform" => {
                value()?;
            }
            other => return Err(CmdError::Unsupported(other.to_string())),
        }
    }
    Err(CmdError::NoImage(cmd.to_string()))
}

/// `512m`, `1g`, `1024k`, `100` (bytes).
fn parse_bytes(v: &str) -> Option<i64> {
    let v = v.trim().to_ascii_lowercase();
    let v = v.strip_suffix('b').unwrap_or(&v);
    let (num, mult) = match v.chars().last()? {
        'k' => (&v[..v.len() - 1], 1i64 << 10),
        'm' => (&v[..v.len() - 1], 1 << 20),
        'g' => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    num.parse::<i64>().ok().map(|n| n * mult)
}

/// Replaces the first word of `cmd` when it is an alias key (acb
/// `ExpandCommandAliases`, v1.1.0 only).
pub fn expand_command_alias(cmd: &str, aliases: &BTreeMap<String, String>) -> String {
    let trimmed = cmd.trim_start();
    let first = trimmed.split_whitespace().next().unwrap_or_default();
    match aliases.get(first) {
        Some(v) => format!("{v}{}", &trimmed[first.len()..]),
        None => cmd.to_string(),
    }
}

/// A published port (`docker run -p`, acb step `ports`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// `8080/tcp`: container port and protocol (tcp by default).
    pub container: String,
    /// Host address; empty = every address (Docker's default).
    pub host_ip: String,
    /// Host port; empty = one the engine picks.
    pub host_port: String,
}

/// Parses `[[ip:]host:]container[/proto]` (`8080`, `80:8080`,
/// `127.0.0.1:80:8080/udp`, `127.0.0.1::8080`).
///
/// Errors: names the spec and the expected form.
pub fn parse_port(spec: &str) -> Result<PortSpec, CmdError> {
    let bad = || CmdError::Port(spec.to_string());
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p)) if ["tcp", "udp", "sctp"].contains(&p) => (r, p),
        Some(_) => return Err(bad()),
        None => (spec, "tcp"),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => ("", "", *c),
        [h, c] => ("", *h, *c),
        [ip, h, c] => (*ip, *h, *c),
        _ => return Err(bad()),
    };
    let is_port = |p: &str| p.parse::<u16>().is_ok_and(|n| n > 0);
    if !is_port(container) || !(host.is_empty() || is_port(host)) {
        return Err(bad());
    }
    Ok(PortSpec {
        container: format!("{container}/{proto}"),
        host_ip: ip.to_string(),
        host_port: host.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_image_and_quoted_args() {
        let rc = parse_cmd(
            r#"--memory 1g -e "A=hello world" --network=n1 alpine sh -c 'echo "$A"; exit 3'"#,
        )
        .unwrap();
        assert_eq!(rc.image, "alpine");
        assert_eq!(rc.args, vec!["sh", "-c", "echo \"$A\"; exit 3"]);
        assert_eq!(rc.env, vec!["A=hello world"]);
        assert_eq!(rc.memory, Some(1 << 30));
        assert_eq!(rc.network.as_deref(), Some("n1"));
        assert_eq!(
            parse_cmd("img --not-a-flag").unwrap().args,
            vec!["--not-a-flag"]
        );
    }

    #[test]
    fn errors_name_the_flag() {
        assert!(parse_cmd("--gpus all img")
            .unwrap_err()
            .to_string()
            .contains("'--gpus'"));
        assert!(parse_cmd("-e")
            .unwrap_err()
            .to_string()
            .contains("needs a value"));
        assert!(parse_cmd("--rm")
            .unwrap_err()
            .to_string()
            .contains("names no image"));
        assert!(parse_cmd("img 'open").is_err());
    }

    #[test]
    fn command_aliases_expand_the_first_word_only() {
        let mut a = BTreeMap::new();
        a.insert(
            "bash".to_string(),
            "mcr.microsoft.com/acr/bash:2ff604c".to_string(),
        );
        assert_eq!(
            expand_command_alias("bash echo bash", &a),
            "mcr.microsoft.com/acr/bash:2ff604c echo bash"
        );
        assert_eq!(expand_command_alias("alpine bash", &a), "alpine bash");
    }

    #[test]
    fn port_specs() {
        let p = parse_port("127.0.0.1:8081:80").unwrap();
        assert_eq!(
            (
                p.container.as_str(),
                p.host_ip.as_str(),
                p.host_port.as_str()
            ),
            ("80/tcp", "127.0.0.1", "8081")
        );
        assert_eq!(parse_port("53/udp").unwrap().container, "53/udp");
        assert_eq!(parse_port("127.0.0.1::80").unwrap().host_port, "");
        assert!(parse_port("http")
            .unwrap_err()
            .to_string()
            .contains("port 'http'"));
        assert!(parse_port("80/xyz").is_err());
    }
}
