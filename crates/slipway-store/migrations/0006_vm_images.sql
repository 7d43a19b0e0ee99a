-- VM image templates (Azure VM Image Builder model), their runs, and the
-- image store (managed images and gallery image versions).
CREATE TABLE image_templates (
    name       TEXT PRIMARY KEY,
    document   TEXT NOT NULL,            -- JSON, the validated template
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE image_template_runs (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,   -- r1, r2, …
    template      TEXT NOT NULL,
    document      TEXT NOT NULL,          -- JSON, the template as run
    run_state     TEXT NOT NULL,          -- Running | Canceling | Succeeded | PartiallySucceeded | Failed | Canceled
    run_sub_state TEXT NOT NULL,          -- Queued | Building | Customizing | Validating | Distributing
    message       TEXT NOT NULL DEFAULT '',
    staging       TEXT,                   -- path of the staging area while it exists
    outputs       TEXT NOT NULL DEFAULT '[]', -- JSON run outputs
    source_info   TEXT NOT NULL DEFAULT '{}', -- JSON: resolved source (pir* for platform images)
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT
);
CREATE INDEX image_template_runs_by_template ON image_template_runs (template, seq);

CREATE TABLE vm_images (
    id                  TEXT PRIMARY KEY, -- canonical: /slipway/images/<n> or /slipway/galleries/<g>/images/<d>/versions/<v>
    gallery             TEXT,             -- NULL for managed images
    definition          TEXT,             -- image name or gallery image definition
    version             TEXT,             -- gallery versions only
    exclude_from_latest INTEGER NOT NULL DEFAULT 0,
    path                TEXT NOT NULL,    -- raw disk file
    sha256              TEXT NOT NULL,
    size                INTEGER NOT NULL,
    source_version      TEXT,
    template            TEXT,
    run_id              TEXT,
    tags                TEXT NOT NULL DEFAULT '{}',
    created_at          TEXT NOT NULL
);
CREATE INDEX vm_images_by_definition ON vm_images (gallery, definition);
