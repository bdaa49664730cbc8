//! An accepted TCP connection as hyper reads and writes it, plus a handle that the
//! request handlers keep to decide how the connection ends: normally, with a TCP reset
//! (`SO_LINGER 0`), with a plain close (FIN), or held open without an answer (a hang).
//!
//! A handler that wants one of these marks the handle and makes its service fail; hyper
//! then drops the connection without writing anything, and the drop of `Socket` applies
//! the mark to the TCP stream. Encryption or throttled writes would wrap this type (a TLS
//! stream over `Socket`), so the ending still reaches TCP.

use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// No special ending: hyper closes the connection as HTTP says.
const NORMAL: u8 = 0;
/// Close with `SO_LINGER 0`: the peer sees a connection reset.
const RESET: u8 = 1;
/// Shut down both directions, then close: the peer sees a FIN and no answer.
const CLOSE: u8 = 2;
/// Keep the socket open, reading and discarding, until the peer closes or `until` resolves.
const HANG: u8 = 3;

/// A future after which a hung connection is closed (the server stopping).
type Until = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The handlers' side of a connection: how it should end.
pub struct Ending {
    how: AtomicU8,
    until: Mutex<Option<Until>>,
}

impl Ending {
    /// A connection that ends normally unless a handler says otherwise.
    fn new() -> Ending {
        Ending {
            how: AtomicU8::new(NORMAL),
            until: Mutex::new(None),
        }
    }

    /// Makes the connection end with a TCP reset when hyper drops it.
    pub fn reset(&self) {
        self.how.store(RESET, Ordering::SeqCst);
    }

    /// Makes the connection end with a plain close (no answer) when hyper drops it.
    pub fn close(&self) {
        self.how.store(CLOSE, Ordering::SeqCst);
    }

    /// Keeps the connection open after hyper drops it, never answering, until the peer
    /// closes it or `until` resolves.
    pub fn hang(&self, until: impl Future<Output = ()> + Send + 'static) {
        *self.until.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::pin(until));
        self.how.store(HANG, Ordering::SeqCst);
    }
}

/// An accepted connection, read and written by hyper.
pub struct Socket {
    /// Always set while hyper uses it; taken by a hang when dropped.
    tcp: Option<TcpStream>,
    ending: Arc<Ending>,
}

impl Socket {
    /// Wraps an accepted stream; returns it with the handle its handlers keep.
    pub fn new(tcp: TcpStream) -> (Socket, Arc<Ending>) {
        let ending = Arc::new(Ending::new());
        let socket = Socket {
            tcp: Some(tcp),
            ending: Arc::clone(&ending),
        };
        (socket, ending)
    }

    /// How the handlers asked the connection to end.
    fn how(&self) -> u8 {
        self.ending.how.load(Ordering::SeqCst)
    }

    /// The TCP stream, for the I/O methods.
    fn tcp(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.tcp.as_mut().expect("the stream is only taken on drop"))
    }
}

impl Drop for Socket {
    /// Applies the requested ending to the TCP stream.
    fn drop(&mut self) {
        let Some(tcp) = self.tcp.take() else { return };
        let sock = socket2::SockRef::from(&tcp);
        match self.how() {
            RESET => {
                let _ = sock.set_linger(Some(Duration::ZERO));
            }
            CLOSE => {
                let _ = sock.shutdown(Shutdown::Both);
            }
            HANG => {
                let until = self
                    .ending
                    .until
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                // Outside the runtime (it is shutting down) the stream is simply closed.
                if let (Some(until), Ok(rt)) = (until, tokio::runtime::Handle::try_current()) {
                    rt.spawn(hold_open(tcp, until));
                }
            }
            _ => {}
        }
    }
}

/// Reads and discards until the peer closes the stream or `until` resolves, then closes it.
async fn hold_open(mut tcp: TcpStream, until: Until) {
    let drain = async {
        let mut scratch = [0u8; 16 * 1024];
        while let Ok(n) = tcp.read(&mut scratch).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::select! {
        _ = until => {}
        _ = drain => {}
    }
}

impl AsyncRead for Socket {
    /// Reads from the TCP stream.
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.tcp().poll_read(cx, buf)
    }
}

impl AsyncWrite for Socket {
    /// Writes to the TCP stream.
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.tcp().poll_write(cx, buf)
    }

    /// Writes several buffers at once (hyper sends a head and a body together).
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.tcp().poll_write_vectored(cx, bufs)
    }

    /// The TCP stream takes vectored writes.
    fn is_write_vectored(&self) -> bool {
        self.tcp.as_ref().is_some_and(|t| t.is_write_vectored())
    }

    /// Nothing is buffered here.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp().poll_flush(cx)
    }

    /// Shuts the write side down, except on a connection to be reset or held open (a
    /// FIN would let the peer see an orderly close).
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if matches!(self.how(), RESET | HANG) {
            return Poll::Ready(Ok(()));
        }
        self.tcp().poll_shutdown(cx)
    }
}
