//! Roles, scopes and the authorization decision.
//!
//! Contract: the ADE built-in roles (reference `peers.md` "Tenancy / RBAC":
//! DevCenter Project Admin, Deployment Environments User, Deployment
//! Environments Reader) plus a dev-center-wide admin. Roles are assigned to a
//! principal (user id) at a [`Scope`]: the dev center (`/`), a project
//! (`/projects/{p}`) or a project environment type
//! (`/projects/{p}/environmentTypes/{t}`). An assignment applies to its scope
//! and everything below it.
//!
//! What each role allows ([`Permission`]):
//!
//! | permission | DevCenter Admin | Project Admin | User | Reader |
//! |---|---|---|---|---|
//! | administer the dev center (env types, secrets, tokens, audit) | ✓ | | | |
//! | administer a project (its PETs, catalogs, role assignments) | ✓ | ✓ | | |
//! | read a project (catalogs, definitions, environment types) | ✓ | ✓ | ✓ | ✓ |
//! | read every environment of a type | ✓ | ✓ | | ✓ |
//! | create environments of a type, manage one's own | ✓ | ✓ | ✓ | |
//! | manage any environment of the project | ✓ | ✓ | | |

use std::fmt;

use serde::{Deserialize, Serialize};

/// A built-in role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Everything, everywhere.
    #[serde(rename = "DevCenter Admin")]
    DevCenterAdmin,
    /// Administers one project.
    #[serde(rename = "Project Admin")]
    ProjectAdmin,
    /// Creates environments and manages their own.
    #[serde(rename = "Deployment Environments User")]
    User,
    /// Reads every environment in scope.
    #[serde(rename = "Deployment Environments Reader")]
    Reader,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Role; 4] = [
        Role::DevCenterAdmin,
        Role::ProjectAdmin,
        Role::User,
        Role::Reader,
    ];

    /// The wire name, e.g. `Deployment Environments User`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::DevCenterAdmin => "DevCenter Admin",
            Role::ProjectAdmin => "Project Admin",
            Role::User => "Deployment Environments User",
            Role::Reader => "Deployment Environments Reader",
        }
    }

    /// Parses a wire name; also accepts the ADE spelling `DevCenter Project Admin`.
    ///
    /// Errors: a message naming the value and the accepted names.
    pub fn parse(s: &str) -> Result<Role, AccessParseError> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("DevCenter Project Admin") {
            return Ok(Role::ProjectAdmin);
        }
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| AccessParseError::Role(crate::echo::truncate(s)))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role or scope name that is not one Slipway knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessParseError {
    /// Not one of [`Role::ALL`]'s wire names.
    #[error("role '{0}' is not known: expected one of {roles}", roles = role_names())]
    Role(String),
    /// Not `/`, `/projects/{p}` or `/projects/{p}/environmentTypes/{t}`.
    #[error("scope '{0}' is not valid: expected '/', '/projects/{{project}}' or '/projects/{{project}}/environmentTypes/{{type}}'")]
    Scope(String),
}

