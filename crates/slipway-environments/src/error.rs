//! Why the environment service refused a request.

use slipway_core::{OperationStatus, ParameterError};
use slipway_store::StoreError;
use thiserror::Error;

/// A refused environment request. [`EnvironmentError::code`] gives the ADE
/// (or Slipway) error code; [`EnvironmentError::kind`] says which HTTP class
/// of answer it is, so the API renders it without knowing each rule.
#[derive(Debug, Error)]
pub enum EnvironmentError {
    /// No project of that name.
    #[error("project '{project}' not found")]
    ProjectNotFound {
        /// The project asked for.
        project: String,
    },
    /// The environment does not exist (or the caller may not know it
    /// does). Name and user are echoed cut ([`slipway_core::echo::truncate`]).
    #[error("environment '{name}' of user '{user}' not found in project '{project}'")]
    EnvironmentNotFound {
        /// Project.
        project: String,
        /// Owner asked for.
        user: String,
        /// Environment name.
        name: String,
    },
    /// Another user owns an environment of that name in the project
    /// (environment names are unique per project, as in ADE).
    #[error(
        "environment '{name}' already exists in project '{project}' and belongs to another user"
    )]
    NameInUse {
        /// Project.
        project: String,
        /// Environment name.
        name: String,
    },
    /// A redeploy named a different type, catalog or definition.
    #[error("property '{field}' can only be set at creation: environment '{name}' has '{old}', request has '{new}'")]
    PropertyChangeNotAllowed {
        /// Request field (`environmentType`, `catalogName`, `environmentDefinitionName`).
        field: &'static str,
        /// Environment name.
        name: String,
        /// Stored value.
        old: String,
        /// Requested value.
        new: String,
    },
    /// The environment type is not enabled in the project.
    #[error("environment type '{environment_type}' is not enabled for project '{project}'")]
    EnvironmentTypeNotFound {
        /// Project.
        project: String,
        /// Environment type.
        environment_type: String,
    },
    /// The project environment type exists but is disabled.
    #[error("environment type '{environment_type}' is disabled in project '{project}'")]
    EnvironmentTypeDisabled {
        /// Project.
        project: String,
        /// Environment type.
        environment_type: String,
    },
    /// `limits.maxEnvironmentsPerUser` of the project environment type reached.
    #[error("user '{user}' already has {have} environment(s) of type '{environment_type}' in project '{project}': the limit (limits.maxEnvironmentsPerUser) is {max}")]
    LimitExceeded {
        /// The would-be owner.
        user: String,
        /// How many they own.
        have: i64,
        /// Environment type.
        environment_type: String,
        /// Project.
        project: String,
        /// The limit.
        max: i64,
    },
    /// No catalog of that name is visible in the project.
    #[error("catalog '{catalog}' not found in project '{project}'")]
    CatalogNotFound {
        /// Project.
        project: String,
        /// Catalog.
        catalog: String,
    },
    /// The catalog has no definition of that name.
    #[error("environment definition '{definition}' not found in catalog '{catalog}'")]
    DefinitionNotFound {
        /// Catalog.
        catalog: String,
        /// Definition.
        definition: String,
    },
    /// The definition failed validation at the catalog's last sync.
    #[error("environment definition '{definition}' in catalog '{catalog}' failed validation at the last sync: {reason}")]
    DefinitionInvalid {
        /// Catalog.
        catalog: String,
        /// Definition.
        definition: String,
        /// The sync's first error message.
        reason: String,
    },
    /// A delete without `force` of an environment whose definition is gone
    /// and that never ran an operation to borrow one from.
    #[error("environment definition '{definition}' no longer exists in catalog '{catalog}': delete with ?force=true to remove the environment without running it")]
    DefinitionGone {
        /// Catalog.
        catalog: String,
        /// Definition.
        definition: String,
    },
    /// Parameters refused by the definition (every problem, in order).
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "))]
    Parameters(Vec<ParameterError>),
    /// The environment has no scheduled action of that name.
    #[error("action '{action}' not found for environment '{name}': it has {has}")]
    ActionNotFound {
        /// Environment name.
        name: String,
        /// Action asked for.
        action: String,
        /// What it has instead (`only '<name>'` or `none (…)`).
        has: String,
    },
    /// Cancel of an operation that has ended.
    #[error("operation '{operation}' has ended ({}): only NotStarted or Running operations can be canceled", .status.as_str())]
    NotCancelable {
        /// Operation id.
        operation: String,
        /// Its status.
        status: OperationStatus,
    },
    /// The environment type is not defined at the dev center.
    #[error("environment type '{environment_type}' is not defined at the dev center; create it with PUT /admin/environmentTypes/{environment_type}")]
    EnvironmentTypeNotDefined {
        /// Environment type.
        environment_type: String,
    },
    /// A project environment type's `status` other than `Enabled`/`Disabled`.
    #[error("property 'status' is '{status}': expected 'Enabled' or 'Disabled'")]
    InvalidStatus {
        /// The status given.
        status: String,
    },
    /// A project environment type property refused (the message names the
    /// property, the value and what was expected).
    #[error("{0}")]
    InvalidProjectEnvironmentType(String),
    /// A role assignment refused (role at the wrong scope, blank principal).
    #[error("{0}")]
    InvalidRoleAssignment(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The class of a refusal: how an API answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is wrong (HTTP 400).
    Invalid,
    /// Something it names does not exist (HTTP 404).
    NotFound,
    /// It clashes with the current state (HTTP 409).
    Conflict,
    /// The server failed (HTTP 500).
    Internal,
}

