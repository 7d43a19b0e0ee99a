//! Checking the parameters a developer supplies against a definition.
//!
//! ADE wording for type errors (reference `ade.md` §4.2, per-definition error
//! details): "Expected parameter value for 'InstanceCount' to be integer but
//! found the string 'test'." — code `ParameterValueInvalid`.

use serde_json::{Map, Value};
use thiserror::Error;

use crate::manifest::{describe_value, ParameterDefinition, ParameterType};

/// One rejected parameter. `code()` gives the ADE error code.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParameterError {
    /// Value of the wrong JSON type.
    #[error("Expected parameter value for '{id}' to be {expected} but found {found}.")]
    WrongType {
        /// Parameter id.
        id: String,
        /// Expected type name.
        expected: &'static str,
        /// Description of the value found.
        found: String,
    },
    /// Value outside `allowed`.
    #[error("Parameter value for '{id}' must be one of {allowed} but found {found}.")]
    NotAllowed {
        /// Parameter id.
        id: String,
        /// The allowed values, as JSON.
        allowed: String,
        /// Description of the value found.
        found: String,
    },
    /// Required parameter with neither value nor default.
    #[error("Missing required parameter '{id}'.")]
    Missing {
        /// Parameter id.
        id: String,
    },
    /// A `readOnly` parameter given a value other than its default.
    #[error("Parameter '{id}' is read-only and must stay {expected} but found {found}.")]
    ReadOnly {
        /// Parameter id.
        id: String,
        /// The fixed value, described.
        expected: String,
        /// Description of the value found.
        found: String,
    },
    /// A command-line `key=value` whose text is not a value of the type.
    #[error("parameter '{id}': expected {expected} but found '{found}'")]
    NotParsable {
        /// Parameter id.
        id: String,
        /// Expected type name.
        expected: &'static str,
        /// The text given.
        found: String,
    },
    /// A key the definition does not declare.
    #[error("Parameter '{id}' is not defined by the environment definition; defined parameters: {defined}.")]
    Unknown {
        /// The unknown key.
        id: String,
        /// Comma-separated defined ids (or `none`).
        defined: String,
    },
}

impl ParameterError {
    /// ADE error code for all parameter errors.
    pub fn code(&self) -> &'static str {
        "ParameterValueInvalid"
    }

    /// The parameter id the error is about.
    pub fn parameter(&self) -> &str {
        match self {
            ParameterError::WrongType { id, .. }
            | ParameterError::NotAllowed { id, .. }
            | ParameterError::Missing { id }
            | ParameterError::ReadOnly { id, .. }
            | ParameterError::NotParsable { id, .. }
            | ParameterError::Unknown { id, .. } => id,
        }
    }
}

