//! A task run's status (ACR `RunStatus`): `Queued` → `Started` → `Running`
//! → one of the finished statuses.

use serde::{Deserialize, Serialize};

/// ACR Tasks' run status, spelled as ACR spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum TaskRunStatus {
    /// Waiting for a slot.
    Queued,
    /// Taken from the queue; its context is being prepared.
    Started,
    /// Its steps run.
    Running,
    /// Every step succeeded.
    Succeeded,
    /// A step failed.
    Failed,
    /// Canceled by a user.
    Canceled,
    /// Slipway could not run it (e.g. the server restarted under it).
    Error,
    /// It exceeded its timeout.
    Timeout,
}

impl TaskRunStatus {
    /// Every status.
    pub const ALL: [TaskRunStatus; 8] = [
        Self::Queued,
        Self::Started,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Canceled,
        Self::Error,
        Self::Timeout,
    ];

    /// The statuses a run never leaves.
    pub const FINISHED: [TaskRunStatus; 5] = [
        Self::Succeeded,
        Self::Failed,
        Self::Canceled,
        Self::Error,
        Self::Timeout,
    ];

    /// The wire spelling (`Queued`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "Queued",
            Self::Started => "Started",
            Self::Running => "Running",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Canceled => "Canceled",
            Self::Error => "Error",
            Self::Timeout => "Timeout",
        }
    }

    /// Parses the wire spelling; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether the run has ended.
    pub fn is_finished(self) -> bool {
        Self::FINISHED.contains(&self)
    }
}

impl std::fmt::Display for TaskRunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelling_round_trips_and_finished_statuses_are_the_last_five() {
        for s in TaskRunStatus::ALL {
            assert_eq!(TaskRunStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(TaskRunStatus::parse("queued"), None);
        let finished: Vec<_> = TaskRunStatus::ALL
            .into_iter()
            .filter(|s| s.is_finished())
            .collect();
        assert_eq!(finished, TaskRunStatus::FINISHED);
    }
}
