//! The running agent: journal, production line, upstream link and staff console,
//! assembled from the station configuration. Assembly only: the run loop that opens
//! the devices and waits for the stop signal lives in `service::run`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::config::{KeyStoreChoice, StationConfig};
use crate::job::pipeline::{Devices, Station};
use crate::job::production::Production;
use crate::journal::{Journal, JournalOptions, NewJob};
use crate::link::backoff::Backoff;
use crate::link::client::{LinkClient, LinkConfig};
use crate::link::outbox::{run_heartbeat, EventSender, HealthSource, SenderOptions};
use crate::link::poller::{run_order_poller, OrderIntake};
use crate::link::wire::{DeviceHealth, Heartbeat, StationOrder};
use crate::order::StationKeyring;
use crate::plastic::face::Layout;
use station_emv::data::profile::ProfileSet;
use station_emv::gp::scp::SecurityLevel;
use station_emv::keys::{KeyStore, Pkcs11KeyStore, SoftwareKeyStore};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A configured file or key could not be used.
    #[error("{0}")]
    Setup(String),
    /// A device could not be opened.
    #[error("device: {0}")]
    Device(String),
    /// The journal could not be opened.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
}

impl AgentError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            AgentError::Setup(_) => "AGENT_SETUP",
            AgentError::Device(_) => "AGENT_DEVICE",
            AgentError::Journal(_) => "AGENT_JOURNAL",
        }
    }
}

fn setup(what: &str, e: impl std::fmt::Display) -> AgentError {
    AgentError::Setup(format!("{what}: {e}"))
}

/// Opens the configured issuer key store, refusing the public development keys on a
/// station that is not a development one.
pub fn open_key_store(cfg: &StationConfig) -> Result<Arc<dyn KeyStore>, AgentError> {
    let dev = cfg.keys.development;
    let refuse = |key: &str| {
        setup(
            key,
            "holds the public development keys, which make test cards only: load the issuer's \
             keys, or set [keys] development = true on a development station",
        )
    };
    match cfg.key_store().map_err(|e| setup("keys", e))? {
        KeyStoreChoice::Software(path) => {
            let ks = SoftwareKeyStore::load(&path).map_err(|e| setup("keys.keystore", e))?;
            if !dev && ks.holds_development_keys() {
                return Err(refuse("keys.keystore"));
            }
            Ok(Arc::new(ks))
        }
        KeyStoreChoice::Pkcs11(p11) => {
            let ks = Pkcs11KeyStore::open(&p11).map_err(|e| setup("keys.pkcs11", e))?;
            if !dev
                && ks
                    .holds_development_keys()
                    .map_err(|e| setup("keys.pkcs11", e))?
            {
                return Err(refuse("keys.pkcs11"));
            }
            Ok(Arc::new(ks))
        }
    }
}

/// Builds the production set-up (keys, profiles, layout) from the configuration.
pub fn production_from_config(cfg: &StationConfig) -> Result<Production, AgentError> {
    let jwks: Vec<_> = cfg
        .keys
        .station_jwe
        .iter()
        .map(|p| cfg.resolve(p))
        .collect();
    let keyring =
        StationKeyring::from_jwk_files(&jwks).map_err(|e| setup("keys.station_jwe", e))?;
    let keystore = open_key_store(cfg)?;
    let profiles = match &cfg.production.profiles_dir {
        Some(dir) => ProfileSet::with_dir(&cfg.resolve(dir))
            .map_err(|e| setup("production.profiles_dir", e))?,
        None => ProfileSet::builtin().map_err(|e| setup("EMV profiles", e))?,
    };
    let layout = match &cfg.production.layout {
        Some(p) => Layout::load(&cfg.resolve(p)).map_err(|e| setup("production.layout", e))?,
        None => Layout::standard(),
    };
    Ok(Production {
        station_id: cfg.station.perso_station.clone(),
        keyring,
        keystore,
        profiles,
        layout,
        artwork_dir: cfg.production.artwork_dir.as_ref().map(|p| cfg.resolve(p)),
        default_card_product: cfg.production.default_card_product.clone(),
        level: SecurityLevel::CDEC_CMAC,
    })
}

