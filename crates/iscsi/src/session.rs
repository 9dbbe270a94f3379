//! Live sessions by identity, for TSIH allocation and session reinstatement
//! (RFC 7143 §6.3.5: a login with TSIH 0 and the ISID of a live session replaces it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{oneshot, watch};

/// A session's identity: initiator name, ISID and target (RFC 7143 §4.4.3, the SSID is
/// ISID + target portal group tag; one portal group per target here).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionKey {
    pub initiator: String,
    pub isid: [u8; 6],
    pub target: Option<usize>,
}

struct Entry {
    tsih: u16,
    peer: Option<std::net::SocketAddr>,
    since: std::time::SystemTime,
    kill: watch::Sender<bool>,
    closed: Option<oneshot::Receiver<()>>,
}

#[derive(Default)]
struct Inner {
    next_tsih: u16,
    sessions: HashMap<SessionKey, Entry>,
}

/// What [`SessionTable::list`] reports of one session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSummary {
    pub tsih: u16,
    /// The initiator name, lower case.
    pub initiator: String,
    pub isid: [u8; 6],
    /// Index of the target in the server's list (`None`: a discovery session).
    pub target: Option<usize>,
    pub peer: Option<std::net::SocketAddr>,
    pub since: std::time::SystemTime,
}

/// All sessions of one server.
#[derive(Default)]
pub struct SessionTable {
    inner: Mutex<Inner>,
}

/// Held by a session while it lives; dropping it removes the session and tells a
/// reinstating login that the old one is gone.
pub struct SessionGuard<'a> {
    table: &'a SessionTable,
    key: SessionKey,
    pub tsih: u16,
    /// Becomes true when the session must end (reinstated by a new login).
    pub kill: watch::Receiver<bool>,
    _closed: oneshot::Sender<()>,
}

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        let mut inner = self.table.lock();
        if inner.sessions.get(&self.key).map(|e| e.tsih) == Some(self.tsih) {
            inner.sessions.remove(&self.key);
        }
    }
}

/// How long a reinstating login waits for the old session to clean up.
const REINSTATE_WAIT: Duration = Duration::from_secs(10);

impl SessionTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn tsih_exists(&self, tsih: u16) -> bool {
        self.lock().sessions.values().any(|e| e.tsih == tsih)
    }

    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The live sessions, in TSIH order.
    pub fn list(&self) -> Vec<SessionSummary> {
        let mut v: Vec<SessionSummary> = self
            .lock()
            .sessions
            .iter()
            .map(|(k, e)| SessionSummary {
                tsih: e.tsih,
                initiator: k.initiator.clone(),
                isid: k.isid,
                target: k.target,
                peer: e.peer,
                since: e.since,
            })
            .collect();
        v.sort_by_key(|s| s.tsih);
        v
    }

    /// Tell the session with this TSIH to end (its connection is closed, its tasks aborted). False when there is
    /// none.
    pub fn close(&self, tsih: u16) -> bool {
        let inner = self.lock();
        match inner.sessions.values().find(|e| e.tsih == tsih) {
            Some(e) => {
                let _ = e.kill.send(true);
                true
            }
            None => false,
        }
    }

    /// Registers a new session, first ending any live session with the same key.
    pub async fn register(&self, key: SessionKey) -> SessionGuard<'_> {
        self.register_from(key, None).await
    }

    /// [`SessionTable::register`] for a connection from `peer`.
    pub async fn register_from(&self, key: SessionKey, peer: Option<std::net::SocketAddr>) -> SessionGuard<'_> {
        let old = {
            let mut inner = self.lock();
            inner.sessions.get_mut(&key).map(|e| {
                // Tell the old session to end; wait for it outside the lock.
                let _ = e.kill.send(true);
                e.closed.take()
            })
        };
        if let Some(Some(closed)) = old {
            // Err means the old guard was dropped: exactly the signal awaited.
            let _ = tokio::time::timeout(REINSTATE_WAIT, closed).await;
        }
        let mut inner = self.lock();
        // TSIH 0 is reserved for "new session" (RFC 7143 §11.12.6); skip live values.
        let mut tsih = inner.next_tsih;
        loop {
            tsih = tsih.wrapping_add(1);
            if tsih != 0 && !inner.sessions.values().any(|e| e.tsih == tsih) {
                break;
            }
        }
        inner.next_tsih = tsih;
        let (kill_tx, kill_rx) = watch::channel(false);
        let (closed_tx, closed_rx) = oneshot::channel();
        let since = std::time::SystemTime::now();
        inner.sessions.insert(key.clone(), Entry { tsih, peer, since, kill: kill_tx, closed: Some(closed_rx) });
        SessionGuard { table: self, key, tsih, kill: kill_rx, _closed: closed_tx }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(isid: u8) -> SessionKey {
        SessionKey { initiator: "iqn.i".into(), isid: [isid; 6], target: Some(0) }
    }

    #[tokio::test]
    async fn tsih_values_are_distinct_and_nonzero() {
        let t = SessionTable::default();
        let a = t.register(key(1)).await;
        let b = t.register(key(2)).await;
        assert_ne!(a.tsih, 0);
        assert_ne!(a.tsih, b.tsih);
        assert!(t.tsih_exists(a.tsih));
        drop(a);
        assert_eq!(t.len(), 1);
    }

    #[tokio::test]
    async fn same_isid_reinstates_after_old_session_ends() {
        let t = std::sync::Arc::new(SessionTable::default());
        let old = t.register(key(1)).await;
        let mut kill = old.kill.clone();
        let t2 = t.clone();
        let new = tokio::spawn(async move { t2.register(key(1)).await.tsih });
        // The old session sees the kill signal, then ends.
        let _ = tokio::time::timeout(Duration::from_secs(5), kill.changed()).await;
        assert!(*kill.borrow());
        let old_tsih = old.tsih;
        drop(old);
        let new_tsih = tokio::time::timeout(Duration::from_secs(5), new).await;
        let Ok(Ok(new_tsih)) = new_tsih else {
            panic!("reinstating login did not finish");
        };
        assert_ne!(new_tsih, old_tsih);
        assert!(!t.tsih_exists(old_tsih));
    }
}
