//! A worker's TCP streams, counting what they carried to the peer: what
//! `bytes_sent` reports.
//!
//! A `write` that returns only put the bytes in the kernel's send queue.
//! When the peer resets the connection (a server that answers before
//! reading a large body, then closes), the queue is thrown away: counting
//! writes said 8.1 GB where the server got 289 MB, and counting the bytes
//! each request was built to hold said 54 GB. So each stream counts its
//! writes, and when it is dropped asks the kernel how many of its bytes
//! the peer acknowledged (`TCP_INFO`); what was written and never
//! acknowledged is taken back out of the worker's count.

use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What one worker's streams wrote, and what closed streams never
/// delivered. Shared with the streams (an HTTP/2 connection runs as its
/// own task).
#[derive(Debug, Default)]
pub(crate) struct Tally {
    written: AtomicU64,
    undelivered: AtomicU64,
}

impl Tally {
    /// Bytes sent since the last call: written, less what closed streams
    /// never delivered. What cannot be taken back yet (more undelivered
    /// than written since) is carried in `debt` to the next call.
    pub(crate) fn take(&self, debt: &mut u64) -> u64 {
        let written = self.written.swap(0, Ordering::Relaxed);
        *debt += self.undelivered.swap(0, Ordering::Relaxed);
        let paid = written.min(*debt);
        *debt -= paid;
        written - paid
    }
}

/// A TCP stream that counts its writes into a [`Tally`], and on drop
/// takes back what its peer never acknowledged.
pub(crate) struct Counted {
    stream: TcpStream,
    tally: Arc<Tally>,
    /// Bytes this stream's writes accepted.
    written: u64,
}

impl Counted {
    pub(crate) fn new(stream: TcpStream, tally: Arc<Tally>) -> Counted {
        Counted {
            stream,
            tally,
            written: 0,
        }
    }

    fn wrote(&mut self, n: usize) {
        self.written += n as u64;
        self.tally.written.fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        // The kernel counts the SYN as an acknowledged byte. Where it does
        // not say (not Linux, an old kernel), writes are the count.
        let Ok(acked) = fleetbench_tcpinfo::bytes_acked(self.stream.as_fd()) else {
            return;
        };
        let delivered = acked.saturating_sub(1);
        let lost = self.written.saturating_sub(delivered);
        if lost > 0 {
            self.tally.undelivered.fetch_add(lost, Ordering::Relaxed);
        }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.wrote(n);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            self.wrote(n);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What closed streams never delivered comes off what was written,
    /// now or, when more than was written since, later: never below zero,
    /// never lost.
    #[test]
    fn undelivered_bytes_come_off_the_count_now_or_later() {
        let tally = Tally::default();
        let mut debt = 0;
        tally.written.store(1000, Ordering::Relaxed);
        assert_eq!(tally.take(&mut debt), 1000);
        tally.written.store(100, Ordering::Relaxed);
        tally.undelivered.store(700, Ordering::Relaxed);
        assert_eq!((tally.take(&mut debt), debt), (0, 600));
        tally.written.store(1000, Ordering::Relaxed);
        assert_eq!((tally.take(&mut debt), debt), (400, 0));
    }

    /// A peer that reads a little of a large write and then resets the
    /// connection: the tally keeps what it acknowledged, not what the
    /// writes accepted.
    #[tokio::test]
    async fn a_reset_stream_counts_what_its_peer_acknowledged() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let tally = Arc::new(Tally::default());
        let mut counted = Counted::new(client, tally.clone());
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; 10_000];
            server.read_exact(&mut got).await.unwrap();
            // Closing with unread data resets the connection.
            drop(server);
        });
        let body = vec![3u8; 64 << 20];
        let sent = counted.write_all(&body).await;
        assert!(sent.is_err(), "64 MiB cannot all fit in the buffers");
        reader.await.unwrap();
        let written = counted.written;
        drop(counted);
        let mut debt = 0;
        let counted = tally.take(&mut debt);
        assert_eq!(debt, 0);
        assert!(counted >= 10_000, "the peer read 10,000 bytes: {counted}");
        assert!(
            counted < written,
            "{counted} counted, {written} accepted by writes"
        );
    }
}
