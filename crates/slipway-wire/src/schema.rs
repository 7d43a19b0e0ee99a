//! OpenAPI schemas for request fields whose accepted values the handlers
//! restrict beyond their Rust type (a fixed set of words, a name rule), so
//! the document is as strict as the server. Used through
//! `#[schema(schema_with = …)]`.

use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{KnownFormat, RefOr};

fn words(values: &[&str]) -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(values.iter().copied()))
            .build(),
    ))
}

fn optional(schema: RefOr<Schema>, description: &str) -> RefOr<Schema> {
    RefOr::T(Schema::OneOf(
        OneOfBuilder::new()
            .item(schema)
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .description(Some(description))
            .build(),
    ))
}

/// `git` or `local` (catalog kinds).
pub fn catalog_kind() -> RefOr<Schema> {
    optional(
        words(&["git", "local"]),
        "`git` (default) or `local` (DevCenter Admins only).",
    )
}

/// `Scheduled` or `Manual` (ADE catalog sync types).
pub fn sync_type() -> RefOr<Schema> {
    optional(
        words(&["Scheduled", "Manual"]),
        "`Scheduled` (default) or `Manual`.",
    )
}

/// `Enabled` or `Disabled`.
pub fn enabled_status() -> RefOr<Schema> {
    optional(
        words(&["Enabled", "Disabled"]),
        "`Enabled` (default) or `Disabled`.",
    )
}

/// The secret kinds: `generic`, `token`, `sshKey`, `deploymentIdentity`,
/// `registry`.
pub fn secret_kind() -> RefOr<Schema> {
    optional(
        words(&[
            "generic",
            "token",
            "sshKey",
            "deploymentIdentity",
            "registry",
        ]),
        "`generic` (default), `token`, `sshKey`; at the dev center also `deploymentIdentity` and `registry`.",
    )
}

/// A secret's value: a non-empty string, or an object for the
/// `deploymentIdentity` and `registry` kinds.
pub fn secret_value() -> RefOr<Schema> {
    RefOr::T(Schema::OneOf(
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)))
            .item(ObjectBuilder::new().schema_type(Type::Object))
            .description(Some(
                "A string, or for `deploymentIdentity` `{clientId, tenantId, subscriptionId?, variables?}` and for `registry` `{server, username, password}`.",
            ))
            .build(),
    ))
}

/// An optional resource name (`slipway_core::names::RESOURCE_NAME_PATTERN`).
pub fn optional_resource_name() -> RefOr<Schema> {
    optional(
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(slipway_core::names::RESOURCE_NAME_PATTERN))
                .build(),
        )),
        "A resource name: 3-63 letters, digits, '-', '_' or '.', starting with a letter or digit.",
    )
}

/// An optional RFC 3339 date-time.
pub fn optional_date_time() -> RefOr<Schema> {
    optional(
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                .build(),
        )),
        "An RFC 3339 date-time.",
    )
}
