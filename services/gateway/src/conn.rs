//! What a client connection may cost before any request limit applies: at
//! most `max` connections are open at once (the rest wait in the kernel's
//! accept queue), and a connection on which no byte moves for `idle` is
//! closed, so clients that open connections, or declare a body, and then send
//! nothing cannot hold the gateway's memory.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// A TCP listener that bounds open connections and closes idle ones.
pub struct BoundedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    idle: Duration,
}

impl BoundedListener {
    pub fn new(inner: TcpListener, max: usize, idle: Duration) -> Self {
        BoundedListener {
            inner,
            permits: Arc::new(Semaphore::new(max)),
            idle,
        }
    }
}

impl Listener for BoundedListener {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Connection, SocketAddr) {
        // The semaphore is never closed, so waiting for a permit ends only
        // when a connection closes.
        let permit = loop {
            match Arc::clone(&self.permits).acquire_owned().await {
                Ok(permit) => break permit,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        if self.permits.available_permits() == 0 {
            metrics::counter!("http_server_connection_limit_reached_total").increment(1);
        }
        let (stream, addr) = Listener::accept(&mut self.inner).await;
        let connection = Connection {
            stream,
            _permit: permit,
            idle: self.idle,
            moved_at: Instant::now(),
            deadline: Box::pin(tokio::time::sleep(self.idle)),
        };
        (connection, addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// One client connection; its permit is returned when it is dropped.
pub struct Connection {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle: Duration,
    /// When a byte last moved. The timer is not moved with it (that would
    /// touch the timer wheel on every read and write): when it fires it is
    /// set again from here, and only a connection idle for the whole time
    /// is closed.
    moved_at: Instant,
    deadline: Pin<Box<Sleep>>,
}

impl Connection {
    fn moved(&mut self) {
        self.moved_at = Instant::now();
    }

    /// Whether no byte has moved for `idle`; if one has, the timer is set to
    /// the new end of the idle time (and registered with `cx`).
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.deadline.as_mut().poll(cx).is_pending() {
                return false;
            }
            let end = self.moved_at + self.idle;
            if end <= Instant::now() {
                return true;
            }
            self.deadline.as_mut().reset(end);
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.moved();
                }
                Poll::Ready(result)
            }
            Poll::Pending if self.idle_expired(cx) => {
                metrics::counter!("http_server_idle_connections_closed_total").increment(1);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client sent nothing for too long",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
