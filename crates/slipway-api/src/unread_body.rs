//! Keep-alive safety for responses sent before the request body was read.
//!
//! A handler (or the authentication layer) may answer without reading the
//! request's body: a refused token, an unknown route, a body limit. Hyper
//! then tries to drain what already arrived once and, when the body is
//! still on its way, closes the connection after the response — without
//! saying so. A keep-alive client pools that connection and its next
//! request fails with an unexpected EOF. [`close_if_body_unread`] tells the
//! client: such a response carries `Connection: close` (RFC 9112 §9.6), so
//! the client opens a new connection for its next request.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header::{HeaderValue, CONNECTION};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};

/// Middleware: runs the request with its body wrapped so that reading it
/// to the end is recorded; a response to a request whose body was not read
/// to the end gets `Connection: close`. Requests without a body pass
/// through untouched.
pub(crate) async fn close_if_body_unread(req: Request, next: Next) -> Response {
    if http_body::Body::is_end_stream(req.body()) {
        return next.run(req).await;
    }
    let read = Arc::new(AtomicBool::new(false));
    let req = req.map(|inner| {
        Body::new(TrackedBody {
            inner,
            read: read.clone(),
        })
    });
    let mut response = next.run(req).await;
    if !read.load(Ordering::Acquire) {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A request body that sets `read` once its last frame was taken.
struct TrackedBody {
    inner: Body,
    read: Arc<AtomicBool>,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.read.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
