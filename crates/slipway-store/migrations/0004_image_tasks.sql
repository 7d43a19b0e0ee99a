-- Container image tasks (ACR Tasks model): tasks and their runs.
CREATE TABLE image_tasks (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,            -- JSON, shape owned by slipway-tasks
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE task_runs (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,   -- short, increasing: ca1, ca2, …
    task          TEXT,                   -- NULL for quick builds and quick runs
    run_type      TEXT NOT NULL,          -- QuickBuild | QuickRun | AutoBuild | AutoRun
    status        TEXT NOT NULL,          -- Queued | Started | Running | Succeeded | Failed | Canceled | Error | Timeout
    request       TEXT NOT NULL,          -- JSON: what to run
    trigger_info  TEXT,                   -- JSON: manual | timer | imageUpdate | commit provenance
    output_images TEXT,                   -- JSON [{registry, repository, tag, digest}]
    dependencies  TEXT,                   -- JSON acb-style dependency list
    error         TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT
);
CREATE INDEX task_runs_by_task ON task_runs (task, seq);
CREATE INDEX task_runs_by_status ON task_runs (status);
