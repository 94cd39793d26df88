//! The cap on open connections, and which connection gives way when it is reached.
//!
//! A connection counts from `accept` to close, its TLS handshake included. Below the cap every
//! connection is taken. At the cap a new connection is still taken and another one is closed to
//! make room: the oldest connection that has never been served a request in full (a peer still
//! in its TLS handshake, sending its header or body slowly, or idle since it connected), else
//! the one served least recently. Only when every open connection is in the middle of
//! answering a request is the new connection refused. So peers that hold connections without
//! completing requests cannot keep kube-apiserver out: its connections complete reviews and are
//! the last to go, and its new connections push the slow peers out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::metrics::{Metrics, PortLabel, PortReason};

/// One open connection as the registry sees it. Its times are milliseconds since the
/// registry's start.
#[derive(Debug)]
pub struct Slot {
    id: u64,
    epoch: Instant,
    /// When a request last ended (or the connection was accepted): the idle clock.
    last_request_end: AtomicU64,
    /// 1 + when a request was last served in full; 0 for never: the rank for making room,
    /// never served first (oldest first), then least recently served.
    last_served: AtomicU64,
    /// Requests in progress, from the request head to the end of the handler.
    requests: AtomicU32,
    /// Whether a request head has ever arrived.
    had_request: AtomicBool,
    /// Requests received in full and being answered: such a connection is never closed to
    /// make room.
    serving: AtomicU32,
    abort: OnceLock<AbortHandle>,
}

impl Slot {
    fn new(id: u64, epoch: Instant) -> Self {
        let now = millis_since(epoch);
        Slot {
            id,
            epoch,
            last_request_end: AtomicU64::new(now),
            last_served: AtomicU64::new(0),
            requests: AtomicU32::new(0),
            had_request: AtomicBool::new(false),
            serving: AtomicU32::new(0),
            abort: OnceLock::new(),
        }
    }

    /// Records the task serving this connection, so that it can be stopped to make room.
    pub fn set_task(&self, handle: AbortHandle) {
        let _ = self.abort.set(handle);
    }

    /// A request head has arrived; the request is in progress until the guard is dropped.
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.had_request.store(true, Ordering::Relaxed);
        RequestGuard(self.clone())
    }

    /// Whether a request head has ever arrived on this connection.
    pub fn had_request(&self) -> bool {
        self.had_request.load(Ordering::Relaxed)
    }

    /// The request has been received in full and is being answered until the guard is
    /// dropped; then the connection counts as just served.
    pub fn serving(self: &Arc<Self>) -> ServingGuard {
        self.serving.fetch_add(1, Ordering::Relaxed);
        ServingGuard(self.clone())
    }

    /// When the connection will have been idle (no request in progress) for `timeout`; while
    /// a request is in progress, `timeout` from now (to look again then).
    pub fn idle_deadline(&self, timeout: Duration) -> Instant {
        if self.requests.load(Ordering::Relaxed) > 0 {
            return Instant::now() + timeout;
        }
        self.epoch + Duration::from_millis(self.last_request_end.load(Ordering::Relaxed)) + timeout
    }

    /// Whether no request is in progress and none has ended for `timeout` (the same clock as
    /// [`Slot::idle_deadline`], so a wake-up at the deadline finds the connection idle).
    pub fn idle_for(&self, timeout: Duration) -> bool {
        self.requests.load(Ordering::Relaxed) == 0 && Instant::now() >= self.idle_deadline(timeout)
    }
}

fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// See [`Slot::request`].
pub struct RequestGuard(Arc<Slot>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let s = &self.0;
        s.last_request_end
            .store(millis_since(s.epoch), Ordering::Relaxed);
        s.requests.fetch_sub(1, Ordering::Relaxed);
    }
}

/// See [`Slot::serving`].
pub struct ServingGuard(Arc<Slot>);