/// Validates `supplied` against `definitions` and returns the effective
/// parameters: supplied values plus defaults for the ones not given.
///
/// A JSON `null` counts as not given. Errors are collected for every
/// parameter (not just the first) in definition order, unknown keys last.
pub fn resolve_parameters(
    definitions: &[ParameterDefinition],
    supplied: &Map<String, Value>,
) -> Result<Map<String, Value>, Vec<ParameterError>> {
    let mut errors = Vec::new();
    let mut out = Map::new();
    for def in definitions {
        match supplied.get(&def.id).filter(|v| !v.is_null()) {
            Some(value) => {
                if !def.param_type.matches(value) {
                    errors.push(ParameterError::WrongType {
                        id: def.id.clone(),
                        expected: def.param_type.as_str(),
                        found: describe_value(value),
                    });
                    continue;
                }
                if let Some(allowed) = &def.allowed {
                    if !allowed.iter().any(|a| json_eq(a, value)) {
                        errors.push(ParameterError::NotAllowed {
                            id: def.id.clone(),
                            allowed: Value::Array(allowed.clone()).to_string(),
                            found: describe_value(value),
                        });
                        continue;
                    }
                }
                if def.read_only {
                    if let Some(d) = &def.default {
                        if !json_eq(d, value) {
                            errors.push(ParameterError::ReadOnly {
                                id: def.id.clone(),
                                expected: describe_value(d),
                                found: describe_value(value),
                            });
                            continue;
                        }
                    }
                }
                out.insert(def.id.clone(), value.clone());
            }
            None => match &def.default {
                // A default outside `allowed` (synced with a warning) is
                // not a value: the caller must give an allowed one.
                Some(d)
                    if def
                        .allowed
                        .as_ref()
                        .is_some_and(|a| !a.iter().any(|v| json_eq(v, d))) =>
                {
                    errors.push(ParameterError::NotAllowed {
                        id: def.id.clone(),
                        allowed: Value::Array(def.allowed.clone().unwrap_or_default()).to_string(),
                        found: describe_value(d),
                    });
                }
                Some(d) => {
                    out.insert(def.id.clone(), d.clone());
                }
                None if def.required => errors.push(ParameterError::Missing { id: def.id.clone() }),
                None => {}
            },
        }
    }
    for key in supplied.keys() {
        if !definitions.iter().any(|d| &d.id == key) {
            let defined: Vec<&str> = definitions.iter().map(|d| d.id.as_str()).collect();
            errors.push(ParameterError::Unknown {
                id: crate::echo::truncate(key),
                defined: if defined.is_empty() {
                    "none".into()
                } else {
                    defined.join(", ")
                },
            });
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// JSON equality that treats `2` and `2.0` as equal.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_number() && b.is_number() => x == y,
        _ => a == b,
    }
}

/// Converts a command-line `key=value` string into the JSON value a
/// parameter of type `ty` expects (`"3"` → `3` for integers, `"true"` → `true`,
/// JSON text for arrays and objects). Errors name the expected type.
pub fn coerce_cli_value(id: &str, ty: ParameterType, raw: &str) -> Result<Value, ParameterError> {
    let bad = || ParameterError::NotParsable {
        id: id.to_string(),
        expected: ty.as_str(),
        found: crate::echo::truncate(raw),
    };
    match ty {
        ParameterType::String => Ok(Value::String(raw.to_string())),
        ParameterType::Integer => raw
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| bad()),
        ParameterType::Number => {
            let v: Value = serde_json::from_str(raw.trim()).map_err(|_| bad())?;
            if v.is_number() {
                Ok(v)
            } else {
                Err(bad())
            }
        }
        ParameterType::Boolean => match raw.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(bad()),
        },
        ParameterType::Array | ParameterType::Object => {
            let v: Value = serde_json::from_str(raw).map_err(|_| bad())?;
            if ty.matches(&v) {
                Ok(v)
            } else {
                Err(bad())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse_manifest;
    use serde_json::json;

    fn defs() -> Vec<ParameterDefinition> {
        parse_manifest(
            "name: abc\ntemplatePath: a\nparameters:\n- id: InstanceCount\n  type: integer\n  default: 1\n- id: sku\n  allowed: [small, large]\n  required: true\n- id: fixed\n  readOnly: true\n  default: v1\n",
        )
        .unwrap()
        .manifest
        .parameters
    }

    fn one(supplied: Value) -> String {
        let errs = resolve_parameters(&defs(), supplied.as_object().unwrap()).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        errs[0].to_string()
    }

    #[test]
    fn applies_defaults() {
        let out =
            resolve_parameters(&defs(), json!({"sku": "small"}).as_object().unwrap()).unwrap();
        assert_eq!(out["InstanceCount"], json!(1));
        assert_eq!(out["fixed"], json!("v1"));
    }

    #[test]
    fn ade_wording() {
        assert_eq!(
            one(json!({"sku": "small", "InstanceCount": "test"})),
            "Expected parameter value for 'InstanceCount' to be integer but found the string 'test'."
        );
        assert!(one(json!({"sku": "medium"})).contains("'sku' must be one of"));
        assert_eq!(one(json!({})), "Missing required parameter 'sku'.");
        assert!(one(json!({"sku": "small", "fixed": "v2"})).contains("read-only"));
        assert!(one(json!({"sku": "small", "nope": 1})).contains("'nope' is not defined"));
        assert!(resolve_parameters(
            &defs(),
            json!({"sku": "small", "InstanceCount": 2.0})
                .as_object()
                .unwrap()
        )
        .is_ok());
        assert!(one(json!({"sku": "small", "InstanceCount": 2.5})).contains("the number 2.5"));
    }

    #[test]
    fn a_default_outside_allowed_must_be_replaced_by_an_allowed_value() {
        // As in Microsoft's published sample catalog: ADE syncs it.
        let defs = parse_manifest(
            "name: abc\ntemplatePath: a\nparameters:\n- id: sku\n  default: B1\n  allowed: [S1, P1v2]\n",
        )
        .unwrap()
        .manifest
        .parameters;
        let errs = resolve_parameters(&defs, &Map::new()).unwrap_err();
        assert_eq!(
            errs[0].to_string(),
            "Parameter value for 'sku' must be one of [\"S1\",\"P1v2\"] but found the string 'B1'."
        );
        assert_eq!(errs[0].code(), "ParameterValueInvalid");
        let out = resolve_parameters(&defs, json!({"sku": "S1"}).as_object().unwrap()).unwrap();
        assert_eq!(out["sku"], "S1");
    }

    #[test]
    fn cli_coercion() {
        assert_eq!(
            coerce_cli_value("n", ParameterType::Integer, "3"),
            Ok(json!(3))
        );
        assert!(coerce_cli_value("n", ParameterType::Integer, "x")
            .unwrap_err()
            .to_string()
            .contains("expected integer"));
        assert_eq!(
            coerce_cli_value("b", ParameterType::Boolean, "TRUE"),
            Ok(json!(true))
        );
        assert_eq!(
            coerce_cli_value("a", ParameterType::Array, "[1,2]"),
            Ok(json!([1, 2]))
        );
        assert!(coerce_cli_value("a", ParameterType::Object, "[1]").is_err());
        assert_eq!(
            coerce_cli_value("s", ParameterType::String, "3"),
            Ok(json!("3"))
        );
    }
}
