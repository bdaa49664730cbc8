//! The body of an answer, as hyper sends it, with a hook run once it has been handed to
//! the connection in full (or the connection dropped it): the request log's end time.
//!
//! Today a body is one buffer. A body made on the fly (slow, or far too long to hold in
//! memory) would be another source of frames behind the same type.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Runs when an answer is done with.
type OnEnd = Box<dyn FnOnce() + Send>;

/// An answer's body: its bytes, and what to do once they are sent.
pub struct Answer {
    data: Option<Bytes>,
    on_end: Option<OnEnd>,
}

impl Answer {
    /// A body of these bytes.
    pub fn full(data: impl Into<Bytes>) -> Answer {
        let data: Bytes = data.into();
        Answer {
            data: (!data.is_empty()).then_some(data),
            on_end: None,
        }
    }

    /// Runs `f` once the body has been taken by the connection or dropped with it.
    pub fn on_end(mut self, f: impl FnOnce() + Send + 'static) -> Answer {
        self.on_end = Some(Box::new(f));
        self
    }
}

impl Body for Answer {
    type Data = Bytes;
    type Error = Infallible;

    /// Yields the bytes once, then the end.
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.data.take().map(|d| Ok(Frame::data(d))))
    }

    /// Whether every byte has been yielded.
    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    /// The exact length left, so that hyper sends a `Content-Length`.
    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

impl Drop for Answer {
    /// Runs the end hook.
    fn drop(&mut self) {
        if let Some(f) = self.on_end.take() {
            f();
        }
    }
}
