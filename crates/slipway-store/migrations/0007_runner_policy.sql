-- A project environment type's runner confinement (slipway_core::isolation::RunnerPolicy
-- as JSON: memory, CPU and pids limits, read-only root, allowed CIDRs); NULL = defaults.
ALTER TABLE project_environment_types ADD COLUMN runner_policy TEXT;
