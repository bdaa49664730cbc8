//! The body of an answer, as hyper sends it, with hooks run once it has been handed to
//! the connection in full (or the connection dropped it): the request log's end time, the
//! count of requests in flight.
//!
//! A body is either one buffer, or generated as it is sent (the `drip` and `huge` faults):
//! a JSON object `{"import_id":"generated","padding":"xxx…"}` of exactly the length asked
//! (only spaces when that is too short for the object), made frame by frame from a static
//! block of padding, so that gigabytes cost no memory; a drip sends it at a fixed rate.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Runs when an answer is done with.
type OnEnd = Box<dyn FnOnce() + Send>;

/// Largest frame a generated body yields.
const FRAME: usize = 64 * 1024;
/// The padding of generated bodies, sliced without copying.
static PAD: [u8; FRAME] = [b'x'; FRAME];
/// Start and end of a generated body's JSON object.
const GEN_HEAD: &[u8] = br#"{"import_id":"generated","padding":""#;
const GEN_TAIL: &[u8] = br#""}"#;
/// Shortest pause between two frames of a drip: a slow rate sends a few bytes per pause
/// instead of waking for every byte.
const DRIP_TICK: Duration = Duration::from_millis(20);

/// An answer's body: its bytes, and what to do once they are sent.
pub struct Answer {
    source: Source,
    on_end: Vec<OnEnd>,
}

/// Where an answer's bytes come from.
enum Source {
    /// One buffer, yielded whole (`None` once yielded or when empty).
    Full(Option<Bytes>),
    /// Made as it is sent.
    Generated(Generated),
}

/// A body generated as it is sent, optionally at a fixed rate.
struct Generated {
    total: u64,
    sent: u64,
    /// Bytes per second; `None` sends as fast as the connection takes them.
    rate: Option<u64>,
    /// Whether the length is announced (`Content-Length`) or the body is chunked.
    announced: bool,
    /// When the first frame was asked for (the drip's clock starts then).
    started: Option<Instant>,
    /// The pause before the next frame of a drip.
    pause: Option<Pin<Box<Sleep>>>,
}

impl Answer {
    /// A body of these bytes.
    pub fn full(data: impl Into<Bytes>) -> Answer {
        let data: Bytes = data.into();
        Answer {
            source: Source::Full((!data.is_empty()).then_some(data)),
            on_end: Vec::new(),
        }
    }

    /// A body of `total` bytes generated as it is sent, at `rate` bytes per second (`None`:
    /// as fast as possible), with a `Content-Length` when `announced`, else chunked.
    pub fn generated(total: u64, rate: Option<u64>, announced: bool) -> Answer {
        Answer {
            source: Source::Generated(Generated {
                total,
                sent: 0,
                rate: rate.map(|r| r.max(1)),
                announced,
                started: None,
                pause: None,
            }),
            on_end: Vec::new(),
        }
    }

    /// Runs `f` once the body has been taken by the connection or dropped with it (after
    /// the hooks added before it).
    pub fn on_end(mut self, f: impl FnOnce() + Send + 'static) -> Answer {
        self.on_end.push(Box::new(f));
        self
    }
}

impl Generated {
    /// The next frame, or `Pending` while a drip waits for its next bytes to be due.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.sent >= self.total {
            return Poll::Ready(None);
        }
        let mut room = (self.total - self.sent).min(FRAME as u64);
        if let Some(rate) = self.rate {
            let started = *self.started.get_or_insert_with(Instant::now);
            loop {
                if let Some(pause) = self.pause.as_mut() {
                    if pause.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.pause = None;
                }
                let now = Instant::now();
                let elapsed = now.duration_since(started).as_secs_f64();
                let due = ((elapsed * rate as f64) as u64).min(self.total);
                if due > self.sent {
                    room = room.min(due - self.sent);
                    break;
                }
                // Wake when the next byte is due, but not sooner than a tick from now.
                let next = Duration::from_secs_f64((self.sent + 1) as f64 / rate as f64);
                let at = (started + next).max(now + DRIP_TICK);
                self.pause = Some(Box::pin(tokio::time::sleep_until(at)));
            }
        }
        let frame = self.bytes(self.sent, room as usize);
        self.sent += room;
        Poll::Ready(Some(frame))
    }

    /// `len` bytes of the body from offset `at`.
    fn bytes(&self, at: u64, len: usize) -> Bytes {
        let fixed = (GEN_HEAD.len() + GEN_TAIL.len()) as u64;
        if self.total < fixed {
            return Bytes::from(vec![b' '; len]);
        }
        let tail_at = self.total - GEN_TAIL.len() as u64;
        let head = GEN_HEAD.len() as u64;
        if at >= head && at + len as u64 <= tail_at {
            return Bytes::from_static(&PAD[..len]);
        }
        let byte = |i: u64| match i {
            i if i < head => GEN_HEAD[i as usize],
            i if i >= tail_at => GEN_TAIL[(i - tail_at) as usize],
            _ => b'x',
        };
        Bytes::from((at..at + len as u64).map(byte).collect::<Vec<u8>>())
    }
}