/// Opens the printer and encoder of every configured line.
pub async fn open_devices(cfg: &StationConfig) -> Result<Vec<Devices>, AgentError> {
    let mut lines = Vec::new();
    for (i, line) in cfg.devices.line.iter().enumerate() {
        let printer = station_evolis::EvolisPrinter::open(
            &line.printer.device,
            line.printer.model.as_deref(),
        )
        .await
        .map_err(|e| {
            AgentError::Device(format!(
                "line {} printer {}: {e}",
                line.name, line.printer.device
            ))
        })?;
        let reader = station_pcsc::ReaderConfig::new(&line.encoder.reader)
            .map_err(|e| setup(&format!("devices.line[{i}].encoder.reader"), e))?;
        let encoder = station_pcsc::PcscEncoder::open(reader).await.map_err(|e| {
            AgentError::Device(format!(
                "line {} encoder {}: {e}",
                line.name, line.encoder.reader
            ))
        })?;
        lines.push(Devices {
            line: line.name.clone(),
            printer: Box::new(printer),
            encoder: Box::new(encoder),
            chip_wait: Duration::from_secs(cfg.production.chip_wait_seconds),
        });
    }
    Ok(lines)
}

/// Orders polled from the hub go into the journal (duplicates are ignored there).
struct Intake {
    station: Arc<Station>,
    issuer_id: String,
}

impl OrderIntake for Intake {
    fn accept(&self, order: StationOrder) {
        let job = NewJob {
            operation_id: order.operation_id.clone(),
            issuer_id: if order.issuer_id.is_empty() {
                self.issuer_id.clone()
            } else {
                order.issuer_id
            },
            card_id: order.card_id,
            perso_station: self.station.production.station_id.clone(),
            order_json: order.order,
        };
        self.station.intake_queued(job);
    }
}

struct Health {
    station: Arc<Station>,
}

impl HealthSource for Health {
    fn heartbeat(&self) -> Heartbeat {
        let devices = self
            .station
            .lines()
            .into_iter()
            .map(|(line, problem)| DeviceHealth {
                kind: "printer".into(),
                name: format!("card printer {line}"),
                status: if problem.is_some() { "DOWN" } else { "OK" }.into(),
                faults: problem.into_iter().collect(),
            })
            .collect();
        Heartbeat {
            time: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            devices,
            card_stock: None,
        }
    }
}

