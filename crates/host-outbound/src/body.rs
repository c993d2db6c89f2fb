//! The response body handed to the guest: bounded in size and in idle time.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::Sleep;
use wasmtime_wasi_http::Error;

/// Wraps a response body: more than `limit` bytes of data yields
/// [`Error::HttpResponseBodySize`]`(Some(limit))`, and no frame for `idle` yields
/// [`Error::ConnectionReadTimeout`]. After an error the body ends.
pub(crate) struct LimitedBody {
    inner: Incoming,
    limit: u64,
    seen: u64,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    checked_hint: bool,
    done: bool,
}

impl LimitedBody {
    pub(crate) fn new(inner: Incoming, limit: u64, idle: Duration) -> LimitedBody {
        LimitedBody {
            inner,
            limit,
            seen: 0,
            idle,
            timer: Box::pin(tokio::time::sleep_until(crate::hooks::deadline_after(idle))),
            checked_hint: false,
            done: false,
        }
    }

    fn fail(&mut self, err: Error) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.done = true;
        Poll::Ready(Some(Err(err)))
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if !this.checked_hint {
            // A declared `Content-Length` above the limit fails before any data is read.
            this.checked_hint = true;
            if this.inner.size_hint().lower() > this.limit {
                return this.fail(Error::HttpResponseBodySize(Some(this.limit)));
            }
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(err))) => {
                let err = if err.is_timeout() {
                    Error::HttpResponseTimeout
                } else {
                    Error::Hyper(err)
                };
                this.fail(err)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
                    this.seen = this.seen.saturating_add(len);
                    if this.seen > this.limit {
                        return this.fail(Error::HttpResponseBodySize(Some(this.limit)));
                    }
                }
                this.timer
                    .as_mut()
                    .reset(crate::hooks::deadline_after(this.idle));
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => this.fail(Error::ConnectionReadTimeout),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.done {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}
