-- Governance: API tokens, role assignments, audit events; project environment
-- type settings and limits; environment expiration; cancel and force delete.

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,      -- public part of the token (16 hex digits)
    user_id     TEXT NOT NULL,
    name        TEXT,
    hash        TEXT NOT NULL,         -- sha256 hex of the secret part
    created_at  TEXT NOT NULL,
    expires_at  TEXT,                  -- RFC 3339; NULL = never
    revoked_at  TEXT
);
CREATE INDEX api_tokens_by_user ON api_tokens(user_id);

CREATE TABLE role_assignments (
    id         TEXT PRIMARY KEY,
    principal  TEXT NOT NULL,          -- user id
    role       TEXT NOT NULL,          -- DevCenter Admin | Project Admin | Deployment Environments User | Deployment Environments Reader
    scope      TEXT NOT NULL,          -- / | /projects/{p} | /projects/{p}/environmentTypes/{t}
    project    TEXT,                   -- project of the scope (NULL for /), for filtering
    created_at TEXT NOT NULL,
    UNIQUE (principal, role, scope)
);
CREATE INDEX role_assignments_by_principal ON role_assignments(principal);

CREATE TABLE audit_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    time        TEXT NOT NULL,
    user_id     TEXT NOT NULL,         -- caller, or 'anonymous', or the operation's requester
    action      TEXT NOT NULL,         -- 'PUT /admin/...' or 'operation.start' / 'operation.end'
    target      TEXT NOT NULL,         -- path or operation id
    project     TEXT,
    source      TEXT,                  -- client address, or 'scheduler'
    result      TEXT NOT NULL          -- HTTP status, or operation status
);
CREATE INDEX audit_by_time ON audit_events(time);

ALTER TABLE project_environment_types ADD COLUMN display_name TEXT;
ALTER TABLE project_environment_types ADD COLUMN creator_roles TEXT;              -- JSON array of role names
ALTER TABLE project_environment_types ADD COLUMN deployment_identity TEXT;        -- name of a 'deploymentIdentity' secret
ALTER TABLE project_environment_types ADD COLUMN max_runtime_minutes INTEGER;
ALTER TABLE project_environment_types ADD COLUMN max_storage_mb INTEGER;
ALTER TABLE project_environment_types ADD COLUMN max_environments_per_user INTEGER;

ALTER TABLE environments ADD COLUMN expiration_date TEXT;                         -- RFC 3339
ALTER TABLE environments ADD COLUMN delete_at TEXT;                               -- next run of the scheduled Delete action; NULL = none
ALTER TABLE environments ADD COLUMN action_modified_by TEXT;
ALTER TABLE environments ADD COLUMN action_modified_at TEXT;
CREATE INDEX environments_by_delete_at ON environments(delete_at);

ALTER TABLE operations ADD COLUMN force INTEGER NOT NULL DEFAULT 0;              -- force delete: drop the record even if the runner fails
ALTER TABLE operations ADD COLUMN cancel_requested_by TEXT;
