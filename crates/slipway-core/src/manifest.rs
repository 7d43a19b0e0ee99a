//! Environment definition manifests (`environment.yaml`, `manifest.yaml`, `manifest.yml`).
//!
//! Contract: ADE `concept-environment-yaml.md` and the data-plane model
//! `EnvironmentDefinitionParameter` (reference `ade.md` §4.1). Top-level keys:
//! `name` (required), `version`, `summary`, `description`, `runner`,
//! `templatePath` (required), `parameters[]`. Parameter keys: `id` (required,
//! unique), `name`, `description`, `type` (default `string`), `default`,
//! `allowed`, `required`, `readOnly`. Unknown keys are ignored and reported
//! as warnings.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::names::is_valid_definition_name;

/// File names that mark a folder as an environment definition, in priority order.
pub const MANIFEST_FILE_NAMES: [&str; 3] = ["environment.yaml", "manifest.yaml", "manifest.yml"];

/// A parameter's data type. ADE default: `string`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParameterType {
    /// JSON string.
    #[default]
    String,
    /// JSON number without fraction.
    Integer,
    /// Any JSON number.
    Number,
    /// JSON boolean.
    Boolean,
    /// JSON array.
    Array,
    /// JSON object.
    Object,
}

impl ParameterType {
    /// All types, in the order error messages list them.
    pub const ALL: [ParameterType; 6] = [
        ParameterType::String,
        ParameterType::Integer,
        ParameterType::Number,
        ParameterType::Boolean,
        ParameterType::Array,
        ParameterType::Object,
    ];

    /// The manifest spelling (`"string"`, `"integer"`…).
    pub fn as_str(self) -> &'static str {
        match self {
            ParameterType::String => "string",
            ParameterType::Integer => "integer",
            ParameterType::Number => "number",
            ParameterType::Boolean => "boolean",
            ParameterType::Array => "array",
            ParameterType::Object => "object",
        }
    }

    /// Parses the manifest spelling; `None` for anything else.
    pub fn parse(s: &str) -> Option<ParameterType> {
        ParameterType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether `value` is of this type (`integer` accepts only whole numbers).
    pub fn matches(self, value: &Value) -> bool {
        match self {
            ParameterType::String => value.is_string(),
            ParameterType::Integer => {
                value.is_i64()
                    || value.is_u64()
                    || value
                        .as_f64()
                        .is_some_and(|f| f.fract() == 0.0 && f.is_finite())
            }
            ParameterType::Number => value.is_number(),
            ParameterType::Boolean => value.is_boolean(),
            ParameterType::Array => value.is_array(),
            ParameterType::Object => value.is_object(),
        }
    }
}

/// One entry of `parameters[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParameterDefinition {
    /// Key in the parameters object; unique within the definition.
    pub id: String,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Help text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Data type (default `string`).
    #[serde(rename = "type")]
    pub param_type: ParameterType,
    /// Value used when the developer gives none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub default: Option<Value>,
    /// The only values accepted, when present (non-empty, unique).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub allowed: Option<Vec<Value>>,
    /// Whether a value must be given (or a default exist).
    pub required: bool,
    /// Whether the value is fixed to `default`.
    pub read_only: bool,
}

/// A parsed and validated environment definition manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentDefinitionManifest {
    /// Definition name, unique within a catalog (3–63 characters).
    pub name: String,
    /// Free-form version, e.g. `1.0.0`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Short summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Long description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Runner: `Core`, `Terraform`, `ARM`, `Bicep` or an image reference. `None` means ARM in ADE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
    /// Entry template, relative to the manifest's folder (normalised to `/` separators).
    pub template_path: String,
    /// Parameters in manifest order.
    pub parameters: Vec<ParameterDefinition>,
}

/// The result of parsing a manifest: the definition plus non-fatal warnings.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedManifest {
    /// The validated definition.
    pub manifest: EnvironmentDefinitionManifest,
    /// Human-readable warnings (unknown keys, `required` with `default`…).
    pub warnings: Vec<String>,
}

