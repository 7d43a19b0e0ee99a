//! The render pipeline before YAML: comment stripping, `$` aliases, run
//! variables and values (`--values` file + `--set`).
//!
//! Contract: reference `acr-tasks.md` §2.1–2.4 (acb `templating/*`,
//! `graph/preprocessor.go`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::template::{render, TemplateError};

/// The run variables (`{{.Run.*}}`), acb `OverrideValuesWithBuildInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunVariables {
    /// Run id (`cf4`).
    #[serde(rename = "ID")]
    pub id: String,
    /// Volume mounted at `/workspace`.
    pub shared_volume: String,
    /// Login server of the run's registry (`127.0.0.1:5000`).
    pub registry: String,
    /// [`RunVariables::registry`] before its first `.`.
    pub registry_name: String,
    /// UTC start time as `20060102-150405z`.
    pub date: String,
    /// `linux`.
    #[serde(rename = "OS")]
    pub os: String,
    /// `amd64`, `arm64`, …
    pub architecture: String,
    /// Commit of the context, or empty.
    pub commit: String,
    /// Branch of the context, or empty.
    pub branch: String,
    /// Task name; empty for quick runs.
    pub task_name: String,
    /// Repository URL of a git context, or empty.
    pub repository: String,
    /// What started the run (`manual`, `commit`, `timer`, `imageUpdate`).
    pub triggered_by: String,
    /// The git tag a tag push ran for (`refs/tags/<tag>` → `<tag>`), or empty.
    pub git_tag: String,
    /// The OS version acb is given with `--os-version` (Windows builds such
    /// as `1903`); empty on Linux.
    #[serde(rename = "OSVersion")]
    pub os_version: String,
}

impl RunVariables {
    /// `.Run.Date`: UTC time as `20060102-150405z` (a literal lowercase `z`,
    /// acb `OverrideValuesWithBuildInfo`).
    pub fn date_of(t: chrono::DateTime<chrono::Utc>) -> String {
        t.format("%Y%m%d-%H%M%Sz").to_string()
    }

    /// The tag of a git ref (`refs/tags/v1` → `v1`); empty for a branch or
    /// commit.
    pub fn git_tag_of(git_ref: &str) -> String {
        git_ref
            .strip_prefix("refs/tags/")
            .unwrap_or_default()
            .to_string()
    }

    /// `registry` up to its first `.` (acb `parseRegistryName`).
    pub fn registry_name_of(registry: &str) -> String {
        registry.split('.').next().unwrap_or_default().to_string()
    }
}

/// Removes every line whose trimmed text starts with `#` (acb
/// `templating.NewTemplate`, including lines inside block scalars) and
/// joins the rest with `\n`, without a final newline, as acb's line scanner
/// does (`"a\n#c\n"` → `"a"`).
pub fn strip_comment_lines(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Values, `--set` items or an `alias:` block that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ValuesError {
    /// A `--set` item with no `=` or an empty key.
    #[error("--set '{0}' is not valid: expected key=value")]
    Set(String),
    /// The values file is not YAML.
    #[error("values file is not valid YAML: {0}")]
    FileSyntax(String),
    /// The values file is YAML but not a map.
    #[error("values file must be a YAML map of name: value")]
    FileNotAMap,
    /// The `alias:` block does not render or has the wrong shape.
    #[error("alias: {0}")]
    Alias(String),
    /// An alias `src` that cannot be loaded or is not a YAML map of strings.
    #[error("alias: src '{src}': {reason}")]
    AliasSource {
        /// The `src` entry as written.
        src: String,
        /// Why it could not be used.
        reason: String,
    },
}

/// What an alias-source loader may fail with (passed through into
/// [`ValuesError::AliasSource`]).
pub type LoadError = Box<dyn std::error::Error + Send + Sync>;

/// Parses `--set k=v` items: split at the first `=`, keys flat (`a.b` is
/// one key). Errors name the item that has no `=`.
pub fn parse_set(items: &[String]) -> Result<Vec<(String, String)>, ValuesError> {
    items
        .iter()
        .map(|i| {
            i.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| ValuesError::Set(i.clone()))
        })
        .collect()
}

/// The `.Values` map: the values file merged into the `--set` map with
/// acb's precedence (`templating/values.go`): a scalar `--set` beats the
/// file's top-level key, maps deep-merge with the file's nested values
/// winning, and a map is never replaced by a scalar.
///
/// Errors: the values file is not a YAML map.
pub fn merge_values(file: Option<&str>, set: &[(String, String)]) -> Result<Value, ValuesError> {
    let mut base = Map::new();
    for (k, v) in set {
        base.insert(k.clone(), Value::String(v.clone()));
    }
    if let Some(text) = file.filter(|t| !t.trim().is_empty()) {
        let doc: Value =
            serde_yaml_ng::from_str(text).map_err(|e| ValuesError::FileSyntax(e.to_string()))?;
        let Value::Object(file_map) = doc else {
            return Err(ValuesError::FileNotAMap);
        };
        merge_into(&mut base, file_map, true);
    }
    Ok(Value::Object(base))
}

