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
use crate::journal::upkeep::{run_upkeep, UPKEEP_EVERY};
use crate::journal::{InstanceLock, Journal, JournalOptions, NewJob};
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
    /// Another agent runs on this journal.
    #[error(transparent)]
    Locked(#[from] crate::journal::LockError),
    /// A task stopped in a way only a restart can recover from (the journal failed).
    #[error("stopped: {0}; restarting lets recovery surface any card in doubt")]
    Fatal(String),
}

impl AgentError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            AgentError::Setup(_) => "AGENT_SETUP",
            AgentError::Device(_) => "AGENT_DEVICE",
            AgentError::Journal(_) => "AGENT_JOURNAL",
            AgentError::Locked(e) => e.code(),
            AgentError::Fatal(_) => "AGENT_FATAL",
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
            ks.check_icc_key_wrapping()
                .map_err(|e| setup("keys.pkcs11", e))?;
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
            .chain(
                self.station
                    .tasks_down()
                    .into_iter()
                    .map(|(task, why)| DeviceHealth {
                        kind: "agent".into(),
                        name: format!("agent task {task}"),
                        status: "DOWN".into(),
                        faults: vec![why],
                    }),
            )
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
    tasks: Vec<Supervised>,
    fatal: watch::Receiver<Option<String>>,
    _lock: InstanceLock,
}

/// How a supervised task ended.
enum TaskEnd {
    /// It returned (an error in words, if any, and whether the journal failed).
    Returned(Option<(String, bool)>),
}

/// A task and the watcher that reports its unexpected end.
struct Supervised {
    task: tokio::task::AbortHandle,
    watcher: JoinHandle<()>,
}