/// Why a manifest was rejected. `code()` gives ADE's error code.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ManifestError {
    /// Not valid YAML; `line`/`column` are 1-based when known.
    #[error("invalid YAML at line {line}, column {column}: {message}")]
    Yaml {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// Parser message.
        message: String,
    },
    /// Valid YAML that breaks the schema; `field` is a path such as `parameters[1].type`.
    #[error("Schema Error Within Catalog Item: {field}: {message}")]
    Schema {
        /// Path of the offending field.
        field: String,
        /// What was wrong and what was expected.
        message: String,
    },
}

impl ManifestError {
    /// ADE error code (`ParseError` for YAML and schema errors).
    pub fn code(&self) -> &'static str {
        "ParseError"
    }

    fn schema(field: impl Into<String>, message: impl Into<String>) -> Self {
        ManifestError::Schema {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Describes a JSON value the way ADE error messages do: `the string 'x'`, `the number 3`…
pub fn describe_value(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string '{}'", crate::echo::truncate(s)),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

const TOP_LEVEL_KEYS: [&str; 7] = [
    "name",
    "version",
    "summary",
    "description",
    "runner",
    "templatePath",
    "parameters",
];
const PARAMETER_KEYS: [&str; 8] = [
    "id",
    "name",
    "description",
    "type",
    "default",
    "allowed",
    "required",
    "readOnly",
];

/// Parses and validates manifest text.
///
/// Accepts a UTF-8 BOM, CRLF line endings and YAML comments (including the
/// `# yaml-language-server: $schema=…` line). Errors name the field, the
/// value and what was expected; YAML syntax errors carry line and column.
pub fn parse_manifest(text: &str) -> Result<ParsedManifest, ManifestError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let raw: Value = serde_yaml_ng::from_str(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        ManifestError::Yaml {
            line,
            column,
            message: e.to_string(),
        }
    })?;
    let Value::Object(map) = raw else {
        return Err(ManifestError::schema(
            "(root)",
            format!("expected a mapping of keys, found {}", describe_value(&raw)),
        ));
    };
    let mut warnings = Vec::new();
    for key in map.keys() {
        if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
            warnings.push(format!("unknown key '{key}' ignored"));
        }
    }
    let name = required_string(&map, "name", "name", "Missing Name")?;
    if !is_valid_definition_name(&name) {
        return Err(ManifestError::schema(
            "name",
            format!("'{name}' is not a valid name: expected 3-63 characters of letters, digits, spaces and ~ ! , . ' ; : = - _ + ( ) * & $ @"),
        ));
    }
    let template_path =
        required_string(&map, "templatePath", "templatePath", "Missing TemplatePath")?;
    let template_path = normalize_relative_path(&template_path)
        .map_err(|m| ManifestError::schema("templatePath", format!("'{template_path}' {m}")))?;
    let parameters = match map.get("parameters") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let mut out: Vec<ParameterDefinition> = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let p = parse_parameter(i, item, &mut warnings)?;
                if out.iter().any(|q| q.id == p.id) {
                    return Err(ManifestError::schema(
                        format!("parameters[{i}].id"),
                        format!("duplicate parameter id '{}': ids must be unique", p.id),
                    ));
                }
                out.push(p);
            }
            out
        }
        Some(other) => {
            return Err(ManifestError::schema(
                "parameters",
                format!("expected a list, found {}", describe_value(other)),
            ))
        }
    };
    Ok(ParsedManifest {
        manifest: EnvironmentDefinitionManifest {
            name,
            version: optional_string(&map, "version", "version")?,
            summary: optional_string(&map, "summary", "summary")?,
            description: optional_string(&map, "description", "description")?,
            runner: optional_string(&map, "runner", "runner")?,
            template_path,
            parameters,
        },
        warnings,
    })
}

