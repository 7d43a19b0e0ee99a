//! The one way the API serves a log: operation logs, task-run logs and VM
//! image run logs alike.
//!
//! | query | answer |
//! |---|---|
//! | none | the whole log, streamed from the file (ADE's `…/logs`) |
//! | `offset=N` | at most [`MAX_LOG_CHUNK`] bytes from byte `N`, never splitting a character; `X-Slipway-Next-Offset` says where the next read starts, `X-Slipway-Log-Size` how long the log was |
//! | `follow=true` (with or without `offset`) | a chunked stream from `offset` that carries every line as it is written and ends once the run has ended and its log is read to the end |
//!
//! Every answer carries the run's status header (read *before* the log, so
//! a final status means the log that follows is complete).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use slipway_store::{read_log_chunk, Store, MAX_LOG_CHUNK};

use crate::ApiResult;

/// How often a follower looks for new text when it has caught up. The
/// target is a line visible to `--follow` within 1 s of being written.
const FOLLOW_TICK: Duration = Duration::from_millis(100);

/// Query of every log route.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Byte offset to start from.
    #[serde(default)]
    pub offset: Option<u64>,
    /// Stream until the run ends.
    #[serde(default)]
    pub follow: Option<bool>,
}

/// Whether the run a log belongs to has ended (a fresh read each call).
pub type Ended =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync + 'static>;

/// The record whose end ends a followed log.
#[derive(Debug, Clone)]
pub enum RunRecord {
    /// An environment operation (ended when its status is terminal).
    Operation(String),
    /// A task run (ended when its status is finished).
    TaskRun(String),
    /// A VM image template run (ended when its state is final).
    ImageRun(String),
}

/// An [`Ended`] that reads `record` afresh from `store` on each call: ended
/// when the record says so or is gone; a failed read is "not yet" (the
/// follower asks again on its next tick).
pub fn ended(store: Store, record: RunRecord) -> Ended {
    fn by<T, E>(read: Result<Option<T>, E>, finished: impl FnOnce(&T) -> bool) -> bool {
        match read {
            Ok(Some(r)) => finished(&r),
            Ok(None) => true,
            Err(_) => false,
        }
    }
    Arc::new(move || {
        let (store, record) = (store.clone(), record.clone());
        Box::pin(async move {
            match &record {
                RunRecord::Operation(id) => {
                    by(store.get_operation(id).await, |o| o.status.is_terminal())
                }
                RunRecord::TaskRun(id) => {
                    by(store.get_task_run(id).await, |r| r.status.is_finished())
                }
                RunRecord::ImageRun(id) => {
                    by(store.get_image_run(id).await, |r| r.run_state.is_final())
                }
            }
        })
    })
}

/// A log to serve.
pub struct LogSource {
    /// The log file (absent: an empty log).
    pub path: PathBuf,
    /// Status header name and value (e.g. `x-slipway-run-status: Running`).
    pub status: (&'static str, String),
    /// Asked while following, once caught up.
    pub ended: Ended,
}

/// Answers `q` for `src` (see the module table).
///
/// Errors: I/O errors reading the log (500).
pub async fn respond(src: LogSource, q: &LogQuery) -> ApiResult<Response> {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&src.status.1) {
        h.insert(src.status.0, v);
    }
    let offset = q.offset.unwrap_or(0);
    if q.follow == Some(true) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return Ok((StatusCode::OK, h, Body::from_stream(follow(src, offset))).into_response());
    }
    if q.offset.is_none() {
        return Ok(match tokio::fs::File::open(&src.path).await {
            Ok(f) => (
                StatusCode::OK,
                h,
                Body::from_stream(tokio_util::io::ReaderStream::new(f)),
            )
                .into_response(),
            Err(_) => (StatusCode::OK, h, "").into_response(),
        });
    }
    let chunk = read_log_chunk(&src.path, offset, MAX_LOG_CHUNK)
        .await
        .map_err(slipway_store::StoreError::from)?;
    h.insert(
        "x-slipway-next-offset",
        HeaderValue::from(chunk.next_offset),
    );
    h.insert("x-slipway-log-size", HeaderValue::from(chunk.size));
    Ok((StatusCode::OK, h, chunk.text).into_response())
}

struct Follower {
    src: LogSource,
    offset: u64,
    /// The run was seen ended: one more read to the end, then stop.
    ended: bool,
}

/// The chunks of `src` from `offset` on, as they are written, until the
/// run has ended and everything is read.
fn follow(
    src: LogSource,
    offset: u64,
) -> impl futures_util::Stream<Item = Result<String, std::io::Error>> + Send {
    let start = Follower {
        src,
        offset,
        ended: false,
    };
    futures_util::stream::unfold(Some(start), |state| async move {
        let mut f = state?;
        loop {
            let chunk = match read_log_chunk(&f.src.path, f.offset, MAX_LOG_CHUNK).await {
                Ok(c) => c,
                Err(e) => return Some((Err(e), None)),
            };
            if chunk.next_offset != f.offset {
                f.offset = chunk.next_offset;
                return Some((Ok(chunk.text), Some(f)));
            }
            if f.ended {
                return None;
            }
            // Caught up: read once more after seeing the end (the status is
            // final before the last write is read), else wait a tick.
            if (f.src.ended)().await {
                f.ended = true;
            } else {
                tokio::time::sleep(FOLLOW_TICK).await;
            }
        }
    })
}
