//! `station-agent pismo request --customer ID --name "PRINTED NAME"`: the counter
//! flow from the command line, journaled like the console's.

use super::counter::PismoDesk;
use crate::config::StationConfig;

/// `pismo …` actions.
#[derive(Debug, clap::Subcommand)]
pub enum PismoAction {
    /// Ask Pismo for a card for a customer and send it to this branch's embosser.
    Request {
        /// Pismo customer id.
        #[arg(long)]
        customer: String,
        /// Name printed on the card (letters and spaces, 2 to 26).
        #[arg(long)]
        name: String,
        /// Product (default: the first of pismo.products).
        #[arg(long)]
        product: Option<String>,
    },
    /// Take an unfinished request further (after "Pismo cannot be reached", for example).
    Retry {
        /// Request id printed by `pismo request`.
        request: String,
    },
    /// List recent requests.
    List,
}

/// Why a `pismo` command failed: bad input (exit 2) or the operation (exit 1).
#[derive(Debug)]
pub enum CliFailure {
    /// Bad input or configuration.
    Usage(String),
    /// Pismo, the journal or the network failed.
    Runtime(String),
}

impl From<String> for CliFailure {
    fn from(s: String) -> Self {
        CliFailure::Runtime(s)
    }
}

impl From<&str> for CliFailure {
    fn from(s: &str) -> Self {
        CliFailure::Usage(s.to_string())
    }
}

fn failure(e: &super::PismoError) -> CliFailure {
    let m = format!("[{}] {e}", e.code());
    match e {
        super::PismoError::Field(_) | super::PismoError::Config(_) => CliFailure::Usage(m),
        _ => CliFailure::Runtime(m),
    }
}

/// Run a `pismo` action with the station configuration; the failure carries the staff message.
pub async fn run(cfg: &StationConfig, action: PismoAction) -> Result<(), CliFailure> {
    let section = cfg
        .pismo
        .as_ref()
        .ok_or("the configuration has no [pismo] section")?;
    let desk = PismoDesk::from_section(
        section,
        &cfg.resolve(&section.client_secret_file),
        &cfg.resolve(&cfg.journal.path),
    )
    .map_err(|e| failure(&e))?;
    let show = |r: &super::CounterRequest| {
        println!(
            "{}  customer {}  {}  card {}  {}{}",
            r.request_id,
            r.customer_id,
            r.printed_name,
            r.card_id
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            r.step.label(),
            r.message
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        )
    };
    let drive = |id: String| {
        let desk = &desk;
        async move {
            desk.drive(&id).await.map_err(|e| {
                if e.is_retryable() {
                    CliFailure::Runtime(format!("[{}] {e}\nrequest {id} is journaled: `station-agent pismo retry {id}` takes it further", e.code()))
                } else {
                    failure(&e)
                }
            })
        }
    };
    match action {
        PismoAction::Request {
            customer,
            name,
            product,
        } => {
            let r = desk
                .request(&customer, &name, product.as_deref(), "cli")
                .await
                .map_err(|e| failure(&e))?;
            println!("request {} journaled", r.request_id);
            let r = drive(r.request_id).await?;
            show(&r);
            Ok(())
        }
        PismoAction::Retry { request } => {
            let r = drive(request).await?;
            show(&r);
            Ok(())
        }
        PismoAction::List => {
            for r in desk.store().recent(50).map_err(|e| failure(&e))? {
                show(&r);
            }
            Ok(())
        }
    }
}
