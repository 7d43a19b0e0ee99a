//! Sprig v2.22's `semver` and `semverCompare`, with the rules of the
//! Masterminds semver v1 release Sprig v2.22 pins (`version.go`,
//! `constraints.go`): lenient versions (`v1`, `1.2` → 1.2.0), `||` between
//! alternatives, `,` between conditions that must all hold, hyphen ranges
//! (`1.1 - 2` → `>= 1.1, <= 2`), wildcards (`1.2.x`, `*`), `~` (same
//! major and minor), `^` (same major), and a prerelease version matching
//! only constraints that name a prerelease (Masterminds issue 21).

use std::cmp::Ordering;

/// A parsed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: String,
    pub metadata: String,
    pub original: String,
}

impl Version {
    /// `NewVersion`: `v?M(.m)?(.p)?(-pre)?(+meta)?`.
    pub fn parse(s: &str) -> Option<Version> {
        let body = s.strip_prefix('v').unwrap_or(s);
        let (body, metadata) = match body.split_once('+') {
            Some((b, m)) if ident_list(m) => (b, m.to_string()),
            Some(_) => return None,
            None => (body, String::new()),
        };
        let (nums, pre) = match body.split_once('-') {
            Some((n, p)) if ident_list(p) => (n, p.to_string()),
            Some(_) => return None,
            None => (body, String::new()),
        };
        let parts: Vec<&str> = nums.split('.').collect();
        if parts.is_empty() || parts.len() > 3 {
            return None;
        }
        let mut n = [0u64; 3];
        for (i, p) in parts.iter().enumerate() {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            n[i] = p.parse().ok()?;
        }
        Some(Version {
            major: n[0],
            minor: n[1],
            patch: n[2],
            pre,
            metadata,
            original: s.to_string(),
        })
    }

    /// `String()`: `M.m.p[-pre][+meta]`.
    pub fn to_text(&self) -> String {
        let mut s = format!("{}.{}.{}", self.major, self.minor, self.patch);
        if !self.pre.is_empty() {
            s.push('-');
            s.push_str(&self.pre);
        }
        if !self.metadata.is_empty() {
            s.push('+');
            s.push_str(&self.metadata);
        }
        s
    }

    fn compare(&self, o: &Version) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(o.major, o.minor, o.patch))
            .then_with(|| match (self.pre.is_empty(), o.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_pre(&self.pre, &o.pre),
            })
    }
}

