//! Streamed answers (an export, a backup): a blocking producer feeds the
//! response body through a bounded channel.
//!
//! Invariant: a producer never waits longer than the stall timeout for the
//! client to take a piece. A client that stops reading would otherwise pin
//! the producer's blocking thread (and what it holds open) for as long as
//! it keeps the connection; past the timeout the producer stops, and the
//! body ends in an error, so the client sees a cut stream, never one that
//! looks complete.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use tokio::sync::mpsc;

/// Pieces in flight between the producer and the socket.
const IN_FLIGHT: usize = 8;

type Piece = Result<Vec<u8>, std::io::Error>;

/// The producer's end of a streamed answer.
pub(super) struct Producer {
    tx: mpsc::Sender<Piece>,
    stall: Duration,
    cut: Arc<AtomicBool>,
    runtime: tokio::runtime::Handle,
}

impl Producer {
    /// Hands `piece` to the client; false once the client went away or
    /// took nothing for the stall timeout (the producer should stop).
    pub(super) fn send(&self, piece: Vec<u8>) -> bool {
        self.deliver(Ok(piece))
    }

    /// Ends the answer in an error: the client sees a cut stream.
    pub(super) fn fail(&self, why: &str) {
        self.deliver(Err(std::io::Error::other(why.to_string())));
    }

    fn deliver(&self, piece: Piece) -> bool {
        if self.cut.load(Ordering::Acquire) {
            return false;
        }
        match self
            .runtime
            .block_on(self.tx.send_timeout(piece, self.stall))
        {
            Ok(()) => true,
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                tracing::warn!(
                    stall_s = self.stall.as_secs_f64(),
                    "a client stopped reading a streamed answer; cutting it"
                );
                self.cut.store(true, Ordering::Release);
                false
            }
            Err(mpsc::error::SendTimeoutError::Closed(_)) => false,
        }
    }
}

/// A producer (to move to a blocking thread) and the body it feeds. Call
/// within the runtime.
pub(super) fn channel(stall: Duration) -> (Producer, Body) {
    let (tx, rx) = mpsc::channel::<Piece>(IN_FLIGHT);
    let cut = Arc::new(AtomicBool::new(false));
    let producer = Producer {
        tx,
        stall,
        cut: cut.clone(),
        runtime: tokio::runtime::Handle::current(),
    };
    let stream = futures_util::stream::unfold(Some((rx, cut)), |state| async move {
        let (mut rx, cut) = state?;
        if cut.load(Ordering::Acquire) {
            // Not even what was queued before the cut: the body ends in an
            // error, and nothing follows it.
            let cut_off = std::io::Error::other("the client stopped reading; the answer was cut");
            return Some((Err(cut_off), None));
        }
        let item = rx.recv().await?;
        Some((item, Some((rx, cut))))
    });
    (producer, Body::from_stream(stream))
}
