-- Slipway metadata schema v1. Timestamps are RFC 3339 UTC strings; JSON columns hold text.
CREATE TABLE projects (
    name        TEXT PRIMARY KEY,
    description TEXT,
    location    TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE environment_types (
    name         TEXT PRIMARY KEY,
    display_name TEXT,
    created_at   TEXT NOT NULL
);

CREATE TABLE project_environment_types (
    project              TEXT NOT NULL REFERENCES projects(name),
    name                 TEXT NOT NULL REFERENCES environment_types(name),
    deployment_target_id TEXT NOT NULL,
    status               TEXT NOT NULL,
    created_at           TEXT NOT NULL,
    PRIMARY KEY (project, name)
);

CREATE TABLE catalogs (
    name            TEXT PRIMARY KEY,
    source_kind     TEXT NOT NULL,       -- 'local' | 'git'
    uri             TEXT NOT NULL,
    branch          TEXT,
    path            TEXT,
    sync_state      TEXT NOT NULL,       -- Succeeded | InProgress | Failed | Canceled | NotSynced
    last_sync_time  TEXT,
    last_commit     TEXT,
    last_sync_stats TEXT,                -- JSON
    last_sync_errors TEXT,               -- JSON
    created_at      TEXT NOT NULL
);

CREATE TABLE environment_definitions (
    catalog        TEXT NOT NULL REFERENCES catalogs(name) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    folder         TEXT NOT NULL,        -- manifest folder, relative to the catalog root
    manifest       TEXT NOT NULL,        -- JSON EnvironmentDefinitionManifest
    content_digest TEXT NOT NULL,        -- sha256 of the content zip (blob definitions/<digest>.zip)
    commit_id      TEXT,
    PRIMARY KEY (catalog, name)
);

CREATE TABLE environments (
    id                 TEXT PRIMARY KEY,
    project            TEXT NOT NULL REFERENCES projects(name),
    name               TEXT NOT NULL,
    owner              TEXT NOT NULL,
    environment_type   TEXT NOT NULL,
    catalog            TEXT NOT NULL,
    definition         TEXT NOT NULL,
    parameters         TEXT NOT NULL,   -- JSON object, defaults applied
    provisioning_state TEXT NOT NULL,
    error              TEXT,            -- JSON {code,message}
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    UNIQUE (project, name)
);

CREATE TABLE operations (
    id               TEXT PRIMARY KEY,
    environment_id   TEXT NOT NULL,
    project          TEXT NOT NULL,
    environment_name TEXT NOT NULL,
    kind             TEXT NOT NULL,     -- Deploy | Delete
    status           TEXT NOT NULL,     -- NotStarted | Running | Succeeded | Canceled | Failed
    parameters       TEXT NOT NULL,     -- JSON object
    created_by       TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    start_time       TEXT,
    end_time         TEXT,
    error            TEXT,              -- JSON {code,message}
    result_error     TEXT,              -- JSON {code,message} reported by `ade operation-result`
    token_hash       TEXT,              -- sha256 hex of the runner token
    definition       TEXT NOT NULL,     -- JSON snapshot: {catalog, name, folder, manifest, contentDigest, commit}
    runner_image     TEXT NOT NULL,
    container_name   TEXT NOT NULL
);
CREATE INDEX operations_by_environment ON operations(environment_id);
CREATE INDEX operations_by_status ON operations(status);
