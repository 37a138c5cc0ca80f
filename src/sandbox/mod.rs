//! The sandbox hub: an embedded, persistent stand-in for the D1 order hub so a
//! station (and an issuer backend) can be exercised end to end without one.
//! It accepts D1 card orders, queues INSTANT orders for registered stations with
//! the card data re-encrypted to the station key, serves the station link and
//! notifies the issuer of production status.
//!
//! Choices where D1 is silent (documented in `docs/station-link.openapi.yaml`):
//! a re-order while the card's last PRODUCE is PENDING or SUCCESSFUL answers
//! 403 OPERATION_NOT_ALLOWED `cardId`; an INSTANT order for an unregistered
//! station answers 403 OPERATION_NOT_ALLOWED `persoStation`; `CARD_PROD_CANCELED`
//! makes the operation FAILED (so the card may be ordered again).

pub mod auth;
pub mod client;
pub mod config;
pub mod error;
pub mod hub;
pub mod keys;
pub mod notify;
pub mod pismo;
pub mod rules;
pub mod state;
pub mod store;

pub use config::{SandboxConfig, SandboxFile, StationEntry};
pub use error::{HubError, SandboxError};
pub use hub::{router, served_routes, Hub};
pub use rules::{CardJson, D1Rules, OrderRules};
pub use state::{init_state, StateFiles, DEV_ISSUER_ID};

use auth::{AuthBook, Principal};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use zeroize::Zeroizing;

/// A running sandbox hub.
pub struct SandboxHandle {
    addr: SocketAddr,
    hub: Arc<Hub>,
    pismo: Arc<pismo::PismoSandbox>,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl SandboxHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` of the hub.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The hub's shared state (store, tokens), for inspection.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The Pismo sandbox served on the same listener.
    pub fn pismo(&self) -> &Arc<pismo::PismoSandbox> {
        &self.pismo
    }

    /// Stop serving and wait for the server task to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
    }

    /// Wait until the server stops on its own (it only does on error).
    pub async fn wait(self) -> Result<(), SandboxError> {
        let addr = self.addr.to_string();
        match self.server.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SandboxError::Listen {
                addr,
                reason: e.to_string(),
            }),
            Err(e) => Err(SandboxError::Listen {
                addr,
                reason: e.to_string(),
            }),
        }
    }
}

/// Build the hub from the state directory (created if new) with the given order rules.
pub fn open_hub(
    files: &StateFiles,
    rules: Arc<dyn OrderRules>,
) -> Result<(Hub, SandboxFile), SandboxError> {
    let file = files.load_config()?;
    let dev = files.load_dev_issuer()?;
    let mut book = AuthBook::new();
    let dev_public = keys::read_text(&files.dev_issuer_public_jwk)?;
    book.register(
        Principal::Issuer(dev.issuer_id.clone()),
        &dev.issuer_id,
        &dev_public,
    )
    .map_err(SandboxError::Config)?;
    for s in &file.stations {
        book.register(
            Principal::Station(s.perso_station.clone()),
            &s.client_id,
            &s.client_jwk,
        )
        .map_err(|e| SandboxError::Config(format!("station {}: {e}", s.perso_station)))?;
    }
    let store = store::HubStore::open(&files.database)?;
    let public = keys::read_text(&files.hub_public_jwk)?;
    let signer = {
        let private = zeroize::Zeroizing::new(keys::read_text(&files.order_signing_private_jwk)?);
        crate::link::OrderSigner::from_private_jwk(&private)
            .map_err(|e| SandboxError::Keys(e.to_string()))?
    };
    let signing_public = keys::read_text(&files.order_signing_public_jwk)?;
    Ok((
        Hub::new(
            store,
            book,
            public,
            (signer, signing_public),
            file.stations.clone(),
            rules,
        ),
        file,
    ))
}

/// Start the hub on `config.listen` with the given order rules; returns once listening.
pub async fn start_with_rules(
    config: &SandboxConfig,
    rules: Arc<dyn OrderRules>,
) -> Result<SandboxHandle, SandboxError> {
    let files = init_state(&config.state_dir)?;
    let (hub, file) = open_hub(&files, rules)?;
    let hub = Arc::new(hub);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| SandboxError::Listen {
            addr: config.listen.to_string(),
            reason: e.to_string(),
        })?;
    let addr = listener.local_addr().map_err(|e| SandboxError::Listen {
        addr: config.listen.to_string(),
        reason: e.to_string(),
    })?;
    let (tx, rx) = watch::channel(false);
    if let Some(issuer_url) = file.issuer_url.clone() {
        let bearer = Zeroizing::new(keys::read_text(&files.notification_token)?);
        let cfg = notify::NotifierConfig {
            issuer_url,
            bearer,
            backoff: crate::link::Backoff::new(
                std::time::Duration::from_millis(200),
                std::time::Duration::from_secs(30),
            ),
            idle: std::time::Duration::from_secs(5),
        };
        tokio::spawn(notify::run_notifier(hub.clone(), cfg, rx.clone()));
    }
    let pismo = Arc::new(pismo::PismoSandbox::open(
        &files,
        hub.clone(),
        file.pismo.clone().unwrap_or_default(),
    )?);
    tokio::spawn(pismo::run_worker(pismo.clone(), rx.clone()));
    let app = router(hub.clone()).merge(pismo::router(pismo.clone()));
    let mut stop = rx;
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|v| *v).await;
            })
            .await
    });
    Ok(SandboxHandle {
        addr,
        hub,
        pismo,
        shutdown: tx,
        server,
    })
}

/// Print where the sandbox keeps its keys, for the operator starting it.
pub fn describe_state(files: &StateFiles, addr: SocketAddr) -> String {
    format!(
        "sandbox hub listening on http://{addr}\n  hub JWE public key: {}\n  development issuer credential: {} (issuer {})\n  stations: {}\n  database: {}\n  Pismo development client: {}",
        files.hub_public_jwk.display(),
        files.dev_issuer.display(),
        DEV_ISSUER_ID,
        files.config.display(),
        files.database.display(),
        pismo::dev_client_path(files).display()
    )
}

/// Run the hub until Ctrl-C: create the state on first start, print where the
/// keys are, serve, then shut down gracefully.
pub async fn run_with_rules(
    config: SandboxConfig,
    rules: Arc<dyn OrderRules>,
) -> Result<(), SandboxError> {
    let files = init_state(&config.state_dir)?;
    let mut handle = start_with_rules(&config, rules).await?;
    println!("{}", describe_state(&files, handle.local_addr()));
    let addr = handle.local_addr().to_string();
    tokio::select! {
        r = tokio::signal::ctrl_c() => {
            if let Err(e) = r {
                tracing::warn!("cannot wait for Ctrl-C: {e}");
            }
            handle.shutdown().await;
            Ok(())
        }
        r = &mut handle.server => Err(SandboxError::Listen {
            addr,
            reason: match r {
                Ok(Ok(())) => "server stopped".into(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            },
        }),
    }
}

/// Start the hub with the order module's D1 rules and the hub key of the state directory.
pub async fn start(config: &SandboxConfig) -> Result<SandboxHandle, SandboxError> {
    let files = init_state(&config.state_dir)?;
    let rules = Arc::new(D1Rules::from_state(&files)?);
    start_with_rules(config, rules).await
}

/// `station-agent sandbox --listen ADDR --state DIR`: run the hub with the D1 rules until Ctrl-C.
pub async fn run(config: SandboxConfig) -> Result<(), SandboxError> {
    let files = init_state(&config.state_dir)?;
    let rules = Arc::new(D1Rules::from_state(&files)?);
    run_with_rules(config, rules).await
}
