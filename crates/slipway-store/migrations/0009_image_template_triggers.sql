-- Triggers of image templates (AIB `…/imageTemplates/{t}/triggers/{name}`,
-- kind SourceImage). Removed with their template.
CREATE TABLE image_template_triggers (
    template   TEXT NOT NULL,
    name       TEXT NOT NULL,
    document   TEXT NOT NULL,             -- JSON: {kind, status {code, message, time}, provisioningState}
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (template, name)
);
