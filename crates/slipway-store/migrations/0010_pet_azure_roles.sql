-- Azure role assignments a project environment type asks for on each
-- environment's resource group, per Entra object id (ADE
-- `userRoleAssignments` keyed by role definition GUIDs). The creator's
-- Azure roles sit beside Slipway's in `creator_roles`.
ALTER TABLE project_environment_types ADD COLUMN azure_user_roles TEXT NOT NULL DEFAULT '{}';
