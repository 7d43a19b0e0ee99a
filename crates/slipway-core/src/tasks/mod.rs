//! Container image tasks (modelled on ACR Tasks / acb): the pure parts.
//!
//! - [`template`]: Go `text/template` + Sprig for task files.
//! - [`values`]: comment stripping, `$` aliases, run variables, values + `--set`.
//! - [`taskfile`]: the acb YAML model, defaults, validation, the step DAG.
//! - [`cmdline`]: a `cmd` step's string → container flags, image, argv.
//! - [`dockerfile`]: a Dockerfile's runtime and build-time base images.
//! - [`webhook`]: source-commit webhook signatures and push payloads.
//! - [`run_status`]: a run's status (ACR `RunStatus`).
//!
//! Contract: `../shared/reference/acr-tasks.md`.

pub mod cmdline;
pub mod dockerfile;
pub mod gofmt;
pub mod run_status;
mod semver;
mod sprig;
mod sprig_certs;
mod sprig_crypto;
mod sprig_dates;
mod sprig_more;
pub mod taskfile;
pub mod template;
pub mod values;
pub mod webhook;

pub use run_status::TaskRunStatus;