impl Body for Answer {
    type Data = Bytes;
    type Error = Infallible;

    /// Yields the buffer once, or the generated frames as they are due; then the end. The end
    /// hooks run as the last frame is handed over, before the client can have read it, so
    /// that an answer is over (in the log, in the count in flight) before the client's next
    /// request can arrive.
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match &mut self.source {
            Source::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Source::Generated(g) => g.poll_next(cx).map(|f| f.map(|d| Ok(Frame::data(d)))),
        };
        if frame.is_ready() && self.is_end_stream() {
            self.run_end_hooks();
        }
        frame
    }

    /// Whether every byte has been yielded.
    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Full(data) => data.is_none(),
            Source::Generated(g) => g.sent >= g.total,
        }
    }

    /// The exact length left, so that hyper sends a `Content-Length`; none for a chunked
    /// generated body.
    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Source::Generated(g) if g.announced => SizeHint::with_exact(g.total - g.sent),
            Source::Generated(_) => SizeHint::new(),
        }
    }
}

impl Answer {
    /// Runs the end hooks not run yet, in the order they were added.
    fn run_end_hooks(&mut self) {
        for f in self.on_end.drain(..) {
            f();
        }
    }
}

impl Drop for Answer {
    /// Runs the end hooks if the last frame was not handed over (the connection dropped it).
    fn drop(&mut self) {
        self.run_end_hooks();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// Collects a body's bytes.
    async fn collect(answer: Answer) -> Vec<u8> {
        answer
            .collect()
            .await
            .expect("infallible")
            .to_bytes()
            .to_vec()
    }

    /// A generated body is a JSON object of exactly the length asked, or spaces when that is
    /// too short.
    #[tokio::test]
    async fn generated_bodies_have_the_length_asked() {
        for total in [0u64, 5, 38, 39, 100, 200_000] {
            let body = collect(Answer::generated(total, None, true)).await;
            assert_eq!(body.len() as u64, total);
            if total as usize >= GEN_HEAD.len() + GEN_TAIL.len() {
                let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
                assert_eq!(v["import_id"], "generated");
            } else {
                assert!(body.iter().all(|&b| b == b' '));
            }
        }
        assert_eq!(
            Answer::generated(7, None, true).size_hint().exact(),
            Some(7)
        );
        assert_eq!(Answer::generated(7, None, false).size_hint().exact(), None);
    }

    /// A drip takes as long as its rate says.
    #[tokio::test]
    async fn a_drip_keeps_its_rate() {
        let started = std::time::Instant::now();
        let body = collect(Answer::generated(100, Some(400), true)).await;
        let elapsed = started.elapsed();
        assert_eq!(body.len(), 100);
        assert!(elapsed >= Duration::from_millis(230), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(1000), "{elapsed:?}");
    }

    /// End hooks run once, in order, when the body is dropped.
    #[test]
    fn end_hooks_run_in_order() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (a, b) = (seen.clone(), seen.clone());
        let answer = Answer::full("x")
            .on_end(move || a.lock().unwrap().push(1))
            .on_end(move || b.lock().unwrap().push(2));
        drop(answer);
        assert_eq!(*seen.lock().unwrap(), [1, 2]);
    }
}
