//! What the service needs from the operation scheduler: a nudge when an
//! operation was queued, and a stop for a running one. The scheduler
//! ([`slipway_runner::Scheduler`]) is the real one; the service's tests use
//! a recording double, so its rules run without containers.

/// The operation scheduler, as the environment service sees it.
pub trait OperationQueue: Send + Sync + std::fmt::Debug {
    /// An operation was queued (or canceled before it started): look for
    /// runnable operations now.
    fn wake(&self);
    /// Stop the runner of running operation `operation_id` (its status
    /// becomes `Canceled` when the runner has stopped).
    fn cancel_running(&self, operation_id: &str);
}

impl OperationQueue for slipway_runner::Scheduler {
    fn wake(&self) {
        slipway_runner::Scheduler::wake(self);
    }

    fn cancel_running(&self, operation_id: &str) {
        self.cancel(operation_id);
    }
}