fn ident_list(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// SemVer prerelease precedence: numeric parts numerically and below
/// alphanumeric ones, a longer list wins a shared prefix.
fn compare_pre(a: &str, b: &str) -> Ordering {
    let (pa, pb): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
    for (x, y) in pa.iter().zip(pb.iter()) {
        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(i), Ok(j)) => i.cmp(&j),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            _ => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    pa.len().cmp(&pb.len())
}

#[derive(Debug, Clone)]
struct Constraint {
    op: String,
    con: Version,
    minor_dirty: bool,
    patch_dirty: bool,
    dirty: bool,
}

fn is_x(s: &str) -> bool {
    matches!(s, "x" | "X" | "*")
}

/// One `op version` condition. A wildcard major means any version; a
/// wildcard or missing minor, or a wildcard patch, makes the condition a
/// range ("dirty"); a missing patch is 0.
fn parse_constraint(c: &str) -> Option<Constraint> {
    let c = c.trim();
    let ops = ["!=", ">=", "=>", "<=", "=<", "~>", "=", ">", "<", "~", "^"];
    let op = ops
        .iter()
        .find(|o| c.starts_with(**o))
        .copied()
        .unwrap_or("");
    let v = c[op.len()..].trim();
    let v = v.strip_prefix('v').unwrap_or(v);
    let (core, tail) = match v.find(['-', '+']) {
        Some(i) => (&v[..i], &v[i..]),
        None => (v, ""),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let (mut minor_dirty, mut patch_dirty, mut dirty) = (false, false, false);
    let ver = if is_x(parts[0]) {
        dirty = true;
        "0.0.0".to_string()
    } else if parts.get(1).is_none_or(|p| is_x(p)) {
        minor_dirty = true;
        dirty = true;
        format!("{}.0.0{tail}", parts[0])
    } else if parts.get(2).is_some_and(|p| is_x(p)) {
        patch_dirty = true;
        dirty = true;
        format!("{}.{}.0{tail}", parts[0], parts[1])
    } else {
        format!("{core}{tail}")
    };
    Some(Constraint {
        op: op.to_string(),
        con: Version::parse(&ver)?,
        minor_dirty,
        patch_dirty,
        dirty,
    })
}

fn tilde(v: &Version, c: &Constraint) -> bool {
    if v.compare(&c.con) == Ordering::Less {
        return false;
    }
    if c.con.major == 0 && c.con.minor == 0 && c.con.patch == 0 && !c.minor_dirty && !c.patch_dirty
    {
        return true;
    }
    v.major == c.con.major && (v.minor == c.con.minor || c.minor_dirty)
}

fn check(v: &Version, c: &Constraint) -> bool {
    // A prerelease only matches a condition that names one (issue 21).
    if !v.pre.is_empty() && c.con.pre.is_empty() {
        return false;
    }
    let cmp = v.compare(&c.con);
    let below_range = || !(v.major > c.con.major || (v.minor > c.con.minor && !c.minor_dirty));
    match c.op.as_str() {
        "" | "=" if c.dirty => tilde(v, c),
        "" | "=" => cmp == Ordering::Equal,
        "!=" if c.dirty => c.con.major != v.major || (c.con.minor != v.minor && !c.minor_dirty),
        "!=" => cmp != Ordering::Equal,
        ">" => cmp == Ordering::Greater,
        ">=" | "=>" => cmp != Ordering::Less,
        "<" if c.dirty => below_range(),
        "<" => cmp == Ordering::Less,
        "<=" | "=<" if c.dirty => below_range(),
        "<=" | "=<" => cmp != Ordering::Greater,
        "~" | "~>" => tilde(v, c),
        "^" => cmp != Ordering::Less && v.major == c.con.major,
        _ => false,
    }
}

/// Rewrites `a - b` into `>= a, <= b` (Masterminds' `rewriteRange`).
fn rewrite_ranges(s: &str) -> String {
    s.split("||")
        .map(|alt| {
            alt.split(',')
                .map(|part| match part.split_once(" - ") {
                    Some((a, b)) => format!(">= {}, <= {}", a.trim(), b.trim()),
                    None => part.to_string(),
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect::<Vec<_>>()
        .join("||")
}

/// A constraint or version `semverCompare` cannot read (Masterminds'
/// messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum SemverError {
    /// A condition that is not `op version`.
    #[error("improper constraint: {0}")]
    Constraint(String),
    /// A version that is not `v?M(.m)?(.p)?(-pre)?(+meta)?`.
    #[error("Invalid Semantic Version")]
    Version,
}

/// `semverCompare constraint version`.
///
/// Errors: [`SemverError`].
pub(super) fn satisfies(constraint: &str, version: &str) -> Result<bool, SemverError> {
    let mut alternatives = Vec::new();
    for alt in rewrite_ranges(constraint).split("||") {
        let mut all = Vec::new();
        for part in alt.split(',') {
            all.push(
                parse_constraint(part).ok_or_else(|| SemverError::Constraint(part.to_string()))?,
            );
        }
        alternatives.push(all);
    }
    let v = Version::parse(version).ok_or(SemverError::Version)?;
    Ok(alternatives
        .iter()
        .any(|all| all.iter().all(|c| check(&v, c))))
}

/// The key that marks a version object (it holds a NUL, so no values file
/// writes it); its value is the version's `String()`, what printing shows.
pub(super) const SEMVER_KEY: &str = "\u{0}semver";

/// `semver s` as the template sees it: `.Major`, `.Minor`, `.Patch`,
/// `.Prerelease`, `.Metadata`, `.Original`; printed as `M.m.p[-pre][+meta]`.
pub(super) fn version_value(v: &Version) -> serde_json::Value {
    serde_json::json!({
        "Major": v.major, "Minor": v.minor, "Patch": v.patch,
        "Prerelease": v.pre, "Metadata": v.metadata, "Original": v.original,
        SEMVER_KEY: v.to_text(),
    })
}

/// A method of a version object (Masterminds semver's `*Version`):
/// `Compare` (-1, 0, 1), `LessThan`, `GreaterThan`, `Equal`, `String`,
/// `IncMajor`, `IncMinor`, `IncPatch`. `None` when `receiver` is no version.
///
/// Errors: an argument that is not a version, a wrong argument count, an
/// unknown method.
pub(super) fn method(
    receiver: &serde_json::Value,
    name: &str,
    args: &[serde_json::Value],
) -> Option<Result<serde_json::Value, String>> {
    let text = receiver.get(SEMVER_KEY)?.as_str()?;
    let v = Version::parse(text)?;
    let other = || -> Result<Version, String> {
        match args {
            [o] => o
                .get(SEMVER_KEY)
                .and_then(serde_json::Value::as_str)
                .and_then(Version::parse)
                .ok_or_else(|| {
                    format!("{name}: the argument is not a version (expected semver \"…\")")
                }),
            _ => Err(format!(
                "wrong number of args for {name}: want 1 got {}",
                args.len()
            )),
        }
    };
    let bump = |major: u64, minor: u64, patch: u64| Version {
        major,
        minor,
        patch,
        pre: String::new(),
        metadata: String::new(),
        original: format!("{major}.{minor}.{patch}"),
    };
    Some(match name {
        "Compare" => other().map(|o| serde_json::json!(v.compare(&o) as i8)),
        "LessThan" => other().map(|o| serde_json::json!(v.compare(&o) == Ordering::Less)),
        "GreaterThan" => other().map(|o| serde_json::json!(v.compare(&o) == Ordering::Greater)),
        "Equal" => other().map(|o| serde_json::json!(v.compare(&o) == Ordering::Equal)),
        "String" => Ok(serde_json::json!(v.to_text())),
        "IncMajor" => Ok(version_value(&bump(v.major + 1, 0, 0))),
        "IncMinor" => Ok(version_value(&bump(v.major, v.minor + 1, 0))),
        "IncPatch" => Ok(version_value(&bump(v.major, v.minor, v.patch + 1))),
        other => Err(format!("can't call method \"{other}\" on a version")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cases of Masterminds semver v1's `constraints_test.go`
    /// (`TestConstraintsCheck`), all of them.
    #[test]
    fn constraints_as_masterminds_v1_checks_them() {
        for (c, v, want) in [
            ("*", "1.2.3", true),
            ("~0.0.0", "1.2.3", true),
            ("0.x.x", "1.2.3", false),
            ("0.0.x", "1.2.3", false),
            ("0.0.0", "1.2.3", false),
            ("^0.0.0", "1.2.3", false),
            ("= 2.0", "1.2.3", false),
            ("= 2.0", "2.0.0", true),
            ("4.1", "4.1.0", true),
            ("4.1.x", "4.1.3", true),
            ("1.x", "1.4", true),
            ("!=4.1", "4.1.0", false),
            ("!=4.1-alpha", "4.1.0-alpha", false),
            ("!=4.1-alpha", "4.1.0", true),
            ("!=4.1", "5.1.0", true),
            ("!=4.x", "5.1.0", true),
            ("!=4.x", "4.1.0", false),
            ("!=4.1.x", "4.2.0", true),
            ("!=4.2.x", "4.2.3", false),
            (">1.1", "4.1.0", true),
            (">1.1", "1.1.0", false),
            ("<1.1", "0.1.0", true),
            ("<1.1", "1.1.0", false),
            ("<1.1", "1.1.1", false),
            ("<1.x", "1.1.1", true),
            ("<1.x", "2.1.1", false),
            ("<1.1.x", "1.2.1", false),
            ("<1.1.x", "1.1.500", true),
            ("<1.2.x", "1.1.1", true),
            (">=1.1", "4.1.0", true),
            (">=1.1", "4.1.0-beta", false),
            (">=1.1", "1.1.0", true),
            (">=1.1", "0.0.9", false),
            ("<=1.1", "0.1.0", true),
            ("<=1.1", "0.1.0-alpha", false),
            ("<=1.1-a", "0.1.0-alpha", true),
            ("<=1.1", "1.1.0", true),
            ("<=1.x", "1.1.0", true),
            ("<=2.x", "3.1.0", false),
            ("<=1.1", "1.1.1", false),
            ("<=1.1.x", "1.2.500", false),
            (">1.1, <2", "1.1.1", true),
            (">1.1, <3", "4.3.2", false),
            (">=1.1, <2, !=1.2.3", "1.2.3", false),
            (">=1.1, <2, !=1.2.3 || > 3", "3.1.2", true),
            (">=1.1, <2, !=1.2.3 || >= 3", "3.0.0", true),
            (">=1.1, <2, !=1.2.3 || > 3", "3.0.0", false),
            (">=1.1, <2, !=1.2.3 || > 3", "1.2.3", false),
            ("1.1 - 2", "1.1.1", true),
            ("1.1-3", "4.3.2", false),
            ("^1.1", "1.1.1", true),
            ("^1.1", "4.3.2", false),
            ("^1.x", "1.1.1", true),
            ("^2.x", "1.1.1", false),
            ("^1.x", "2.1.1", false),
            ("^1.x", "1.1.1-beta1", false),
            ("^1.1.2-alpha", "1.2.1-beta1", true),
            ("^1.2.x-alpha", "1.1.1-beta1", false),
            ("~*", "2.1.1", true),
            ("~1", "2.1.1", false),
            ("~1", "1.3.5", true),
            ("~1", "1.4", true),
            ("~1.x", "2.1.1", false),
            ("~1.x", "1.3.5", true),
            ("~1.x", "1.4", true),
            ("~1.1", "1.1.1", true),
            ("~1.1", "1.1.1-alpha", false),
            ("~1.1-alpha", "1.1.1-beta", true),
            ("~1.1.1-beta", "1.1.1-alpha", false),
            ("~1.1.1-beta", "1.1.1", true),
            ("~1.2.3", "1.2.5", true),
            ("~1.2.3", "1.2.2", false),
            ("~1.2.3", "1.3.2", false),
            ("~1.1", "1.2.3", false),
            ("~1.3", "2.4.5", false),
        ] {
            assert_eq!(satisfies(c, v), Ok(want), "{c} vs {v}");
        }
        assert!(satisfies("1.2.3 ?", "1.2.3").is_err());
        assert!(satisfies("^1.2", "not-a-version").is_err());
        let v = Version::parse("v1.2").unwrap();
        assert_eq!(
            (v.major, v.minor, v.patch, v.to_text()),
            (1, 2, 0, "1.2.0".into())
        );
        assert!(Version::parse("1.2.3.4").is_none());
    }
}
