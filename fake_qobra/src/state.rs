//! The state every connection shares: tables and imports, fault rules, the request log,
//! the settings and counters, the API key and the stop signal. The server and the handlers use it; it uses neither.

use crate::faults::Faults;
use crate::reqlog::RequestLog;
use crate::settings::{Initial, Settings, Stats};
use crate::store::Store;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;

/// State shared by the listener, every connection and every handler.
pub struct Shared {
    pub store: Arc<Store>,
    pub faults: Faults,
    pub log: RequestLog,
    pub settings: Settings,
    pub stats: Stats,
    /// The address actually bound.
    pub addr: SocketAddr,
    /// Whether the server speaks HTTPS.
    pub tls: bool,
    api_key: String,
    /// `true` once the server is stopping; connections and waiting handlers watch it.
    stop: watch::Sender<bool>,
}

impl Shared {
    /// Fresh state for a server on `addr` (speaking HTTPS when `tls`) that accepts `api_key`,
    /// with these settings.
    pub fn new(
        store: Arc<Store>,
        api_key: &str,
        addr: SocketAddr,
        tls: bool,
        initial: Initial,
    ) -> Shared {
        Shared {
            store,
            faults: Faults::default(),
            log: RequestLog::default(),
            settings: Settings::new(initial),
            stats: Stats::default(),
            addr,
            tls,
            api_key: api_key.to_string(),
            stop: watch::Sender::new(false),
        }
    }

    /// Whether `sent` (an `X-API-Key` value, if any) is the server's key.
    pub fn key_matches(&self, sent: Option<&[u8]>) -> bool {
        sent == Some(self.api_key.as_bytes())
    }

    /// Asks the server to stop: the listener, the launcher and every connection end.
    /// Callable from any thread, inside the runtime or not.
    pub fn request_stop(&self) {
        if self.stop.send_replace(true) {
            return;
        }
        self.store.stop();
    }

    /// Resolves once the server is stopping (at once if it already is).
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.stop.subscribe();
        async move {
            // An error means the sender is gone, which only happens once the server is.
            let _ = rx.wait_for(|stopping| *stopping).await;
        }
    }
}
