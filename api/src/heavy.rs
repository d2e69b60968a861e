//! The heavy views' builds: at most [`HEAVY_BUILDS`] at once, whatever the endpoints and
//! windows asked for; a request waits for a turn at most [`HEAVY_WAIT`], then is answered 503.

use std::sync::Arc;

use crate::error::*;

/// Heavy builds running at once, whatever the endpoints and windows asked for.
pub(crate) const HEAVY_BUILDS: usize = 2;

/// How long a request waits for a heavy build — for the build of the same view another request
/// started, then for a turn of its own — before it is answered 503 with `Retry-After`: one
/// deadline for both waits, so requests queued behind one build do not wait one after another.
pub(crate) const HEAVY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The turns of the heavy builds, and how many ran at once at most (for tests and operators).
#[derive(Debug)]
pub(crate) struct HeavyBuilds {
    turns: Arc<tokio::sync::Semaphore>,
    running: std::sync::atomic::AtomicUsize,
    pub(crate) peak: std::sync::atomic::AtomicUsize,
}

impl Default for HeavyBuilds {
    fn default() -> Self {
        Self {
            turns: Arc::new(tokio::sync::Semaphore::new(HEAVY_BUILDS)),
            running: Default::default(),
            peak: Default::default(),
        }
    }
}

/// The answer to a request whose heavy build found no turn in time.
pub(crate) fn heavy_busy() -> ApiError {
    ApiError::Unavailable {
        message: format!(
            "{HEAVY_BUILDS} heavy views are being built for other requests; retry in a few seconds"
        ),
        retry_after: 5,
    }
}

/// A heavy build's turn, given back when dropped.
pub(crate) struct HeavyTurn<'a> {
    builds: &'a HeavyBuilds,
    _turn: tokio::sync::OwnedSemaphorePermit,
}

impl HeavyBuilds {
    /// Waits for a turn, at most [`HEAVY_WAIT`].
    /// Waits for a turn until `deadline` (the request's, see [`HEAVY_WAIT`]).
    pub(crate) async fn turn(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<HeavyTurn<'_>, ApiError> {
        use std::sync::atomic::Ordering;
        let turn = tokio::time::timeout_at(deadline, self.turns.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(heavy_busy)?;
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        Ok(HeavyTurn {
            builds: self,
            _turn: turn,
        })
    }
}

impl Drop for HeavyTurn<'_> {
    fn drop(&mut self) {
        self.builds
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}
