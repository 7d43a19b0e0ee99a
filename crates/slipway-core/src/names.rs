//! Resource-name rules.
//!
//! Source: ADE data-plane name parameters (`environmentName`, `catalogName`,
//! `definitionName`, `environmentTypeName`) use the pattern
//! `^[a-zA-Z0-9][a-zA-Z0-9-_.]{2,62}$` (3–63 characters).

use thiserror::Error;

/// [`validate_resource_name`]'s rule as a regular expression (ECMA-262 and
/// Python `re` agree on it), for API descriptions.
pub const RESOURCE_NAME_PATTERN: &str = "^[a-zA-Z0-9][a-zA-Z0-9_.-]{2,62}$";

/// A resource name that does not follow the ADE name pattern.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid {kind} name '{value}': expected 3-63 characters, starting with a letter or digit, then letters, digits, '-', '_' or '.'")]
pub struct NameError {
    /// What was being named, e.g. `environment`.
    pub kind: &'static str,
    /// The rejected value, cut at 64 characters (`crate::echo::truncate`).
    pub value: String,
}

/// Checks `value` against `^[a-zA-Z0-9][a-zA-Z0-9-_.]{2,62}$`.
///
/// `kind` names the resource in the error message (`"project"`, `"environment"`…).
pub fn validate_resource_name(kind: &'static str, value: &str) -> Result<(), NameError> {
    let ok = (3..=63).contains(&value.len())
        && value
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(NameError {
            kind,
            value: crate::echo::truncate(value),
        })
    }
}

/// Checks an environment definition's display `name` (ADE catalog rule):
/// 3–63 characters of alphanumerics, spaces and `~ ! , . ' ; : = - _ + ( ) * & $ @`.
/// Whether `s` is a GUID: `8-4-4-4-12` hexadecimal digits (Entra object
/// and client ids, Azure role definition names).
pub fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Whether `value` is a valid environment definition name.
pub fn is_valid_definition_name(value: &str) -> bool {
    let len = value.chars().count();
    (3..=63).contains(&len)
        && value.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    ' ' | '~'
                        | '!'
                        | ','
                        | '.'
                        | '\''
                        | ';'
                        | ':'
                        | '='
                        | '-'
                        | '_'
                        | '+'
                        | '('
                        | ')'
                        | '*'
                        | '&'
                        | '$'
                        | '@'
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_names() {
        assert!(validate_resource_name("environment", "dev-1").is_ok());
        assert!(validate_resource_name("environment", "a.b_c").is_ok());
        let err = validate_resource_name("environment", "ab").unwrap_err();
        assert!(err.to_string().contains("'ab'"));
        assert!(validate_resource_name("environment", "-abc").is_err());
        assert!(validate_resource_name("environment", "abc/def").is_err());
        assert!(validate_resource_name("environment", &"a".repeat(64)).is_err());
    }

    #[test]
    fn definition_names() {
        assert!(is_valid_definition_name("Web App (dev)"));
        assert!(!is_valid_definition_name("ab"));
        assert!(!is_valid_definition_name("bad/name"));
    }
}
