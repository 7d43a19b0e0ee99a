-- Secrets belong to the dev center (project '') or to one project (ADE: a
-- project's secrets are managed by its Project Admins and usable only by
-- that project's catalogs). A token may name the hosts it may be sent to.
-- Dev-center rows keep their sealing (associated data = the name); project
-- rows are sealed with 'projects/<p>/<name>'.
CREATE TABLE secrets_scoped (
    project    TEXT NOT NULL DEFAULT '',
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    hosts      TEXT,                   -- JSON [host]; NULL = any https host
    nonce      BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (project, name)
);
INSERT INTO secrets_scoped (project, name, kind, nonce, ciphertext, created_at, updated_at)
    SELECT '', name, kind, nonce, ciphertext, created_at, updated_at FROM secrets;
DROP TABLE secrets;
ALTER TABLE secrets_scoped RENAME TO secrets;