impl EnvironmentError {
    /// The one "not found" for environment `name` of `owner` in `project`
    /// (missing, or not readable by the caller), with echoed values cut.
    pub fn environment_not_found(project: &str, owner: &str, name: &str) -> EnvironmentError {
        EnvironmentError::EnvironmentNotFound {
            project: project.to_string(),
            user: slipway_core::echo::truncate(owner),
            name: slipway_core::echo::truncate(name),
        }
    }

    /// The error code (ADE's where ADE has one).
    pub fn code(&self) -> &'static str {
        match self {
            EnvironmentError::ProjectNotFound { .. } => "ProjectNotFound",
            EnvironmentError::EnvironmentNotFound { .. } => "EnvironmentNotFound",
            EnvironmentError::NameInUse { .. } => "EnvironmentNameInUse",
            EnvironmentError::PropertyChangeNotAllowed { .. } => "PropertyChangeNotAllowed",
            EnvironmentError::EnvironmentTypeNotFound { .. } => "EnvironmentTypeNotFound",
            EnvironmentError::EnvironmentTypeDisabled { .. } => "EnvironmentTypeDisabled",
            EnvironmentError::LimitExceeded { .. } => "EnvironmentLimitExceeded",
            EnvironmentError::CatalogNotFound { .. } => "CatalogNotFound",
            EnvironmentError::DefinitionNotFound { .. } => "EnvironmentDefinitionNotFound",
            EnvironmentError::DefinitionInvalid { .. } => "EnvironmentDefinitionInvalid",
            EnvironmentError::DefinitionGone { .. } => "EnvironmentDefinitionNotFound",
            EnvironmentError::Parameters(_) => "ParameterValueInvalid",
            EnvironmentError::ActionNotFound { .. } => "ActionNotFound",
            EnvironmentError::NotCancelable { .. } => "OperationNotCancelable",
            EnvironmentError::EnvironmentTypeNotDefined { .. } => "EnvironmentTypeNotFound",
            EnvironmentError::InvalidStatus { .. } => "InvalidStatus",
            EnvironmentError::InvalidProjectEnvironmentType(_) => "InvalidProjectEnvironmentType",
            EnvironmentError::InvalidRoleAssignment(_) => "InvalidRoleAssignment",
            EnvironmentError::Store(_) => "InternalError",
        }
    }

    /// The class of the refusal. Lookups of things a request body names
    /// (type, catalog, definition) are [`ErrorKind::NotFound`]; an API may
    /// answer them as invalid requests instead (ADE answers 400 when a
    /// `PUT` body names a missing definition).
    pub fn kind(&self) -> ErrorKind {
        match self {
            EnvironmentError::ProjectNotFound { .. }
            | EnvironmentError::EnvironmentNotFound { .. }
            | EnvironmentError::EnvironmentTypeNotFound { .. }
            | EnvironmentError::EnvironmentTypeNotDefined { .. }
            | EnvironmentError::CatalogNotFound { .. }
            | EnvironmentError::DefinitionNotFound { .. }
            | EnvironmentError::DefinitionInvalid { .. }
            | EnvironmentError::ActionNotFound { .. } => ErrorKind::NotFound,
            EnvironmentError::PropertyChangeNotAllowed { .. }
            | EnvironmentError::EnvironmentTypeDisabled { .. }
            | EnvironmentError::DefinitionGone { .. }
            | EnvironmentError::Parameters(_)
            | EnvironmentError::InvalidStatus { .. }
            | EnvironmentError::InvalidProjectEnvironmentType(_)
            | EnvironmentError::InvalidRoleAssignment(_) => ErrorKind::Invalid,
            EnvironmentError::NameInUse { .. }
            | EnvironmentError::LimitExceeded { .. }
            | EnvironmentError::NotCancelable { .. } => ErrorKind::Conflict,
            EnvironmentError::Store(_) => ErrorKind::Internal,
        }
    }
}
