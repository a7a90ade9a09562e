//! The bridge's connection to NATS: options from its [`Settings`]
//! (credentials, TLS, reconnecting with a capped backoff for ever), and
//! its state as a [`watch`] the other tasks wait on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};
use tokio::sync::watch;

use crate::settings::Settings;

/// Messages a subscription holds before NATS drops them for this client.
const SUBSCRIPTION_CAPACITY: usize = 65_536;
/// The largest message a server takes unless it says otherwise.
pub(crate) const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;

/// The longest wait between two reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// Not connected yet.
    Connecting,
    /// Connected.
    Connected,
    /// Lost; reconnecting.
    Disconnected,
}

impl Link {
    /// Its name in `status` and `ps`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Link::Connecting => "connecting",
            Link::Connected => "connected",
            Link::Disconnected => "disconnected",
        }
    }
}

/// The connection and what is known of it.
#[derive(Debug, Clone)]
pub(crate) struct Nats {
    /// The client (usable while disconnected: it reconnects).
    pub(crate) client: Client,
    /// Its state.
    pub(crate) link: watch::Receiver<Link>,
    /// How many times it connected again after losing the server.
    pub(crate) reconnects: Arc<AtomicU64>,
}

impl Nats {
    /// Connects, or goes on trying in the background: the bridge runs
    /// whether NATS is there or not.
    pub(crate) async fn connect(settings: &Settings) -> Result<Self, String> {
        let (tx, link) = watch::channel(Link::Connecting);
        let reconnects = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&reconnects);
        let options = options(settings).await?.event_callback(move |event| {
            let tx = tx.clone();
            let counted = Arc::clone(&counted);
            async move {
                match event {
                    Event::Connected => {
                        if *tx.borrow() == Link::Disconnected {
                            counted.fetch_add(1, Ordering::Relaxed);
                        }
                        tx.send_replace(Link::Connected);
                    }
                    Event::Disconnected | Event::Closed => {
                        tx.send_replace(Link::Disconnected);
                    }
                    other => eprintln!("nats-bridge: NATS: {other}"),
                }
            }
        });
        let client = options
            .connect(settings.url.as_str())
            .await
            .map_err(|e| format!("url `{}`: {e}", settings.url))?;
        Ok(Self {
            client,
            link,
            reconnects,
        })
    }

    /// Waits until it is connected; false if `stop` came first.
    pub(crate) async fn wait_connected(&self, stop: &corral_sdk::Stop) -> bool {
        let mut link = self.link.clone();
        while !self.connected() {
            tokio::select! {
                () = stop.stopped() => return false,
                _ = link.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        true
    }

    /// Where it stands now, as the client sees it.
    pub(crate) fn state(&self) -> Link {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => Link::Connected,
            _ if *self.link.borrow() == Link::Connecting => Link::Connecting,
            _ => Link::Disconnected,
        }
    }

    /// The largest message the server takes.
    pub(crate) fn max_payload(&self) -> usize {
        match self.client.server_info().max_payload {
            0 => DEFAULT_MAX_PAYLOAD,
            n => n,
        }
    }

    /// Whether it is connected now.
    pub(crate) fn connected(&self) -> bool {
        self.state() == Link::Connected
    }
}

async fn options(settings: &Settings) -> Result<ConnectOptions, String> {
    let mut options = match &settings.auth.credentials {
        Some(path) => ConnectOptions::new()
            .credentials_file(path)
            .await
            .map_err(|e| format!("credentials `{}`: {e}", path.display()))?,
        None => ConnectOptions::new(),
    };
    if let Some(token) = &settings.auth.token {
        options = options.token(token.clone());
    }
    if let Some((user, password)) = &settings.auth.user {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(seed) = &settings.auth.nkey {
        options = options.nkey(seed.clone());
    }
    if let Some(ca) = &settings.tls.ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &settings.tls.client {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(options
        .require_tls(settings.tls.required)
        .name(format!("corral nats-bridge {}", settings.node))
        .retry_on_initial_connect()
        // Its own exports never come back to it (they would only be
        // filtered out, in the subscription's room).
        .no_echo()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            let step = Duration::from_millis(50) * 2u32.saturating_pow(attempts.min(8) as u32);
            step.min(MAX_RECONNECT_DELAY)
        })
        .connection_timeout(Duration::from_secs(2))
        // A flood waits in NATS's own queues (and is dropped there, as a
        // slow consumer), not in this process.
        .subscription_capacity(SUBSCRIPTION_CAPACITY))
}
