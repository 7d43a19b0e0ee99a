//! Scheduled catalog sync (ADE `syncType: Scheduled`, every 30 minutes by default).
//!
//! One timer task for all catalogs: it sleeps exactly until the earliest
//! due time (`last sync time + interval`, or creation time + interval for a
//! catalog never synced) and wakes early when told the catalogs changed
//! ([`SyncTrigger::catalogs_changed`]) — no periodic sweep. Each due sync
//! runs in its own task; the store's compare-and-set keeps a scheduled sync
//! and a manual one of the same catalog from overlapping.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use slipway_core::isolation::Ipv4Cidr;
use slipway_store::{SecretKey, Store};
use tokio::sync::Notify;

use crate::{sync_catalog, CatalogError, LocalRoots};

/// Wakes the scheduler so it recomputes due times (after a catalog is
/// created, changed, deleted or synced by hand).
#[derive(Debug, Clone, Default)]
pub struct SyncTrigger(Arc<Notify>);

impl SyncTrigger {
    /// Tells the scheduler the catalogs changed.
    pub fn catalogs_changed(&self) {
        self.0.notify_one();
    }
}

/// The scheduled-sync timer.
#[derive(Debug)]
pub struct SyncScheduler {
    store: Store,
    work_dir: PathBuf,
    key: SecretKey,
    roots: LocalRoots,
    networks: Vec<Ipv4Cidr>,
    interval: Duration,
    trigger: SyncTrigger,
    running: Arc<Mutex<HashSet<String>>>,
}

impl SyncScheduler {
    /// A scheduler syncing every `Scheduled` catalog each `interval` (ADE:
    /// 30 min); `roots` and `networks` as for [`sync_catalog`].
    pub fn new(
        store: Store,
        work_dir: PathBuf,
        key: SecretKey,
        roots: LocalRoots,
        networks: Vec<Ipv4Cidr>,
        interval: Duration,
    ) -> Self {
        SyncScheduler {
            store,
            work_dir,
            key,
            roots,
            networks,
            interval,
            trigger: SyncTrigger::default(),
            running: Arc::default(),
        }
    }

    /// The handle that wakes this scheduler.
    pub fn trigger(&self) -> SyncTrigger {
        self.trigger.clone()
    }

    /// Runs the timer on the current runtime until the process ends.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        let this = Arc::new(self);
        tokio::spawn(async move {
            loop {
                let wait = match this.start_due().await {
                    Ok(wait) => wait,
                    Err(e) => {
                        tracing::warn!(error = %e, "catalog schedule: cannot read catalogs");
                        Some(Duration::from_secs(30))
                    }
                };
                let notified = this.trigger.0.notified();
                match wait {
                    Some(d) => {
                        tokio::select! {
                            _ = tokio::time::sleep(d) => {}
                            _ = notified => {}
                        }
                    }
                    None => notified.await,
                }
            }
        })
    }

    /// Starts every due sync; returns the time until the next one.
    async fn start_due(self: &Arc<Self>) -> Result<Option<Duration>, CatalogError> {
        let now = Utc::now();
        let interval = chrono::Duration::from_std(self.interval)
            .unwrap_or_else(|_| chrono::Duration::minutes(30));
        let mut next: Option<DateTime<Utc>> = None;
        for c in self.store.list_catalogs().await? {
            if c.spec.sync_type != "Scheduled"
                || c.sync_state == "InProgress"
                || self.is_running(&c.name)
            {
                continue;
            }
            let base = c.last_sync_time.as_deref().unwrap_or(&c.created_at);
            let Ok(base) = DateTime::parse_from_rfc3339(base) else {
                continue;
            };
            let due = base.with_timezone(&Utc) + interval;
            if due <= now {
                self.start(c.name);
            } else if next.is_none_or(|n| due < n) {
                next = Some(due);
            }
        }
        Ok(next.map(|n| (n - now).to_std().unwrap_or_default()))
    }

    fn is_running(&self, name: &str) -> bool {
        self.running
            .lock()
            .map(|r| r.contains(name))
            .unwrap_or(false)
    }

    fn start(self: &Arc<Self>, name: String) {
        if let Ok(mut r) = self.running.lock() {
            r.insert(name.clone());
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            match sync_catalog(
                &this.store,
                &name,
                &this.work_dir,
                &this.key,
                &this.roots,
                &this.networks,
            )
            .await
            {
                Ok(o) => tracing::info!(catalog = %name, commit = %o.commit, "scheduled sync done"),
                Err(e) => tracing::warn!(catalog = %name, error = %e, "scheduled sync failed"),
            }
            if let Ok(mut r) = this.running.lock() {
                r.remove(&name);
            }
            this.trigger.catalogs_changed();
        });
    }
}
