//! Slipway's wire types: the JSON bodies of the HTTP API, shared by the
//! server (`slipway-api` renders them), the CLI (`slipway` reads them) and
//! the tests, each with its OpenAPI schema (`utoipa::ToSchema`).
//!
//! Field names and shapes follow the contract each product copies: the ADE
//! data plane (`ade`, Microsoft's devcenter data-plane spec
//! `Microsoft.DevCenter/stable/2024-02-01/environments.json`, reference
//! `ade.md` §5.1) and ADE's `CloudError` (`error`). Optional fields are
//! left out of an answer when they have no value, unless the contract
//! spells them out as `null`.
//!
//! No I/O: this crate only describes shapes.

pub mod ade;
pub mod admin;
pub mod catalogs;
pub mod error;
pub mod schema;
pub mod tasks;
pub mod vm_images;

pub use ade::{
    Catalog, Environment, EnvironmentAction, EnvironmentActionSchedule, EnvironmentDefinition,
    EnvironmentDefinitionParameter, EnvironmentOperation, EnvironmentOutput, EnvironmentOutputs,
    EnvironmentPatch, EnvironmentRequest, EnvironmentType, OperationDetails, Paged,
};
pub use error::{CloudError, CloudErrorBody};
