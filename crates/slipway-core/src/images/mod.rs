//! VM image templates (modelled on Azure VM Image Builder): the pure parts.
//!
//! - [`template`]: the template document, its defaults and `ValidationFailed`
//!   errors with property paths.
//! - [`ids`]: image-store ids (Azure-shaped or canonical) and gallery
//!   `Latest` versioning.
//! - [`run`]: run states, log markers and AIB's failure wording.
//! - [`trigger`]: `SourceImage` triggers: the request and what they follow.
//! - [`vhd`]: the fixed VHD footer.
//!
//! Contract: `../shared/reference/image-builder.md`.

pub mod ids;
pub mod run;
pub mod template;
pub mod trigger;
pub mod vhd;