/// The `name` of a manifest that may not pass validation, when it is a
/// usable string: lets a sync keep a rejected definition's error details
/// under its name. `None` for malformed YAML or a missing or invalid name.
pub fn peek_name(text: &str) -> Option<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let raw: Value = serde_yaml_ng::from_str(text).ok()?;
    let name = scalar_to_string(raw.get("name")?)?;
    is_valid_definition_name(&name).then_some(name)
}

/// Normalises a manifest-relative path: `/` separators, no leading `./`.
/// Errors (as a message fragment) for absolute paths and `..` components.
pub fn normalize_relative_path(path: &str) -> Result<String, &'static str> {
    let unified = path.replace('\\', "/");
    if unified.starts_with('/') {
        return Err("must be relative to the definition folder, not absolute");
    }
    let mut parts = Vec::new();
    for part in unified.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("must not leave the definition folder ('..' is not allowed)"),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err("must name a file");
    }
    Ok(parts.join("/"))
}

fn scalar_to_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn optional_string(
    map: &Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<String>, ManifestError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => scalar_to_string(v).map(Some).ok_or_else(|| {
            ManifestError::schema(
                field,
                format!("expected a string, found {}", describe_value(v)),
            )
        }),
    }
}

fn required_string(
    map: &Map<String, Value>,
    key: &str,
    field: &str,
    missing: &str,
) -> Result<String, ManifestError> {
    match optional_string(map, key, field)? {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(ManifestError::schema(field, missing)),
    }
}

fn optional_bool(map: &Map<String, Value>, key: &str, field: &str) -> Result<bool, ManifestError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(ManifestError::schema(
            field,
            format!("expected true or false, found {}", describe_value(v)),
        )),
    }
}

/// ADE samples quote scalars freely (`default: "true"`, `default: "3"`):
/// a quoted string that spells a value of the declared non-string type is
/// read as that value. Anything else is returned unchanged.
fn quoted_scalar(ty: ParameterType, v: &Value) -> Value {
    match (ty, v) {
        (
            ParameterType::Integer | ParameterType::Number | ParameterType::Boolean,
            Value::String(s),
        ) => crate::parameters::coerce_cli_value("", ty, s).unwrap_or_else(|_| v.clone()),
        _ => v.clone(),
    }
}

