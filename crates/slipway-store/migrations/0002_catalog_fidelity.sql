-- Catalogs: project scope, sync type, credentials, connection state; per-definition validation.
-- A catalog with a NULL project belongs to the dev center and is visible in every project;
-- otherwise only in its project. Catalog names stay unique per server.
ALTER TABLE catalogs ADD COLUMN project TEXT REFERENCES projects(name);
ALTER TABLE catalogs ADD COLUMN sync_type TEXT NOT NULL DEFAULT 'Scheduled';   -- Manual | Scheduled
ALTER TABLE catalogs ADD COLUMN secret TEXT;                                  -- name of a stored secret (token or SSH key)
ALTER TABLE catalogs ADD COLUMN connection_state TEXT;                        -- Connected | Disconnected
ALTER TABLE catalogs ADD COLUMN last_connection_time TEXT;
ALTER TABLE catalogs ADD COLUMN synced_source TEXT;                           -- JSON source of the last good snapshot

-- Definitions: validation outcome per definition. A definition that failed validation
-- but has a usable name is kept with validation_status 'Failed', its error details and
-- no content (content_digest ''); it cannot be deployed.
ALTER TABLE environment_definitions ADD COLUMN validation_status TEXT NOT NULL DEFAULT 'Succeeded';
ALTER TABLE environment_definitions ADD COLUMN error_details TEXT;            -- JSON [{code,message}]
ALTER TABLE environment_definitions ADD COLUMN warnings TEXT;                 -- JSON [string]
ALTER TABLE environment_definitions ADD COLUMN source_tree TEXT;              -- git tree id of the folder (skip unchanged folders)

CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,          -- token | sshKey | ...
    nonce      BLOB NOT NULL,          -- 12 bytes
    ciphertext BLOB NOT NULL,          -- ChaCha20-Poly1305 of the value, name as associated data
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
