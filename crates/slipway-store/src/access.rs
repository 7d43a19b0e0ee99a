//! API tokens, role assignments and the audit log.
//!
//! A token is `slw_<id>_<secret>`: `id` (16 hex digits) finds the row,
//! only the sha256 of `secret` (64 hex digits, 256 random bits) is stored.
//! The plain token exists once, in the answer to [`Store::create_token`].

use sha2::{Digest, Sha256};
use slipway_core::access::{Grant, Role, Scope};
use sqlx::Row;

use crate::{now_rfc3339, Store, StoreError};

pub use slipway_wire::admin::{AuditEvent, RoleAssignment, TokenMeta};

/// Prefix of every API token.
pub const TOKEN_PREFIX: &str = "slw_";

/// Filter of [`Store::list_audit`]; `None` fields match everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this project.
    pub project: Option<String>,
    /// Only this user.
    pub user: Option<String>,
    /// Only events at or after this RFC 3339 time.
    pub since: Option<String>,
    /// Only events before this RFC 3339 time.
    pub until: Option<String>,
    /// At most this many, newest first.
    pub limit: u32,
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn token_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<TokenMeta, StoreError> {
    Ok(TokenMeta {
        id: r.try_get("id")?,
        user: r.try_get("user_id")?,
        name: r.try_get("name")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

fn assignment_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<RoleAssignment, StoreError> {
    Ok(RoleAssignment {
        id: r.try_get("id")?,
        principal_id: r.try_get("principal")?,
        role: r.try_get("role")?,
        scope: r.try_get("scope")?,
    })
}

const TOKEN_COLUMNS: &str = "id, user_id, name, created_at, expires_at, revoked_at";

impl Store {
    // ----- tokens -----

    /// Mints a token for `user`. Returns its metadata and the plain token,
    /// which is not kept anywhere.
    pub async fn create_token(
        &self,
        user: &str,
        name: Option<&str>,
        expires_at: Option<&str>,
    ) -> Result<(TokenMeta, String), StoreError> {
        let mut id = [0u8; 8];
        let mut secret = [0u8; 32];
        rand::fill(&mut id);
        rand::fill(&mut secret);
        let (id, secret) = (hex::encode(id), hex::encode(secret));
        let now = now_rfc3339();
        sqlx::query("INSERT INTO api_tokens (id, user_id, name, hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(&id).bind(user).bind(name).bind(sha256_hex(&secret)).bind(&now).bind(expires_at)
            .execute(&self.pool).await?;
        let meta = TokenMeta {
            id: id.clone(),
            user: user.to_string(),
            name: name.map(str::to_string),
            created_at: now,
            expires_at: expires_at.map(str::to_string),
            revoked_at: None,
        };
        Ok((meta, format!("{TOKEN_PREFIX}{id}_{secret}")))
    }

    /// The user a presented token authenticates, or `None` when the token is
    /// malformed, unknown, revoked or expired (at `now`, RFC 3339).
    pub async fn authenticate(&self, token: &str, now: &str) -> Result<Option<String>, StoreError> {
        let Some((id, secret)) = token
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|t| t.split_once('_'))
        else {
            return Ok(None);
        };
        let Some(row) = sqlx::query(
            "SELECT user_id, hash, expires_at, revoked_at FROM api_tokens WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let hash: String = row.try_get("hash")?;
        let expires: Option<String> = row.try_get("expires_at")?;
        let revoked: Option<String> = row.try_get("revoked_at")?;
        let expired = expires.is_some_and(|e| e.as_str() <= now);
        if hash != sha256_hex(secret) || revoked.is_some() || expired {
            return Ok(None);
        }
        Ok(Some(row.try_get("user_id")?))
    }

    /// Tokens, of one user or all, oldest first.
    pub async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<TokenMeta>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE ?1 IS NULL OR user_id = ?1 ORDER BY created_at, id"
        ))
        .bind(user)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// A token's metadata.
    pub async fn get_token(&self, id: &str) -> Result<Option<TokenMeta>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// Revokes a token; returns false if it does not exist or was revoked already.
    pub async fn revoke_token(&self, id: &str) -> Result<bool, StoreError> {
        let res =
            sqlx::query("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(now_rfc3339())
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(res.rows_affected() == 1)
    }

    // ----- role assignments -----

    /// Assigns `role` to `principal` at `scope` (idempotent); returns the assignment.
    pub async fn assign_role(
        &self,
        principal: &str,
        role: Role,
        scope: &Scope,
    ) -> Result<RoleAssignment, StoreError> {
        let scope_s = scope.to_string();
        sqlx::query("INSERT INTO role_assignments (id, principal, role, scope, project, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(principal, role, scope) DO NOTHING")
            .bind(uuid::Uuid::new_v4().to_string()).bind(principal).bind(role.as_str()).bind(&scope_s)
            .bind(scope.project()).bind(now_rfc3339())
            .execute(&self.pool).await?;
        let row = sqlx::query("SELECT id, principal, role, scope FROM role_assignments WHERE principal = ? AND role = ? AND scope = ?")
            .bind(principal).bind(role.as_str()).bind(&scope_s)
            .fetch_one(&self.pool).await?;
        assignment_from_row(&row)
    }

    /// Replaces every assignment at exactly `scope` with `assignments`
    /// (`(principal, role)` pairs), in one transaction.
    pub async fn replace_scope_assignments(
        &self,
        scope: &Scope,
        assignments: &[(String, Role)],
    ) -> Result<(), StoreError> {
        let scope_s = scope.to_string();
        let now = now_rfc3339();
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM role_assignments WHERE scope = ?")
            .bind(&scope_s)
            .execute(&mut *tx)
            .await?;
        for (principal, role) in assignments {
            sqlx::query("INSERT INTO role_assignments (id, principal, role, scope, project, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(principal, role, scope) DO NOTHING")
                .bind(uuid::Uuid::new_v4().to_string()).bind(principal).bind(role.as_str()).bind(&scope_s)
                .bind(scope.project()).bind(&now)
                .execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes an assignment; returns false if it does not exist.
    ///
    /// Errors: [`StoreError::InUse`] when it is the last DevCenter Admin
    /// assignment (nobody could administer the server any more); the check
    /// and the delete are one transaction.
    pub async fn delete_role_assignment(&self, id: &str) -> Result<bool, StoreError> {
        let admin = Role::DevCenterAdmin.as_str();
        let mut tx = self.write_tx().await?;
        let role: Option<String> = sqlx::query("SELECT role FROM role_assignments WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get("role"))
            .transpose()?;
        if role.as_deref() == Some(admin) {
            let admins: i64 =
                sqlx::query("SELECT COUNT(*) AS n FROM role_assignments WHERE role = ?")
                    .bind(admin)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("n")?;
            if admins <= 1 {
                return Err(StoreError::InUse(format!(
                    "role assignment '{id}' is the last {admin} assignment: assign the role to another user before removing it"
                )));
            }
        }
        let res = sqlx::query("DELETE FROM role_assignments WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(res.rows_affected() == 1)
    }

    /// One assignment.
    pub async fn get_role_assignment(
        &self,
        id: &str,
    ) -> Result<Option<RoleAssignment>, StoreError> {
        let row =
            sqlx::query("SELECT id, principal, role, scope FROM role_assignments WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(assignment_from_row).transpose()
    }

    /// Assignments, all or those inside one project (its own scope and its
    /// environment types), by scope then principal.
    pub async fn list_role_assignments(
        &self,
        project: Option<&str>,
    ) -> Result<Vec<RoleAssignment>, StoreError> {
        let rows = sqlx::query("SELECT id, principal, role, scope FROM role_assignments WHERE ?1 IS NULL OR project = ?1 ORDER BY scope, principal, role")
            .bind(project)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(assignment_from_row).collect()
    }

    /// Assignments at exactly `scope`.
    pub async fn assignments_at(&self, scope: &Scope) -> Result<Vec<RoleAssignment>, StoreError> {
        let rows = sqlx::query("SELECT id, principal, role, scope FROM role_assignments WHERE scope = ? ORDER BY principal, role")
            .bind(scope.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(assignment_from_row).collect()
    }

    /// Everything `user` holds.
    ///
    /// Errors: [`StoreError::Corrupt`] for a stored role or scope that no longer parses.
    pub async fn grants_of(&self, user: &str) -> Result<Vec<Grant>, StoreError> {
        let rows = sqlx::query("SELECT role, scope FROM role_assignments WHERE principal = ?")
            .bind(user)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let role: String = r.try_get("role")?;
                let scope: String = r.try_get("scope")?;
                let corrupt = |m: String| StoreError::Corrupt {
                    what: "role assignment",
                    message: m,
                };
                Ok(Grant {
                    role: Role::parse(&role).map_err(|e| corrupt(e.to_string()))?,
                    scope: Scope::parse(&scope).map_err(|e| corrupt(e.to_string()))?,
                })
            })
            .collect()
    }

    /// Whether anybody holds `DevCenter Admin`.
    pub async fn has_devcenter_admin(&self) -> Result<bool, StoreError> {
        Ok(
            sqlx::query("SELECT 1 FROM role_assignments WHERE role = ? AND scope = '/'")
                .bind(Role::DevCenterAdmin.as_str())
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    // ----- audit -----

    /// Appends an audit event.
    pub async fn record_audit(&self, e: &AuditEvent) -> Result<(), StoreError> {
        insert_audit(&self.pool, e).await
    }

    /// Audit events matching `f`, newest first.
    pub async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        let rows = sqlx::query("SELECT time, user_id, action, target, project, source, result FROM audit_events \
             WHERE (?1 IS NULL OR project = ?1) AND (?2 IS NULL OR user_id = ?2) AND (?3 IS NULL OR time >= ?3) AND (?4 IS NULL OR time < ?4) \
             ORDER BY seq DESC LIMIT ?5")
            .bind(&f.project).bind(&f.user).bind(&f.since).bind(&f.until).bind(f.limit.max(1))
            .fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEvent {
                    time: r.try_get("time")?,
                    user: r.try_get("user_id")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    project: r.try_get("project")?,
                    source: r.try_get("source")?,
                    result: r.try_get("result")?,
                })
            })
            .collect()
    }
}

/// Inserts audit event `e` through `db` (the pool, or a transaction that
/// must hold the event together with the change it records).
pub(crate) async fn insert_audit<'e>(
    db: impl sqlx::SqliteExecutor<'e>,
    e: &AuditEvent,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO audit_events (time, user_id, action, target, project, source, result) VALUES (?, ?, ?, ?, ?, ?, ?)")
        .bind(&e.time).bind(&e.user).bind(&e.action).bind(&e.target).bind(&e.project).bind(&e.source).bind(&e.result)
        .execute(db).await?;
    Ok(())
}