fn parse_parameter(
    index: usize,
    item: &Value,
    warnings: &mut Vec<String>,
) -> Result<ParameterDefinition, ManifestError> {
    let at = |k: &str| format!("parameters[{index}].{k}");
    let Value::Object(map) = item else {
        return Err(ManifestError::schema(
            format!("parameters[{index}]"),
            format!("expected a mapping, found {}", describe_value(item)),
        ));
    };
    for key in map.keys() {
        if !PARAMETER_KEYS.contains(&key.as_str()) {
            warnings.push(format!("parameters[{index}]: unknown key '{key}' ignored"));
        }
    }
    let id = required_string(map, "id", &at("id"), "Missing Id")?;
    let param_type = match optional_string(map, "type", &at("type"))? {
        None => ParameterType::String,
        Some(t) => ParameterType::parse(&t).ok_or_else(|| {
            ManifestError::schema(
                at("type"),
                format!("unknown type '{t}' for parameter '{id}': expected one of string, integer, number, boolean, array, object"),
            )
        })?,
    };
    let allowed = match map.get("allowed") {
        None | Some(Value::Null) => None,
        Some(Value::Array(raw_values)) => {
            let values: Vec<Value> = raw_values
                .iter()
                .map(|v| quoted_scalar(param_type, v))
                .collect();
            if values.is_empty() {
                return Err(ManifestError::schema(
                    at("allowed"),
                    format!("parameter '{id}': 'allowed' must list at least one value"),
                ));
            }
            for (j, v) in values.iter().enumerate() {
                if values[..j].contains(v) {
                    return Err(ManifestError::schema(
                        at("allowed"),
                        format!(
                            "parameter '{id}': 'allowed' lists {} twice; values must be unique",
                            describe_value(v)
                        ),
                    ));
                }
                if !param_type.matches(v) {
                    return Err(ManifestError::schema(
                        at("allowed"),
                        format!(
                            "parameter '{id}': allowed value {} is not of type {}",
                            describe_value(v),
                            param_type.as_str()
                        ),
                    ));
                }
            }
            Some(values)
        }
        Some(other) => {
            return Err(ManifestError::schema(
                at("allowed"),
                format!(
                    "parameter '{id}': expected a list, found {}",
                    describe_value(other)
                ),
            ))
        }
    };
    let default = match map.get("default") {
        None | Some(Value::Null) => None,
        Some(raw) => {
            let v = &quoted_scalar(param_type, raw);
            if !param_type.matches(v) {
                return Err(ManifestError::schema(
                    at("default"),
                    format!(
                        "parameter '{id}': default {} is not of type {}",
                        describe_value(v),
                        param_type.as_str()
                    ),
                ));
            }
            // ADE syncs such a definition (Microsoft's own sample catalog
            // has one): a warning here, and a deploy that leaves the
            // parameter out is refused (`resolve_parameters`).
            if let Some(allowed) = &allowed {
                if !allowed.contains(v) {
                    warnings.push(format!(
                        "parameter '{id}': default {} is not one of the allowed values {}; a deploy must give one of them",
                        describe_value(v),
                        Value::Array(allowed.clone())
                    ));
                }
            }
            Some(v.clone())
        }
    };
    let required = optional_bool(map, "required", &at("required"))?;
    let read_only = optional_bool(map, "readOnly", &at("readOnly"))?;
    if read_only && default.is_none() {
        return Err(ManifestError::schema(
            at("readOnly"),
            format!("parameter '{id}' is readOnly but has no default"),
        ));
    }
    if required && default.is_some() {
        warnings.push(format!(
            "parameter '{id}' is required and has a default; the default is used when no value is given"
        ));
    }
    Ok(ParameterDefinition {
        id,
        name: optional_string(map, "name", &at("name"))?,
        description: optional_string(map, "description", &at("description"))?,
        param_type,
        default,
        allowed,
        required,
        read_only,
    })
}

