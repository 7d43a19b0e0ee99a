//! Slipway domain core.
//!
//! Pure types, validation and state machines shared by every other crate.
//! Nothing here performs I/O: parsing takes text, validation takes values.
//!
//! - [`manifest`]: `environment.yaml` / `manifest.yaml` (ADE environment definitions).
//! - [`parameters`]: checking a developer's parameters against a definition.
//! - [`environment`]: environments, operations and their states.
//! - [`names`]: resource-name rules.
//! - [`protocol`]: the runner protocol spoken between the `ade` CLI and the server.
//! - [`access`]: roles, scopes and the authorization decision.
//! - [`credentials`]: deployment identities handed to runners.
//! - [`azure_target`]: an environment's Azure resource group when its type deploys to a subscription.
//! - [`identity`]: the managed-identity token endpoint runners call and the token request behind it.
//! - [`scrub`]: masking secret values in text shown to users.
//! - [`shell`]: quoting for POSIX shells.
//! - [`tasks`]: container image tasks (acb task files, templating, Dockerfile scanning).
//! - [`images`]: VM image templates (the AIB template document and its validation).

pub mod access;
pub mod azure_target;
pub mod credentials;
pub mod echo;
pub mod environment;
pub mod identity;
pub mod images;
pub mod isolation;
pub mod manifest;
pub mod names;
pub mod parameters;
pub mod protocol;
pub mod scrub;
pub mod secrets;
pub mod shell;
pub mod tasks;

pub use environment::{ErrorBody, OperationKind, OperationStatus, ProvisioningState, OUTPUT_TYPES};
pub use manifest::{
    EnvironmentDefinitionManifest, ManifestError, ParameterDefinition, ParameterType,
};
pub use parameters::{resolve_parameters, ParameterError};