fn role_names() -> String {
    Role::ALL
        .iter()
        .map(|r| format!("'{}'", r.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A role given at a scope where ADE does not assign it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignmentError {
    /// DevCenter Admin anywhere but `/`.
    #[error("role '{0}' is assigned at scope '/' only, not '{1}'")]
    DevCenterOnly(Role, Scope),
    /// Project Admin anywhere but a project.
    #[error("role '{0}' is assigned at a project's scope ('/projects/{{project}}'), not '{1}'")]
    ProjectOnly(Role, Scope),
    /// User or Reader at `/`.
    #[error("role '{0}' is assigned at a project or environment type scope, not '/'")]
    NotAtDevCenter(Role),
}

/// Whether `role` may be assigned at `scope`: DevCenter Admin only at `/`,
/// Project Admin only at a project, the data-plane roles at a project or
/// an environment type.
///
/// Errors: [`AssignmentError`] naming the role and the scope.
pub fn check_assignable(role: Role, scope: &Scope) -> Result<(), AssignmentError> {
    match (role, scope) {
        (Role::DevCenterAdmin, Scope::DevCenter) => Ok(()),
        (Role::DevCenterAdmin, _) => Err(AssignmentError::DevCenterOnly(role, scope.clone())),
        (Role::ProjectAdmin, Scope::Project(_)) => Ok(()),
        (Role::ProjectAdmin, _) => Err(AssignmentError::ProjectOnly(role, scope.clone())),
        (_, Scope::DevCenter) => Err(AssignmentError::NotAtDevCenter(role)),
        _ => Ok(()),
    }
}

/// The longest lifetime of an API token, days (100 years: beyond it the
/// expiry is not a representable time).
pub const MAX_TOKEN_DAYS: u32 = 36_500;

/// An API-token request refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRequestError {
    /// A blank user or the `me` alias as the token's user.
    #[error("property 'user' is '{0}': expected a user id")]
    User(String),
    /// Both `expiresAt` and `expiresInDays`.
    #[error("properties 'expiresAt' and 'expiresInDays' exclude each other: give one")]
    BothExpiries,
    /// `expiresAt` not in the future.
    #[error("property 'expiresAt' is '{0}': expected a time in the future")]
    PastExpiry(String),
    /// `expiresInDays` over [`MAX_TOKEN_DAYS`].
    #[error("property 'expiresInDays' is {0}: expected whole days from 1 to {MAX_TOKEN_DAYS}")]
    TooManyDays(u32),
}

/// When a token for `user` asked with `expires_at` / `expires_in_days`
/// expires, issued at `now`: never (`None`) unless one of them is given;
/// 0 days counts as 1.
///
/// Errors: [`TokenRequestError`].
pub fn token_expiry(
    user: &str,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    expires_in_days: Option<u32>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, TokenRequestError> {
    if user.trim().is_empty() || user == "me" {
        return Err(TokenRequestError::User(crate::echo::truncate(user)));
    }
    match (expires_at, expires_in_days) {
        (Some(_), Some(_)) => Err(TokenRequestError::BothExpiries),
        (Some(at), None) if at <= now => Err(TokenRequestError::PastExpiry(at.to_rfc3339())),
        (Some(at), None) => Ok(Some(at)),
        (None, Some(days)) if days > MAX_TOKEN_DAYS => Err(TokenRequestError::TooManyDays(days)),
        (None, Some(days)) => Ok(Some(now + chrono::Duration::days(i64::from(days.max(1))))),
        (None, None) => Ok(None),
    }
}

/// Where an assignment applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `/`: the whole dev center.
    DevCenter,
    /// `/projects/{p}`.
    Project(String),
    /// `/projects/{p}/environmentTypes/{t}`.
    EnvironmentType(String, String),
}

impl Scope {
    /// Parses `/`, `/projects/{p}` or `/projects/{p}/environmentTypes/{t}`.
    ///
    /// Errors: a message naming the value and the accepted forms.
    pub fn parse(s: &str) -> Result<Scope, AccessParseError> {
        let parts: Vec<&str> = s.trim_end_matches('/').split('/').collect();
        match parts.as_slice() {
            [""] => Ok(Scope::DevCenter),
            ["", "projects", p] if !p.is_empty() => Ok(Scope::Project(p.to_string())),
            ["", "projects", p, "environmentTypes", t] if !p.is_empty() && !t.is_empty() => {
                Ok(Scope::EnvironmentType(p.to_string(), t.to_string()))
            }
            _ => Err(AccessParseError::Scope(crate::echo::truncate(s))),
        }
    }

    /// The project the scope lies in (`None` for the dev center).
    pub fn project(&self) -> Option<&str> {
        match self {
            Scope::DevCenter => None,
            Scope::Project(p) | Scope::EnvironmentType(p, _) => Some(p),
        }
    }

    /// Whether an assignment at `self` applies to `target`.
    pub fn covers(&self, target: &Scope) -> bool {
        match (self, target) {
            (Scope::DevCenter, _) => true,
            (Scope::Project(a), Scope::Project(b)) => a == b,
            (Scope::Project(a), Scope::EnvironmentType(b, _)) => a == b,
            (Scope::EnvironmentType(a, x), Scope::EnvironmentType(b, y)) => a == b && x == y,
            _ => false,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::DevCenter => f.write_str("/"),
            Scope::Project(p) => write!(f, "/projects/{p}"),
            Scope::EnvironmentType(p, t) => write!(f, "/projects/{p}/environmentTypes/{t}"),
        }
    }
}

/// One role held at one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Role.
    pub role: Role,
    /// Scope.
    pub scope: Scope,
}

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permission {
    /// Dev-center administration.
    AdministerDevCenter,
    /// Administration of project `.0`.
    AdministerProject(String),
    /// Reading project `.0` (catalogs, definitions, types, own environments).
    ReadProject(String),
    /// Reading every environment of type `.1` in project `.0`.
    ReadEnvironments(String, String),
    /// Creating environments of type `.1` in project `.0`, and managing one's own.
    DeployEnvironments(String, String),
    /// Managing any environment of project `.0`.
    ManageEnvironments(String),
}

impl Permission {
    /// The least role that grants this permission and the scope it must be held at.
    pub fn needs(&self) -> (Role, Scope) {
        match self {
            Permission::AdministerDevCenter => (Role::DevCenterAdmin, Scope::DevCenter),
            Permission::AdministerProject(p) | Permission::ManageEnvironments(p) => {
                (Role::ProjectAdmin, Scope::Project(p.clone()))
            }
            Permission::ReadProject(p) => (Role::Reader, Scope::Project(p.clone())),
            Permission::ReadEnvironments(p, t) => {
                (Role::Reader, Scope::EnvironmentType(p.clone(), t.clone()))
            }
            Permission::DeployEnvironments(p, t) => {
                (Role::User, Scope::EnvironmentType(p.clone(), t.clone()))
            }
        }
    }

    /// Whether `grants` allow this permission.
    pub fn allowed_by(&self, grants: &[Grant]) -> bool {
        grants.iter().any(|g| self.granted_by(g))
    }

    fn granted_by(&self, g: &Grant) -> bool {
        if g.role == Role::DevCenterAdmin {
            return true;
        }
        let in_project = |p: &str| g.scope.project() == Some(p) || g.scope == Scope::DevCenter;
        match self {
            Permission::AdministerDevCenter => false,
            Permission::AdministerProject(p) | Permission::ManageEnvironments(p) => {
                g.role == Role::ProjectAdmin && g.scope.covers(&Scope::Project(p.clone()))
            }
            // Any role anywhere in the project lets one read the project.
            Permission::ReadProject(p) => in_project(p),
            Permission::ReadEnvironments(p, t) => {
                matches!(g.role, Role::ProjectAdmin | Role::Reader)
                    && g.scope
                        .covers(&Scope::EnvironmentType(p.clone(), t.clone()))
            }
            Permission::DeployEnvironments(p, t) => {
                matches!(g.role, Role::ProjectAdmin | Role::User)
                    && g.scope
                        .covers(&Scope::EnvironmentType(p.clone(), t.clone()))
            }
        }
    }

    /// The refusal message: who, what, and the role that would be needed.
    pub fn denied_message(&self, user: &str) -> String {
        let (role, scope) = self.needs();
        let what = match self {
            Permission::AdministerDevCenter => "administer the dev center",
            Permission::AdministerProject(_) => "administer this project",
            Permission::ReadProject(_) => "read this project",
            Permission::ReadEnvironments(_, _) => "read environments of other users",
            Permission::DeployEnvironments(_, _) => "create or manage environments",
            Permission::ManageEnvironments(_) => "manage environments of other users",
        };
        format!("user '{user}' needs role '{role}' at scope '{scope}' (or above) to {what}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(role: Role, scope: &str) -> Grant {
        Grant {
            role,
            scope: Scope::parse(scope).unwrap(),
        }
    }

    #[test]
    fn scopes_parse_print_and_nest() {
        for s in ["/", "/projects/p", "/projects/p/environmentTypes/Dev"] {
            assert_eq!(Scope::parse(s).unwrap().to_string(), s);
        }
        let err = Scope::parse("/projects").unwrap_err().to_string();
        assert!(err.contains("'/projects'"), "{err}");
        let p = Scope::Project("p".into());
        let t = Scope::EnvironmentType("p".into(), "Dev".into());
        assert!(p.covers(&t) && !t.covers(&p));
        assert!(!Scope::Project("q".into()).covers(&t));
    }

    #[test]
    fn roles_grant_what_the_table_says() {
        let dev = Permission::DeployEnvironments("p".into(), "Dev".into());
        let read = Permission::ReadEnvironments("p".into(), "Dev".into());
        let user_on_type = [g(Role::User, "/projects/p/environmentTypes/Dev")];
        assert!(dev.allowed_by(&user_on_type));
        assert!(!read.allowed_by(&user_on_type));
        assert!(Permission::ReadProject("p".into()).allowed_by(&user_on_type));
        assert!(!Permission::ReadProject("q".into()).allowed_by(&user_on_type));
        assert!(
            !Permission::DeployEnvironments("p".into(), "Prod".into()).allowed_by(&user_on_type)
        );
        let reader = [g(Role::Reader, "/projects/p")];
        assert!(read.allowed_by(&reader) && !dev.allowed_by(&reader));
        let padmin = [g(Role::ProjectAdmin, "/projects/p")];
        assert!(Permission::ManageEnvironments("p".into()).allowed_by(&padmin));
        assert!(!Permission::AdministerDevCenter.allowed_by(&padmin));
        assert!(!Permission::AdministerProject("q".into()).allowed_by(&padmin));
        assert!(Permission::AdministerDevCenter.allowed_by(&[g(Role::DevCenterAdmin, "/")]));
    }

    #[test]
    fn refusals_name_the_needed_role() {
        let m = Permission::DeployEnvironments("p".into(), "Dev".into()).denied_message("bob");
        assert_eq!(m, "user 'bob' needs role 'Deployment Environments User' at scope '/projects/p/environmentTypes/Dev' (or above) to create or manage environments");
        assert_eq!(
            Role::parse("deployment environments reader"),
            Ok(Role::Reader)
        );
        assert!(Role::parse("Owner")
            .unwrap_err()
            .to_string()
            .contains("'Owner'"));
    }

    #[test]
    fn roles_are_assignable_only_at_their_scopes() {
        let project = Scope::Project("p".into());
        let env_type = Scope::EnvironmentType("p".into(), "t".into());
        assert!(check_assignable(Role::DevCenterAdmin, &Scope::DevCenter).is_ok());
        assert!(check_assignable(Role::DevCenterAdmin, &project).is_err());
        assert!(check_assignable(Role::ProjectAdmin, &project).is_ok());
        assert!(check_assignable(Role::ProjectAdmin, &env_type).is_err());
        assert!(check_assignable(Role::ProjectAdmin, &Scope::DevCenter).is_err());
        for role in [Role::User, Role::Reader] {
            assert!(check_assignable(role, &project).is_ok());
            assert!(check_assignable(role, &env_type).is_ok());
            assert_eq!(
                check_assignable(role, &Scope::DevCenter)
                    .unwrap_err()
                    .to_string(),
                format!(
                    "role '{role}' is assigned at a project or environment type scope, not '/'"
                )
            );
        }
    }

    #[test]
    fn token_lifetimes_follow_the_request() {
        let now = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let day = chrono::Duration::days(1);
        assert_eq!(token_expiry("dana", None, None, now), Ok(None));
        assert_eq!(
            token_expiry("dana", None, Some(0), now),
            Ok(Some(now + day))
        );
        assert_eq!(
            token_expiry("dana", Some(now + day), None, now),
            Ok(Some(now + day))
        );
        assert_eq!(
            token_expiry("dana", Some(now), None, now),
            Err(TokenRequestError::PastExpiry(now.to_rfc3339()))
        );
        assert_eq!(
            token_expiry("dana", Some(now + day), Some(1), now),
            Err(TokenRequestError::BothExpiries)
        );
        assert_eq!(
            token_expiry("dana", None, Some(MAX_TOKEN_DAYS + 1), now),
            Err(TokenRequestError::TooManyDays(MAX_TOKEN_DAYS + 1))
        );
        assert!(token_expiry("me", None, None, now).is_err());
        assert!(token_expiry(" ", None, None, now).is_err());
    }
}
