//! The snapshot cache of the hottest and heaviest views: a serialised answer kept in memory,
//! fresh for a while that depends on its build time ([`Freshness`]), rebuilt by one request while
//! the others are served the old one, and — while there is none yet — built once for everyone.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use crate::{
    error::*,
    heavy::{HEAVY_WAIT, heavy_busy},
    state::{AppState, OVERVIEW_TTL, Snapshot},
};
use axum::{
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;

/// Answers from the snapshot under `key`, fresh for [`OVERVIEW_TTL`] (see [`snapshot_with`]).
pub(crate) async fn snapshot<F, Fut>(
    s: &AppState,
    key: String,
    build: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<axum::body::Bytes, ApiError>>,
{
    snapshot_with(s, key, LIVE, build).await
}

/// Answers from the snapshot under `key` (a JSON body) kept as `freshness` says.
pub(crate) async fn snapshot_with<F, Fut>(
    s: &AppState,
    key: String,
    freshness: Freshness,
    build: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<axum::body::Bytes, ApiError>>,
{
    Ok(json_body(snapshot_bytes(s, key, freshness, build).await?))
}

/// A serialised JSON body as a response.
fn json_body(body: axum::body::Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// As [`snapshot_with`] under `key`; with no key (a window without trades: nothing heavy to
/// build, and not worth a place in the cache) built for this request alone.
pub(crate) async fn snapshot_if<F, Fut>(
    s: &AppState,
    key: Option<String>,
    freshness: Freshness,
    build: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<axum::body::Bytes, ApiError>>,
{
    match key {
        Some(key) => snapshot_with(s, key, freshness, build).await,
        None => Ok(json_body(build().await?)),
    }
}

/// How long a snapshot stays fresh: at least `min`, and at least `build_multiple` times as long
/// as its last build took. A snapshot that takes seconds to build at friend.tech scale is then
/// rebuilt at most every `build_multiple` build times, i.e. rebuilding keeps at most
/// 1/`build_multiple` of one core busy however many requests come, while a small database's
/// (milliseconds) stays as live as the others.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Freshness {
    pub(crate) min: std::time::Duration,
    pub(crate) build_multiple: u32,
    /// Whether a build is heavy work (reads a window's trades or per-subject aggregates): at
    /// most [`HEAVY_BUILDS`] such builds run at once (see [`HeavyBuilds`]).
    pub(crate) heavy: bool,
}

/// The hot endpoints' freshness: [`OVERVIEW_TTL`].
pub(crate) const LIVE: Freshness = Freshness {
    min: OVERVIEW_TTL,
    build_multiple: 0,
    heavy: false,
};

/// A view cut from a heavy snapshot (net flow's side and limit from its window's leaders): kept
/// like [`HEAVY`], but not heavy itself — its build waits for the heavy one inside it.
pub(crate) const SLICE: Freshness = Freshness {
    min: OVERVIEW_TTL,
    build_multiple: 20,
    heavy: false,
};

/// The freshness of aggregations over many rows (retention cohorts, net-flow leaders, a
/// window's overview): at least [`OVERVIEW_TTL`], and 20 times the last build (a 3 s build at
/// 12M trades is served for a minute).
pub(crate) const HEAVY: Freshness = Freshness {
    min: OVERVIEW_TTL,
    build_multiple: 20,
    heavy: true,
};

impl Freshness {
    fn fresh_for(self, built_in: std::time::Duration) -> std::time::Duration {
        self.min.max(built_in * self.build_multiple)
    }
}

/// The bytes of the snapshot under `key`: fresh, or stale while another request rebuilds it;
/// otherwise this request builds it with `build` (a rebuild abandoned for 5 s or twice its last
/// build time, e.g. by a client that went away, is taken over). Requests arriving while there is
/// no snapshot yet wait for the one build under way rather than each starting their own.
pub(crate) async fn snapshot_bytes<F, Fut>(
    s: &AppState,
    key: String,
    freshness: Freshness,
    build: F,
) -> Result<axum::body::Bytes, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<axum::body::Bytes, ApiError>>,
{
    let cached = |cache: &mut HashMap<String, Snapshot>| match cache.get_mut(&key) {
        Some(snap) if snap.at.elapsed() < freshness.fresh_for(snap.built_in) => {
            Some(Some(snap.body.clone()))
        }
        Some(snap)
            if snap.refreshing_since.is_some_and(|t| {
                t.elapsed() < std::time::Duration::from_secs(5).max(snap.built_in * 2)
            }) =>
        {
            Some(Some(snap.body.clone()))
        }
        Some(snap) => {
            snap.refreshing_since = Some(Instant::now());
            Some(None)
        }
        None => None,
    };
    let deadline = tokio::time::Instant::now() + HEAVY_WAIT;
    let served = cached(&mut s.snapshots.lock().expect("not poisoned"));
    // No snapshot at all: one build per key at a time (the others wait for it).
    let mut first_build = None;
    let served = match served {
        Some(served) => served,
        None => {
            let gate = s
                .first_builds
                .lock()
                .expect("not poisoned")
                .entry(key.clone())
                .or_default()
                .clone();
            let held = if freshness.heavy {
                tokio::time::timeout_at(deadline, gate.clone().lock_owned())
                    .await
                    .map_err(|_| heavy_busy())?
            } else {
                gate.clone().lock_owned().await
            };
            first_build = Some(FirstBuild {
                gates: &s.first_builds,
                key: &key,
                _held: held,
                gate,
            });
            let again = cached(&mut s.snapshots.lock().expect("not poisoned"));
            again.flatten()
        }
    };
    let body = match served {
        Some(body) => body,
        None => {
            let turn = match freshness.heavy {
                true => Some(s.heavy.turn(deadline).await),
                false => None,
            }
            .transpose();
            let turn = match turn {
                Ok(turn) => turn,
                Err(e) => {
                    // A stale snapshot is better than none while the heavy builds are busy.
                    let mut cache = s.snapshots.lock().expect("not poisoned");
                    return match cache.get_mut(&key) {
                        Some(snap) => {
                            snap.refreshing_since = None;
                            Ok(snap.body.clone())
                        }
                        None => Err(e),
                    };
                }
            };
            let started = Instant::now();
            let built = build().await;
            drop(turn);
            let mut cache = s.snapshots.lock().expect("not poisoned");
            match built {
                Ok(body) => {
                    if cache.len() > 4096 {
                        // Cheap snapshots go first: a flood of distinct cheap keys must not evict
                        // the ones that take seconds to build.
                        cache.retain(|_, snap| {
                            snap.built_in >= std::time::Duration::from_millis(100)
                        });
                        if cache.len() > 4096 {
                            cache.clear();
                        }
                    }
                    let snap = Snapshot {
                        at: Instant::now(),
                        built_in: started.elapsed(),
                        body: body.clone(),
                        refreshing_since: None,
                    };
                    cache.insert(key.clone(), snap);
                    body
                }
                Err(e) => {
                    if let Some(snap) = cache.get_mut(&key) {
                        snap.refreshing_since = None;
                    }
                    return Err(e);
                }
            }
        }
    };
    drop(first_build);
    Ok(body)
}

/// The first build of a key, held while it runs. However it ends — built, failed, or the request
/// dropped mid-build — the key's gate is removed (if it is still this one), so keys whose build
/// fails (a subject without trades answers 404 from inside its build) do not pile up.
struct FirstBuild<'a> {
    gates: &'a Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    key: &'a str,
    gate: Arc<tokio::sync::Mutex<()>>,
    /// Released after the gate is removed: the requests waiting on it then find the snapshot
    /// (or, after a failure, build it themselves).
    _held: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for FirstBuild<'_> {
    fn drop(&mut self) {
        let mut gates = self.gates.lock().expect("not poisoned");
        if gates
            .get(self.key)
            .is_some_and(|g| Arc::ptr_eq(g, &self.gate))
        {
            gates.remove(self.key);
        }
    }
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Result<axum::body::Bytes, ApiError> {
    serde_json::to_vec(v)
        .map(Into::into)
        .map_err(|e| ApiError::Internal(e.to_string()))
}