/// What a supervised task is, for the report of its end.
#[derive(Clone)]
enum Role {
    /// The producer of a line.
    Line(String),
    /// Any other task (name).
    Task(&'static str),
}

/// Spawns `fut` and a watcher: an end before `stop` (a return, an error or a panic)
/// marks its line or task down, and a journal failure raises `fatal`.
fn supervise(
    station: &Arc<Station>,
    role: Role,
    stop: &watch::Receiver<bool>,
    fatal: &Arc<watch::Sender<Option<String>>>,
    fut: TaskFuture,
) -> Supervised {
    let handle = tokio::spawn(fut);
    let task = handle.abort_handle();
    let (station, stop, fatal) = (station.clone(), stop.clone(), fatal.clone());
    let watcher = tokio::spawn(async move {
        let (why, journal) = match handle.await {
            Ok(TaskEnd::Returned(None)) if *stop.borrow() => return,
            Ok(TaskEnd::Returned(None)) => ("ended unexpectedly".to_string(), false),
            Ok(TaskEnd::Returned(Some((why, journal)))) => (why, journal),
            // Aborted by `Agent::abort` (a simulated crash): nothing to report.
            Err(e) if e.is_cancelled() => return,
            Err(e) => (
                format!(
                    "internal error: {}",
                    crate::logging::panic_message(e.into_panic().as_ref())
                ),
                false,
            ),
        };
        match &role {
            Role::Line(line) => {
                tracing::error!(line = %line, reason = %why, "production line down");
                station.mark_line_down(line, why.clone());
            }
            Role::Task(name) => {
                tracing::error!(task = %name, reason = %why, "agent task down");
                station.mark_task_down(name, why.clone());
            }
        }
        if journal {
            let _ = fatal.send(Some(why));
        }
    });
    Supervised { task, watcher }
}

/// A supervised task.
type TaskFuture = std::pin::Pin<Box<dyn std::future::Future<Output = TaskEnd> + Send>>;

/// A pipeline task's result as the supervisor reads it.
fn pipeline_end(r: Result<(), crate::job::pipeline::PipelineError>) -> TaskEnd {
    TaskEnd::Returned(
        r.err()
            .map(|e| (format!("{}: {e}", e.code()), e.is_journal())),
    )
}

/// A task that should only end on `stop`.
async fn until_stop(f: impl std::future::Future<Output = ()>) -> TaskEnd {
    f.await;
    TaskEnd::Returned(None)
}

impl Agent {
    /// Starts every task: preparer, producer, link (orders, reports, heartbeat), console.
    pub async fn start(cfg: &StationConfig, lines: Vec<Devices>) -> Result<Agent, AgentError> {
        let journal_path = cfg.resolve(&cfg.journal.path);
        // Before recovery: a second agent must not put the live agent's card in doubt.
        let lock = InstanceLock::acquire(&journal_path)?;
        let journal = Arc::new(Journal::open_with(
            &journal_path,
            JournalOptions {
                retention: Duration::from_secs(cfg.journal.retention_days as u64 * 86_400),
            },
        )?);
        for j in journal.recover_after_restart()? {
            tracing::warn!(operation_id = %j.operation_id, "card in doubt after a restart: staff must confirm or spoil it");
        }
        let production = Arc::new(production_from_config(cfg)?);
        let station = Station::with_rules(
            journal.clone(),
            production,
            cfg.policy.start,
            crate::job::pipeline::CounterRules {
                attempts: cfg.policy.attempts,
                stock: cfg.stock.clone(),
            },
        );
        let (stop, rx) = watch::channel(false);
        let (fatal_tx, fatal) = watch::channel(None);
        let fatal_tx = Arc::new(fatal_tx);
        let mut tasks = Vec::new();
        let st = station.clone();
        let mut watch =
            |role: Role, fut: TaskFuture| tasks.push(supervise(&st, role, &rx, &fatal_tx, fut));

        let s = station.clone();
        let r = rx.clone();
        watch(
            Role::Task("preparer"),
            Box::pin(async move { pipeline_end(s.run_preparer(r).await) }),
        );
        for devices in lines {
            let s = station.clone();
            let r = rx.clone();
            watch(
                Role::Line(devices.line.clone()),
                Box::pin(async move { pipeline_end(s.run_producer(devices, r).await) }),
            );
        }
        let (desk, r) = (station.journal_thread().clone(), rx.clone());
        watch(
            Role::Task("journal upkeep"),
            Box::pin(until_stop(async move {
                let _ = run_upkeep(desk, UPKEEP_EVERY, r).await;
            })),
        );

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
        watch(
            Role::Task("order poller"),
            Box::pin(until_stop(run_order_poller(
                client.clone(),
                intake,
                Duration::from_secs(20),
                Backoff::new(Duration::from_millis(500), Duration::from_secs(60)),
                rx.clone(),
            ))),
        );
        let wake = Arc::new(Notify::new());
        let sender = EventSender::new(client.clone(), journal.clone(), SenderOptions::default());
        watch(
            Role::Task("report sender"),
            Box::pin(until_stop(sender.run(wake.clone(), rx.clone()))),
        );
        // Every state change may have written a report: wake the sender.
        let mut progress = station.subscribe();
        let mut r = rx.clone();
        watch(
            Role::Task("report wake-up"),
            Box::pin(until_stop(async move {
                loop {
                    tokio::select! {
                        p = progress.recv() => match p {
                            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => wake.notify_one(),
                            Err(_) => return,
                        },
                        _ = r.wait_for(|s| *s) => return,
                    }
                }
            })),
        );
        watch(
            Role::Task("heartbeat"),
            Box::pin(until_stop(run_heartbeat(
                client,
                Arc::new(Health {
                    station: station.clone(),
                }),
                Duration::from_secs(60),
                rx.clone(),
            ))),
        );

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
                watch(
                    Role::Task("pismo counter requests"),
                    Box::pin(until_stop(crate::pismo::counter::run_resumer(
                        desk.clone(),
                        Duration::from_secs(30),
                        rx.clone(),
                    ))),
                );
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
        let console: TaskFuture = match &cfg.console.tls {
            Some(t) => {
                let config =
                    crate::tls::server_config(&cfg.resolve(&t.certificate), &cfg.resolve(&t.key))
                        .map_err(|e| setup("console.tls", e))?;
                let tls = crate::console::tls::TlsListener::new(listener, config)
                    .map_err(|e| setup("console.tls", e))?;
                let app = app.layer(axum::middleware::map_response(
                    crate::console::tls::strict_transport,
                ));
                Box::pin(until_stop(async move {
                    let _ = axum::serve(tls, app).with_graceful_shutdown(stopped).await;
                }))
            }
            None => Box::pin(until_stop(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(stopped)
                    .await;
            })),
        };
        watch(Role::Task("staff console"), console);
        let (admin_addr, admin) = crate::admin::serve(cfg, station.clone(), rx.clone())
            .await
            .map_err(|e| setup(e.code(), e))?;
        watch(
            Role::Task("admin endpoints"),
            Box::pin(until_stop(async move {
                let _ = admin.await;
            })),
        );
        Ok(Agent {
            station,
            pismo,
            console_addr,
            admin_addr,
            stop,
            tasks,
            fatal,
            _lock: lock,
        })
    }

    /// Waits until a task fails in a way only a restart recovers from (the journal
    /// failed); returns why. Never returns while all is well.
    pub async fn failed(&mut self) -> String {
        match self.fatal.wait_for(|f| f.is_some()).await {
            Ok(f) => f.clone().unwrap_or_default(),
            // The senders live as long as the agent: unreachable, but not a reason to spin.
            Err(_) => std::future::pending().await,
        }
    }

    /// Stops after the card in progress (the producer checks between cards).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.watcher.await;
        }
    }

    /// Stops at once, as a crash would (tests of restart behaviour).
    pub fn abort(self) {
        for t in &self.tasks {
            t.task.abort();
        }
    }
}
