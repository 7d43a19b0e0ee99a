-- Image task run logs are deleted after the retention period (default 30
-- days); the run record stays and says so.
ALTER TABLE task_runs ADD COLUMN log_expired INTEGER NOT NULL DEFAULT 0;
