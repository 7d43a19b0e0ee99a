//! VM image templates (modelled on Azure VM Image Builder): the pure parts.
//!
//! - [`template`]: the template document, its defaults and `ValidationFailed`
//!   errors with property paths.
//!
//! Contract: `../shared/reference/image-builder.md`.

pub mod template;