fn merge_into(dest: &mut Map<String, Value>, src: Map<String, Value>, top: bool) {
    for (k, v) in src {
        match (dest.get_mut(&k), v) {
            (None, v) => {
                dest.insert(k, v);
            }
            (Some(Value::Object(d)), Value::Object(s)) => merge_into(d, s, false),
            // A map is never overridden by a scalar ("Skip merging").
            (Some(Value::Object(_)), _) => {}
            // Top level: the scalar --set value wins over the file.
            (Some(_), _) if top => {}
            (Some(d), v) => *d = v,
        }
    }
}

/// The template data: `{Run, Values, Secrets, ValuesJSON, RunJSON, Build}`
/// (`Build.ID` is acb's legacy name of `Run.ID`; `Run.SharedContextDirectory`
/// repeats `Run.SharedVolume`).
pub fn template_data(
    run: &RunVariables,
    values: &Value,
    secrets: &BTreeMap<String, String>,
) -> Value {
    let run_v = serde_json::to_value(run).unwrap_or(Value::Null);
    let mut m = Map::new();
    m.insert(
        "ValuesJSON".into(),
        Value::String(crate::shell::quote(&values.to_string())),
    );
    m.insert(
        "RunJSON".into(),
        Value::String(crate::shell::quote(&run_v.to_string())),
    );
    let mut run_map = run_v;
    if let Value::Object(r) = &mut run_map {
        // acb's name for the shared volume in its own tests and docs.
        r.insert(
            "SharedContextDirectory".into(),
            Value::String(run.shared_volume.clone()),
        );
    }
    m.insert("Run".into(), run_map);
    // Legacy `.Build.ID`.
    m.insert("Build".into(), serde_json::json!({"ID": run.id}));
    m.insert("Values".into(), values.clone());
    m.insert(
        "Secrets".into(),
        Value::Object(
            secrets
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        ),
    );
    Value::Object(m)
}

/// The built-in `$` aliases (acb `graph/global-defaults-linux.go`): run
/// variables and image aliases. There is no `$TaskName`.
pub fn default_aliases() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for name in [
        "ID",
        "SharedVolume",
        "Registry",
        "RegistryName",
        "Date",
        "OS",
        "Architecture",
        "Commit",
        "Branch",
    ] {
        m.insert(name.to_string(), format!("{{{{.Run.{name}}}}}"));
    }
    for (k, v) in [
        ("acr", "mcr.microsoft.com/acr/acr-cli:0.19"),
        ("az", "mcr.microsoft.com/acr/azure-cli:2ff604c"),
        ("bash", "mcr.microsoft.com/acr/bash:2ff604c"),
        ("curl", "mcr.microsoft.com/acr/curl:2ff604c"),
        ("cssc", "mcr.microsoft.com/acr/cssc:2ff604c"),
    ] {
        m.insert(k.to_string(), v.to_string());
    }
    m
}

/// The version in the text: the first line that starts with `version`
/// (unindented), quotes stripped (acb `FindVersion`).
pub fn find_version(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix("version")?.trim_start().strip_prefix(':')?;
        Some(
            rest.trim()
                .trim_matches(|c| c == '"' || c == '\'')
                .to_string(),
        )
    })
}

/// Whether `$` aliases apply: version string-compares `>= "v1.1.0"`.
pub fn aliases_enabled(text: &str) -> bool {
    find_version(text).is_some_and(|v| v.as_str() >= "v1.1.0")
}

#[derive(Deserialize, Default)]
struct AliasBlock {
    #[serde(default)]
    src: Vec<String>,
    #[serde(default)]
    values: BTreeMap<String, String>,
    directive: Option<String>,
}

/// Result of [`preprocess_aliases`]: the substituted text and the full
/// alias map (for `cmd` first-token expansion).
#[derive(Debug, Clone)]
pub struct Aliased {
    /// Text with the `alias:` block removed and `$name` substituted.
    pub text: String,
    /// Every alias (defaults + sources + inline values).
    pub aliases: BTreeMap<String, String>,
}