/// A running agent.
pub struct Agent {
    /// The station (journal, queue, progress).
    pub station: Arc<Station>,
    /// The Pismo counter, when the configuration has a `[pismo]` section.
    pub pismo: Option<Arc<crate::pismo::PismoDesk>>,
    /// Where the staff console listens.
    pub console_addr: SocketAddr,
    /// Where `/live`, `/ready` and `/metrics` are served.
    pub admin_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Agent {
    /// Starts every task: preparer, producer, link (orders, reports, heartbeat), console.
    pub async fn start(cfg: &StationConfig, lines: Vec<Devices>) -> Result<Agent, AgentError> {
        let journal = Arc::new(Journal::open_with(
            &cfg.resolve(&cfg.journal.path),
            JournalOptions {
                retention: Duration::from_secs(cfg.journal.retention_days as u64 * 86_400),
            },
        )?);
        for j in journal.recover_after_restart()? {
            tracing::warn!(operation_id = %j.operation_id, "card in doubt after a restart: staff must confirm or spoil it");
        }
        let production = Arc::new(production_from_config(cfg)?);
        let station = Station::new(journal.clone(), production, cfg.policy.start);
        let (stop, rx) = watch::channel(false);
        let mut tasks = Vec::new();

        let s = station.clone();
        let r = rx.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = s.run_preparer(r).await {
                tracing::error!(error = %e, "preparer stopped");
            }
        }));
        for devices in lines {
            let s = station.clone();
            let r = rx.clone();
            tasks.push(tokio::spawn(async move {
                let line = devices.line.clone();
                if let Err(e) = s.run_producer(devices, r).await {
                    tracing::error!(line = %line, error = %e, "production stopped");
                }
            }));
        }

        let client = Arc::new(
            LinkClient::new(
                LinkConfig::from_station_config(cfg).map_err(|e| setup("upstream", e))?,
            )
            .map_err(|e| setup("upstream", e))?,
        );
        let intake: Arc<dyn OrderIntake> = Arc::new(Intake {
            station: station.clone(),
            issuer_id: cfg.station.issuer_id.clone(),
        });
        tasks.push(tokio::spawn(run_order_poller(
            client.clone(),
            intake,
            Duration::from_secs(20),
            Backoff::new(Duration::from_millis(500), Duration::from_secs(60)),
            rx.clone(),
        )));
        let wake = Arc::new(Notify::new());
        let sender = EventSender::new(client.clone(), journal.clone(), SenderOptions::default());
        tasks.push(tokio::spawn(sender.run(wake.clone(), rx.clone())));
        // Every state change may have written a report: wake the sender.
        let mut progress = station.subscribe();
        let mut r = rx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    p = progress.recv() => match p {
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => wake.notify_one(),
                        Err(_) => return,
                    },
                    _ = r.wait_for(|s| *s) => return,
                }
            }
        }));
        tasks.push(tokio::spawn(run_heartbeat(
            client,
            Arc::new(Health {
                station: station.clone(),
            }),
            Duration::from_secs(60),
            rx.clone(),
        )));

        let listener = tokio::net::TcpListener::bind(&cfg.console.listen)
            .await
            .map_err(|e| setup(&format!("console.listen {}", cfg.console.listen), e))?;
        let console_addr = listener.local_addr().map_err(|e| setup("console", e))?;
        let access = match &cfg.console.staff {
            Some(p) => crate::console::Access::Staff(
                crate::console::staff::StaffDesk::watching(&cfg.resolve(p))
                    .map_err(|e| setup("console.staff", e))?,
            ),
            None => crate::console::Access::Anonymous,
        };
        // Pismo counter requests (issue 12): resumed now and every 30 s until done.
        let pismo = match &cfg.pismo {
            Some(section) => {
                let desk = Arc::new(
                    crate::pismo::PismoDesk::from_section(
                        section,
                        &cfg.resolve(&section.client_secret_file),
                        station.journal_thread().clone(),
                    )
                    .map_err(|e| setup("pismo", e))?,
                );
                tasks.push(tokio::spawn(crate::pismo::counter::run_resumer(
                    desk.clone(),
                    Duration::from_secs(30),
                    rx.clone(),
                )));
                Some(desk)
            }
            None => None,
        };
        let app = crate::console::router_with_pismo(
            station.clone(),
            access,
            crate::console::origin::ServerNames::with(&cfg.console.server_names),
            pismo.clone(),
        );
        let mut r = rx.clone();
        let stopped = async move {
            let _ = r.wait_for(|s| *s).await;
        };
        // With `[console.tls]` the console speaks HTTPS itself (required off loopback
        // unless a TLS proxy is in front; the configuration check says which).
        tasks.push(match &cfg.console.tls {
            Some(t) => {
                let config =
                    crate::tls::server_config(&cfg.resolve(&t.certificate), &cfg.resolve(&t.key))
                        .map_err(|e| setup("console.tls", e))?;
                let tls = crate::console::tls::TlsListener::new(listener, config)
                    .map_err(|e| setup("console.tls", e))?;
                let app = app.layer(axum::middleware::map_response(
                    crate::console::tls::strict_transport,
                ));
                tokio::spawn(async move {
                    let _ = axum::serve(tls, app).with_graceful_shutdown(stopped).await;
                })
            }
            None => tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(stopped)
                    .await;
            }),
        });
        let (admin_addr, admin) = crate::admin::serve(cfg, station.clone(), rx.clone())
            .await
            .map_err(|e| setup(e.code(), e))?;
        tasks.push(admin);
        Ok(Agent {
            station,
            pismo,
            console_addr,
            admin_addr,
            stop,
            tasks,
        })
    }

    /// Stops after the card in progress (the producer checks between cards).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Stops at once, as a crash would (tests of restart behaviour).
    pub fn abort(self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
