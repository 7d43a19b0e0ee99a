//! Registering a catalog (`PUT …/catalogs/{c}`): the rules before a
//! catalog is stored, and whether the change calls for a sync.
//!
//! Contract: reference `ade.md` §4.1 (catalog names are unique per dev
//! center; `secretIdentifier` names a secret of the catalog's scope).

use slipway_store::{CatalogSpec, SecretScope, Store, StoreError};
use thiserror::Error;

use crate::{check_source, CatalogError, LocalRoots};

/// What [`register_catalog`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    /// The name was new.
    pub created: bool,
    /// The source, credential or last synced source differ from the
    /// request: sync now. Otherwise only the schedule may have changed.
    pub needs_sync: bool,
}

/// A catalog registration refused.
#[derive(Debug, Error)]
pub enum RegistrationError {
    /// Another scope (the dev center or another project) has a catalog of
    /// that name.
    #[error(
        "catalog name '{name}' is already used by {owner}: catalog names are unique per server"
    )]
    NameTaken {
        /// The catalog name.
        name: String,
        /// `the dev center` or `project '<p>'`.
        owner: String,
    },
    /// The source is not one Slipway fetches from (scheme, host, local
    /// folder outside the allowed roots…).
    #[error(transparent)]
    Source(CatalogError),
    /// `secretIdentifier` names no secret of the catalog's scope.
    #[error("property 'secretIdentifier' names secret '{secret}', which does not exist in {scope}: create it with PUT {path}")]
    SecretMissing {
        /// The secret name (cut).
        secret: String,
        /// The scope, as shown.
        scope: String,
        /// Where to create it.
        path: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Stores catalog `name` with `spec` after checking that the name is free
/// in other scopes, the source is allowed (`roots` for local folders) and
/// the secret exists in the catalog's scope. Does not sync.
///
/// Errors: [`RegistrationError`].
pub async fn register_catalog(
    store: &Store,
    roots: &LocalRoots,
    name: &str,
    spec: &CatalogSpec,
) -> Result<Registered, RegistrationError> {
    let before = store.get_catalog(name).await?;
    if let Some(b) = before.as_ref().filter(|b| b.spec.project != spec.project) {
        return Err(RegistrationError::NameTaken {
            name: name.to_string(),
            owner: b
                .spec
                .project
                .as_deref()
                .map_or("the dev center".to_string(), |p| format!("project '{p}'")),
        });
    }
    check_source(&spec.source, roots).map_err(RegistrationError::Source)?;
    if let Some(s) = &spec.secret {
        let scope = SecretScope::of(spec.project.as_deref());
        if store.secret_meta(&scope, s).await?.is_none() {
            return Err(RegistrationError::SecretMissing {
                secret: slipway_core::echo::truncate(s),
                scope: scope.to_string(),
                path: scope.path_of(s),
            });
        }
    }
    store.put_catalog(name, spec).await?;
    let needs_sync = before.as_ref().is_none_or(|b| {
        b.spec.source != spec.source
            || b.spec.secret != spec.secret
            || b.synced_source.as_ref() != Some(&spec.source)
    });
    Ok(Registered {
        created: before.is_none(),
        needs_sync,
    })
}