/// Splits off the `alias:` block, loads its `src` entries through `load`
/// (later entries beat earlier ones, inline `values` beat all, defaults are
/// lowest), renders alias values with `data`, and substitutes `$name`
/// (`$$` → `$`, unknown names left unchanged) in the rest.
///
/// Errors: alias names that are not alphanumeric, a bad `directive`, a
/// source that cannot be loaded or parsed.
pub fn preprocess_aliases(
    text: &str,
    data: &Value,
    load: &dyn Fn(&str) -> Result<String, LoadError>,
) -> Result<Aliased, ValuesError> {
    let mut block = String::new();
    let mut rest = String::new();
    let mut in_block = false;
    for line in text.lines() {
        let top_key =
            !line.starts_with([' ', '\t', '-']) && line.contains(':') && !line.trim().is_empty();
        if top_key {
            let key = line.split(':').next().unwrap_or_default().trim();
            in_block = key == "alias";
        }
        if in_block {
            block.push_str(line);
            block.push('\n');
        } else {
            rest.push_str(line);
            rest.push('\n');
        }
    }
    let mut aliases = default_aliases();
    let mut directive = '$';
    if !block.is_empty() {
        let rendered =
            render(&block, data).map_err(|e: TemplateError| ValuesError::Alias(e.to_string()))?;
        #[derive(Deserialize)]
        struct Doc {
            alias: Option<AliasBlock>,
        }
        let doc: Doc =
            serde_yaml_ng::from_str(&rendered).map_err(|e| ValuesError::Alias(e.to_string()))?;
        let a = doc.alias.unwrap_or_default();
        if let Some(d) = a.directive {
            let mut cs = d.chars();
            match (cs.next(), cs.next()) {
                (Some(c), None) if !c.is_ascii_alphanumeric() => directive = c,
                _ => {
                    return Err(ValuesError::Alias(format!(
                        "directive '{d}' is not valid: expected one non-alphanumeric character"
                    )))
                }
            }
        }
        let mut layered: Vec<BTreeMap<String, String>> = Vec::new();
        for src in &a.src {
            let source = |reason: String| ValuesError::AliasSource {
                src: src.clone(),
                reason,
            };
            let t = load(src).map_err(|e| source(e.to_string()))?;
            // An empty alias file adds nothing (acb `loadExternalAlias`).
            let m: BTreeMap<String, String> = if t.trim().is_empty() {
                BTreeMap::new()
            } else {
                serde_yaml_ng::from_str(&t).map_err(|e| source(e.to_string()))?
            };
            layered.push(m);
        }
        layered.push(a.values);
        for layer in layered {
            for (k, v) in layer {
                if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(ValuesError::Alias(format!(
                        "'{k}': alias key names only support alphanumeric characters"
                    )));
                }
                aliases.insert(k, v);
            }
        }
    }
    let mut out = String::with_capacity(rest.len());
    let chars: Vec<char> = rest.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != directive {
            out.push(c);
            i += 1;
            continue;
        }
        if chars.get(i + 1) == Some(&directive) {
            out.push(directive);
            i += 2;
            continue;
        }
        let mut j = i + 1;
        while j < chars.len() && chars[j].is_ascii_alphanumeric() {
            j += 1;
        }
        let name: String = chars[i + 1..j].iter().collect();
        match aliases.get(&name) {
            Some(v) if !name.is_empty() => out.push_str(v),
            _ => out.extend(&chars[i..j]),
        }
        i = j.max(i + 1);
    }
    Ok(Aliased { text: out, aliases })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_wins_at_top_level_and_file_wins_nested() {
        let set = parse_set(&["tag=v2".into(), "a.b=flat".into(), "cfg=scalar".into()]).unwrap();
        let v = merge_values(Some("tag: v1\nother: x\ncfg:\n  k: file\n"), &set).unwrap();
        assert_eq!(v["tag"], "v2");
        assert_eq!(v["other"], "x");
        assert_eq!(v["a.b"], "flat");
        assert_eq!(
            v["cfg"], "scalar",
            "a scalar --set is not replaced by the file's map"
        );
        assert!(parse_set(&["novalue".into()])
            .unwrap_err()
            .to_string()
            .contains("'novalue'"));
    }

    #[test]
    fn comments_are_stripped_even_in_block_scalars() {
        assert_eq!(
            strip_comment_lines("a: 1\n  # c\nb: |\n  #x\n  y\n"),
            "a: 1\nb: |\n  y"
        );
    }

    #[test]
    fn aliases_follow_precedence_and_escapes() {
        let text = "version: v1.1.0\nalias:\n  values:\n    repo: myrepo\n    img: from-values\n  src:\n    - one.yaml\nsteps:\n  - cmd: $img $repo:$ID $$HOME $unknown $Registry\n";
        let data = json!({"Run": {"ID": "cf1", "Registry": "r.io"}});
        let load = |p: &str| -> Result<String, LoadError> {
            assert_eq!(p, "one.yaml");
            Ok("img: from-src\nextra: e\n".into())
        };
        assert!(aliases_enabled(text));
        let a = preprocess_aliases(text, &data, &load).unwrap();
        assert!(!a.text.contains("alias:"));
        assert!(
            a.text
                .contains("cmd: from-values myrepo:{{.Run.ID}} $HOME $unknown {{.Run.Registry}}"),
            "{}",
            a.text
        );
        assert_eq!(a.aliases["extra"], "e");
        assert!(!aliases_enabled("version: v1.0.0\n"));
        assert!(!aliases_enabled("  version: v1.1.0\n"));
        let bad = preprocess_aliases("alias:\n  values:\n    a-b: x\n", &data, &load)
            .unwrap_err()
            .to_string();
        assert!(bad.contains("alphanumeric"), "{bad}");
    }
}