impl EnvironmentDefinitionManifest {
    /// The JSON Schema string ADE publishes as `parametersSchema`:
    /// `{"type":"object","properties":{id:{"$id","title","description","type","default","enum"}},"required":[…]}`.
    pub fn parameters_schema(&self) -> String {
        let mut props = Map::new();
        let mut required = Vec::new();
        for p in &self.parameters {
            let mut prop = Map::new();
            prop.insert("$id".into(), Value::String(p.id.clone()));
            prop.insert(
                "title".into(),
                Value::String(p.name.clone().unwrap_or_else(|| p.id.clone())),
            );
            if let Some(d) = &p.description {
                prop.insert("description".into(), Value::String(d.clone()));
            }
            prop.insert("type".into(), Value::String(p.param_type.as_str().into()));
            if let Some(d) = &p.default {
                prop.insert("default".into(), d.clone());
            }
            if let Some(a) = &p.allowed {
                prop.insert("enum".into(), Value::Array(a.clone()));
            }
            if p.read_only {
                prop.insert("readOnly".into(), Value::Bool(true));
            }
            if p.required {
                required.push(Value::String(p.id.clone()));
            }
            props.insert(p.id.clone(), Value::Object(prop));
        }
        serde_json::json!({"type": "object", "properties": props, "required": required}).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\u{feff}# yaml-language-server: $schema=https://example/manifest.schema.json\r\nname: WebApp\r\nversion: 1.0.0\r\nrunner: Terraform\r\ntemplatePath: ./main.tf\r\nextra: 1\r\nparameters:\r\n- id: count\r\n  type: integer\r\n  default: 2\r\n- id: sku\r\n  allowed: [small, large]\r\n  required: true\r\n";

    #[test]
    fn parses_tolerantly() {
        let parsed = parse_manifest(GOOD).unwrap();
        let m = parsed.manifest;
        assert_eq!(m.name, "WebApp");
        assert_eq!(m.template_path, "main.tf");
        assert_eq!(m.parameters[0].param_type, ParameterType::Integer);
        assert_eq!(m.parameters[1].param_type, ParameterType::String);
        assert!(parsed.warnings.iter().any(|w| w.contains("'extra'")));
    }

    fn schema_err(text: &str) -> (String, String) {
        match parse_manifest(text).unwrap_err() {
            ManifestError::Schema { field, message } => (field, message),
            e => panic!("expected schema error, got {e}"),
        }
    }

    #[test]
    fn rejects_schema_errors_naming_the_field() {
        assert_eq!(schema_err("templatePath: a.tf").1, "Missing Name");
        assert_eq!(schema_err("name: abc").1, "Missing TemplatePath");
        let (f, m) =
            schema_err("name: abc\ntemplatePath: a\nparameters:\n- id: x\n  type: strin\n");
        assert_eq!(f, "parameters[0].type");
        assert!(m.contains("'strin'"), "{m}");
        let (f, _) =
            schema_err("name: abc\ntemplatePath: a\nparameters:\n- id: x\n  allowed: []\n");
        assert_eq!(f, "parameters[0].allowed");
        let (f, _) =
            schema_err("name: abc\ntemplatePath: a\nparameters:\n- id: x\n  allowed: [a, a]\n");
        assert_eq!(f, "parameters[0].allowed");
        let (f, m) = schema_err(
            "name: abc\ntemplatePath: a\nparameters:\n- id: x\n  type: integer\n  default: two\n",
        );
        assert_eq!(f, "parameters[0].default");
        assert!(m.contains("the string 'two'"), "{m}");
        let parsed = parse_manifest(
            "name: abc\ntemplatePath: a\nparameters:\n- id: x\n  allowed: [a]\n  default: b\n",
        )
        .unwrap();
        assert_eq!(
            parsed.warnings,
            ["parameter 'x': default the string 'b' is not one of the allowed values [\"a\"]; a deploy must give one of them"]
        );
        let (f, _) =
            schema_err("name: abc\ntemplatePath: a\nparameters:\n- id: x\n  readOnly: true\n");
        assert_eq!(f, "parameters[0].readOnly");
        let (f, _) = schema_err("name: abc\ntemplatePath: ../up.tf\n");
        assert_eq!(f, "templatePath");
        let (f, _) = schema_err("name: abc\ntemplatePath: /abs.tf\n");
        assert_eq!(f, "templatePath");
        let (f, _) = schema_err("name: ab\ntemplatePath: a.tf\n");
        assert_eq!(f, "name");
    }

    #[test]
    fn yaml_errors_have_line_and_column() {
        match parse_manifest("name: abc\ntemplatePath: [unclosed\n").unwrap_err() {
            ManifestError::Yaml { line, .. } => assert!(line >= 2),
            e => panic!("{e}"),
        }
    }

    #[test]
    fn required_with_default_is_a_warning() {
        let p = parse_manifest(
            "name: abc\ntemplatePath: a\nparameters:\n- id: x\n  required: true\n  default: v\n",
        )
        .unwrap();
        assert_eq!(p.warnings.len(), 1);
    }

    #[test]
    fn parameters_schema_lists_required_and_enum() {
        let m = parse_manifest(GOOD).unwrap().manifest;
        let schema: Value = serde_json::from_str(&m.parameters_schema()).unwrap();
        assert_eq!(schema["required"], serde_json::json!(["sku"]));
        assert_eq!(
            schema["properties"]["sku"]["enum"],
            serde_json::json!(["small", "large"])
        );
        assert_eq!(
            schema["properties"]["count"]["default"],
            serde_json::json!(2)
        );
    }
}
