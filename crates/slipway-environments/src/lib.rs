//! The environment service: ADE's rules for environments.
//!
//! The API parses a request and authorizes the caller, then calls
//! [`EnvironmentService`]: create or redeploy ([`EnvironmentService::deploy`]),
//! expiration ([`EnvironmentService::set_expiration`]), delete
//! ([`EnvironmentService::delete`]), the scheduled delete action
//! ([`EnvironmentService::reschedule_action`], the timer
//! [`EnvironmentService::spawn_expiration_timer`]) and cancel
//! ([`EnvironmentService::cancel`]). The service checks the rules against
//! the store, queues operations and wakes the [`OperationQueue`] (the
//! scheduler, which runs them in runner containers). Refusals are
//! [`EnvironmentError`]s with ADE codes; the API only renders them.
//!
//! Contract: ADE devcenter data plane (reference `ade.md` §5.1).

mod dev_center;
mod error;
mod expiration;
mod queue;
mod service;

pub use error::{EnvironmentError, ErrorKind};
pub use expiration::ACTION_USER;
pub use queue::OperationQueue;
pub use service::{
    delete_action_name, environment_path, DeployRequest, EnvironmentService, Queued, Result,
};