impl Drop for ServingGuard {
    fn drop(&mut self) {
        let s = &self.0;
        s.last_served
            .store(millis_since(s.epoch).saturating_add(1), Ordering::Relaxed);
        s.serving.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connection to close to make room: of those not answering a request (and whose task
/// is known), the oldest of those never served, else the one served least recently. `None`
/// when every connection is answering a request.
fn victim<'a>(slots: impl Iterator<Item = &'a Arc<Slot>>) -> Option<&'a Arc<Slot>> {
    slots
        .filter(|s| s.serving.load(Ordering::Relaxed) == 0 && s.abort.get().is_some())
        .min_by_key(|s| (s.last_served.load(Ordering::Relaxed), s.id))
}

/// The open connections of one listener, at most `max`.
#[derive(Debug)]
pub struct Connections {
    max: usize,
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Slot>>>,
    emptied: Notify,
    gauge: Gauge,
    accepted: Counter,
    evicted: Counter,
    rejected: Counter,
}

impl Connections {
    /// A registry for the listener named `port` in the metrics (`https`, `admin`).
    pub fn new(port: &'static str, max: usize, metrics: &Metrics) -> Arc<Self> {
        let label = PortLabel { port };
        metrics
            .connections_max
            .get_or_create(&label)
            .set(i64::try_from(max).unwrap_or(i64::MAX));
        let reason = |reason| {
            metrics
                .connections_closed
                .get_or_create(&PortReason { port, reason })
                .clone()
        };
        Arc::new(Connections {
            max: max.max(1),
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            emptied: Notify::new(),
            gauge: metrics.connections_open.get_or_create(&label).clone(),
            accepted: metrics.connections_accepted.get_or_create(&label).clone(),
            evicted: reason("evicted"),
            rejected: reason("rejected"),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Slot>>> {
        match self.open.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Takes a new connection, closing another one to make room at the cap; `None` when the
    /// connection must be refused (every open connection is answering a request).
    pub fn admit(self: &Arc<Self>) -> Option<SlotGuard> {
        let mut open = self.lock();
        if open.len() >= self.max {
            let Some(id) = victim(open.values()).map(|s| s.id) else {
                self.rejected.inc();
                return None;
            };
            if let Some(old) = open.remove(&id)
                && let Some(task) = old.abort.get()
            {
                task.abort();
            }
            self.evicted.inc();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot::new(id, self.epoch));
        open.insert(id, slot.clone());
        self.gauge
            .set(i64::try_from(open.len()).unwrap_or(i64::MAX));
        self.accepted.inc();
        Some(SlotGuard {
            conns: self.clone(),
            slot,
        })
    }

    fn remove(&self, id: u64) {
        let mut open = self.lock();
        open.remove(&id);
        self.gauge
            .set(i64::try_from(open.len()).unwrap_or(i64::MAX));
        if open.is_empty() {
            self.emptied.notify_waiters();
        }
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns once no connection is open.
    pub async fn wait_empty(&self) {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            emptied.as_mut().enable();
            if self.is_empty() {
                return;
            }
            emptied.await;
        }
    }

    /// Stops the task of every open connection (closing it at once).
    pub fn abort_all(&self) {
        let mut open = self.lock();
        for slot in open.values() {
            if let Some(task) = slot.abort.get() {
                task.abort();
            }
        }
        open.clear();
        self.gauge.set(0);
        self.emptied.notify_waiters();
    }
}

/// A connection's place in the registry, released when dropped (the connection's task ends,
/// or is stopped).
pub struct SlotGuard {
    conns: Arc<Connections>,
    slot: Arc<Slot>,
}

impl SlotGuard {
    pub fn slot(&self) -> &Arc<Slot> {
        &self.slot
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.conns.remove(self.slot.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection task that runs until stopped, like a peer that never sends anything.
    fn idle_task(conns: &Arc<Connections>) -> Option<(Arc<Slot>, tokio::task::JoinHandle<()>)> {
        let guard = conns.admit()?;
        let slot = guard.slot().clone();
        let task = tokio::spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
        slot.set_task(task.abort_handle());
        Some((slot, task))
    }

    fn metric(m: &Metrics, line: &str) -> Option<f64> {
        m.encode()
            .lines()
            .find(|l| l.starts_with(line))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[tokio::test]
    async fn at_the_cap_the_oldest_never_served_connection_gives_way() {
        let m = Metrics::new();
        let conns = Connections::new("https", 3, &m);
        let (a, ta) = idle_task(&conns).expect("a");
        let (_b, tb) = idle_task(&conns).expect("b");
        let (_c, tc) = idle_task(&conns).expect("c");
        assert_eq!(conns.len(), 3);
        // `a` answers a review: it is the only one ever served.
        drop(a.serving());
        // A fourth connection: `b`, never served and the oldest of those, is closed.
        let (_d, td) = idle_task(&conns).expect("room is made");
        assert_eq!(conns.len(), 3);
        assert!(tb.await.expect_err("b stopped").is_cancelled());
        // Next: `c`, then `d` (never served, oldest first), before `a`.
        let (_e, _te) = idle_task(&conns).expect("room is made");
        assert!(tc.await.expect_err("c stopped").is_cancelled());
        let (_f, _tf) = idle_task(&conns).expect("room is made");
        assert!(td.await.expect_err("d stopped").is_cancelled());
        assert!(!ta.is_finished(), "the served connection stays");
        assert_eq!(
            metric(
                &m,
                r#"kfp_mesh_webhook_connections_closed_total{port="https",reason="evicted"}"#
            ),
            Some(3.0)
        );
        assert_eq!(
            metric(&m, r#"kfp_mesh_webhook_connections_open{port="https"}"#),
            Some(3.0)
        );
        assert_eq!(
            metric(
                &m,
                r#"kfp_mesh_webhook_connections_accepted_total{port="https"}"#
            ),
            Some(6.0)
        );
        assert_eq!(
            metric(&m, r#"kfp_mesh_webhook_connections_max{port="https"}"#),
            Some(3.0)
        );
    }

    #[tokio::test]
    async fn when_every_connection_is_answering_a_new_one_is_refused() {
        let m = Metrics::new();
        let conns = Connections::new("https", 2, &m);
        let (a, ta) = idle_task(&conns).expect("a");
        let (b, tb) = idle_task(&conns).expect("b");
        let serving_a = a.serving();
        let serving_b = b.serving();
        assert!(conns.admit().is_none(), "refused");
        assert_eq!(
            metric(
                &m,
                r#"kfp_mesh_webhook_connections_closed_total{port="https",reason="rejected"}"#
            ),
            Some(1.0)
        );
        assert!(!ta.is_finished() && !tb.is_finished());
        // One answer done: that connection can give way again.
        drop(serving_b);
        assert!(idle_task(&conns).is_some());
        assert!(tb.await.expect_err("b stopped").is_cancelled());
        drop(serving_a);
        assert_eq!(conns.len(), 2);
    }

    #[tokio::test]
    async fn a_closed_connection_frees_its_place_and_draining_ends_when_all_are_gone() {
        let m = Metrics::new();
        let conns = Connections::new("admin", 4, &m);
        let (_a, ta) = idle_task(&conns).expect("a");
        let (_b, tb) = idle_task(&conns).expect("b");
        ta.abort();
        let _ = ta.await;
        assert_eq!(conns.len(), 1);
        let waiter = {
            let conns = conns.clone();
            tokio::spawn(async move { conns.wait_empty().await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());
        tb.abort();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("drained")
            .expect("join");
        assert_eq!(
            metric(&m, r#"kfp_mesh_webhook_connections_open{port="admin"}"#),
            Some(0.0)
        );
    }

    #[test]
    fn idle_clock() {
        let slot = Arc::new(Slot::new(0, Instant::now() - Duration::from_secs(10)));
        // Accepted 10 s ago (its clock starts at its creation: now).
        assert!(!slot.idle_for(Duration::from_secs(1)));
        assert!(slot.idle_for(Duration::ZERO));
        assert!(!slot.had_request());
        let r = slot.request();
        assert!(slot.had_request());
        assert!(!slot.idle_for(Duration::ZERO), "a request is in progress");
        assert!(slot.idle_deadline(Duration::from_secs(5)) > Instant::now());
        drop(r);
        assert!(slot.idle_for(Duration::ZERO));
    }
}
