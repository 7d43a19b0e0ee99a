//! Image template runs: AIB's `lastRunStatus` states and messages.
//!
//! Contract: `../shared/reference/image-builder.md` §1.9 (run states,
//! failure and timeout wording, `(telemetry)` log markers).

use serde::{Deserialize, Serialize};
use std::fmt;

/// `runState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum RunState {
    /// Queued or working (see [`RunSubState`]).
    Running,
    /// A cancel was asked for.
    Canceling,
    /// Every distributor succeeded.
    Succeeded,
    /// Some distributors succeeded, others failed.
    PartiallySucceeded,
    /// The build failed (message says where and why).
    Failed,
    /// Canceled.
    Canceled,
}

impl RunState {
    /// Whether the run is over.
    pub fn is_final(self) -> bool {
        !matches!(self, RunState::Running | RunState::Canceling)
    }

    /// The state's name (`Running`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "Running",
            RunState::Canceling => "Canceling",
            RunState::Succeeded => "Succeeded",
            RunState::PartiallySucceeded => "PartiallySucceeded",
            RunState::Failed => "Failed",
            RunState::Canceled => "Canceled",
        }
    }

    /// Parses a name written by [`RunState::as_str`].
    pub fn parse(s: &str) -> Option<RunState> {
        [
            RunState::Running,
            RunState::Canceling,
            RunState::Succeeded,
            RunState::PartiallySucceeded,
            RunState::Failed,
            RunState::Canceled,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `runSubState`, in the order a run goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum RunSubState {
    /// Waiting for a build slot.
    Queued,
    /// Preparing the working disk from the source.
    Building,
    /// Running customizers.
    Customizing,
    /// Running validators.
    Validating,
    /// Writing outputs.
    Distributing,
}

impl RunSubState {
    /// The sub-state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunSubState::Queued => "Queued",
            RunSubState::Building => "Building",
            RunSubState::Customizing => "Customizing",
            RunSubState::Validating => "Validating",
            RunSubState::Distributing => "Distributing",
        }
    }

    /// Parses a name written by [`RunSubState::as_str`].
    pub fn parse(s: &str) -> Option<RunSubState> {
        [
            RunSubState::Queued,
            RunSubState::Building,
            RunSubState::Customizing,
            RunSubState::Validating,
            RunSubState::Distributing,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// The log line that opens a customizer (AIB/Packer telemetry marker).
pub fn starting_marker(name: &str) -> String {
    format!("(telemetry) Starting provisioner {name}")
}

/// The log line that closes a customizer.
pub fn ending_marker(name: &str) -> String {
    format!("(telemetry) ending {name}")
}

/// The last marker of a build's customization phase.
pub const FINALIZING_MARKER: &str = "(telemetry) Finalizing.";

/// AIB's build-timeout message.
pub const TIMEOUT_MESSAGE: &str =
    "Failed while waiting for packerizer: Timeout waiting for microservice to complete: 'context deadline exceeded'";

/// What failed a run the server stopped during (a graceful stop, or the
/// recovery after a kill).
pub const SERVER_STOPPED: &str = "The Slipway server stopped during the run";

/// A failed build's `message` in AIB's wording: what failed, then where
/// the log is and (when kept) the staging area.
pub fn failure_message(detail: &str, log_path: &str, staging: Option<&str>) -> String {
    let mut m = format!(
        "Failed while waiting for packerizer: Microservice has failed: Failed while processing request: Error when executing packerizer: Packer build command has failed: exit status 1. {detail}. During the image build, a failure has occurred, please review the build log to identify which build/customization step failed. Image Build log location: {log_path}."
    );
    match staging {
        Some(s) => m.push_str(&format!(" Staging kept at {s}.")),
        None => m.push_str(" Staging was cleaned up."),
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_finality() {
        for s in [
            "Running",
            "Canceling",
            "Succeeded",
            "PartiallySucceeded",
            "Failed",
            "Canceled",
        ] {
            assert_eq!(RunState::parse(s).map(|r| r.as_str()), Some(s));
        }
        assert!(RunState::parse("running").is_none());
        assert!(!RunState::Canceling.is_final());
        assert!(RunState::PartiallySucceeded.is_final());
    }

    #[test]
    fn failure_message_names_log_and_staging() {
        let m = failure_message(
            "customizer 'x' failed",
            "/l/customization.log",
            Some("/s/r1"),
        );
        assert!(m.starts_with("Failed while waiting for packerizer"));
        assert!(
            m.contains("customizer 'x' failed")
                && m.contains("/l/customization.log")
                && m.contains("Staging kept at /s/r1")
        );
    }
}
