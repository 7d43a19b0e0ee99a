//! How client commands print what the server answered: one `-o` for every
//! command group.
//!
//! `table` (default) is for people: aligned columns or a short summary;
//! `json` and `yaml` print the API's answer unchanged, for scripts.

use clap::ValueEnum;
use serde_json::Value;

/// Output format of client commands (`-o`, `--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human-readable.
    Table,
    /// The API's JSON.
    Json,
    /// The API's answer as YAML.
    Yaml,
}

/// Prints `v` as `output` says; `table` renders the human form.
pub fn emit(output: OutputFormat, v: &Value, table: impl FnOnce(&Value) -> String) {
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(v).unwrap_or_default()),
        OutputFormat::Yaml => print!("{}", serde_yaml_ng::to_string(v).unwrap_or_default()),
        OutputFormat::Table => print!("{}", table(v)),
    }
}

/// The items of a `{"value": [...]}` list answer (empty when it has none).
pub fn value_list(v: &Value) -> Vec<Value> {
    v.get("value")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Field `k` of `v` as a table cell: strings as they are, `-` for none.
pub fn s(v: &Value, k: &str) -> String {
    match v.get(k) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

/// An optional field as a table cell: the text, or `-` for none (as [`s`]).
pub fn cell(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

/// `items` as aligned columns `cols` (field names, also the headers).
pub fn rows(items: &[Value], cols: &[&str]) -> String {
    let mut widths: Vec<usize> = cols.iter().map(|c| c.len()).collect();
    let cells: Vec<Vec<String>> = items
        .iter()
        .map(|it| cols.iter().map(|c| s(it, c)).collect())
        .collect();
    for r in &cells {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let mut out = String::new();
    let line = |vals: Vec<String>| {
        vals.iter()
            .enumerate()
            .map(|(i, v)| format!("{:width$}", v, width = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    out.push_str(&line(cols.iter().map(|c| c.to_string()).collect()));
    out.push('\n');
    for r in cells {
        out.push_str(&line(r));
        out.push('\n');
    }
    out
}

/// Like [`rows`] with only the columns some item has a value for.
pub fn present_rows(items: &[Value], cols: &[&str]) -> String {
    let cols: Vec<&str> = cols
        .iter()
        .copied()
        .filter(|c| {
            items
                .iter()
                .any(|it| it.get(*c).is_some_and(|v| !v.is_null()))
        })
        .collect();
    rows(items, &cols)
}

/// A human form for any answer: a `{"value": [...]}` list as columns of
/// its items' scalar fields (in the order of the first item, at most 8),
/// an object as `field  value` lines of its scalar fields, anything else
/// as JSON. For command groups without a hand-made table.
pub fn any_table(v: &Value) -> String {
    let scalar = |x: &Value| !x.is_object() && !x.is_array();
    if let Some(items) = v.get("value").and_then(Value::as_array) {
        let cols: Vec<&str> = items
            .first()
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .filter(|(_, x)| scalar(x))
                    .map(|(k, _)| k.as_str())
                    .take(8)
                    .collect()
            })
            .unwrap_or_default();
        if items.is_empty() {
            return "(none)\n".into();
        }
        return present_rows(items, &cols);
    }
    match v.as_object() {
        Some(o) => {
            let width = o.keys().map(String::len).max().unwrap_or(0);
            o.iter()
                .filter(|(_, x)| scalar(x))
                .map(|(k, _)| format!("{k:width$}  {}\n", s(v, k)))
                .collect()
        }
        None => format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default()),
    }
}
