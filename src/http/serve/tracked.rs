//! The I/O wrappers that keep a connection's watchdog informed: [`Active`] marks a request in
//! flight until its response is sent, [`TrackedBody`] carries that mark with the response
//! body, and [`Tracked`] notes when an idle connection starts sending its next request head.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::Conn;

/// Marks a request in flight from its complete head until its response was sent (or dropped).
pub(super) struct Active {
    conn: Arc<Conn>,
}

impl Active {
    pub(super) fn start(conn: Arc<Conn>) -> Self {
        conn.head_started_ms.store(0, Ordering::SeqCst);
        conn.served.fetch_add(1, Ordering::SeqCst);
        conn.active.fetch_add(1, Ordering::SeqCst);
        Self { conn }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        // Idle time counts from the end of the last response; set before the count drops so
        // the watchdog never sees an idle connection with a stale time.
        self.conn
            .idle_since_ms
            .store(self.conn.now_ms(), Ordering::SeqCst);
        if self.conn.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.conn.wake.notify_one();
        }
    }
}

/// The response body, holding the request's [`Active`] mark until hyper has sent it all.
pub(super) struct TrackedBody {
    pub(super) inner: Body,
    pub(super) _active: Active,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, noting when an idle connection starts sending its next request head.
pub(super) struct Tracked {
    pub(super) inner: TcpStream,
    pub(super) conn: Arc<Conn>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        let c = &this.conn;
        if buf.filled().len() > before
            && c.active.load(Ordering::SeqCst) == 0
            && c.head_started_ms
                .compare_exchange(0, c.now_ms(), Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            c.wake.notify_one();
        }
        res
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
