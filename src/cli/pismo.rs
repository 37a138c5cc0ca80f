//! `pismo …`: the counter flow from the command line
//! (`station-agent pismo request --customer ID --name "PRINTED NAME"`), journaled like
//! the console's.

#[allow(unused_imports)]
use super::*;

use std::sync::Arc;

use crate::journal::{Journal, JournalThread};
use crate::pismo::{CounterRequest, PismoDesk, PismoError};

/// `pismo …` actions.
#[derive(Debug, Subcommand)]
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

/// Bad input or configuration is a usage failure (exit 2); the rest is the operation's (exit 1).
fn failure(e: &PismoError) -> Failure {
    let m = format!("[{}] {e}", e.code());
    match e {
        PismoError::Field(_) | PismoError::Config(_) => usage(m),
        _ => runtime(m),
    }
}

fn show(r: &CounterRequest) {
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
}

/// Drive a request as far as it goes now; a retryable failure says how to take it further.
async fn drive(desk: &PismoDesk, id: &str) -> Result<CounterRequest, Failure> {
    desk.drive(id).await.map_err(|e| {
        if e.is_retryable() {
            runtime(format!(
                "[{}] {e}\nrequest {id} is journaled: `station-agent pismo retry {id}` takes it further",
                e.code()
            ))
        } else {
            failure(&e)
        }
    })
}

pub(super) async fn pismo(explicit: Option<&Path>, action: PismoAction) -> Outcome {
    let cfg = load_config(explicit)?;
    let section = cfg
        .pismo
        .as_ref()
        .ok_or_else(|| usage("the configuration has no [pismo] section"))?;
    crate::logging::init("warn", crate::config::LogFormat::Text);
    let journal = Journal::open(&cfg.resolve(&cfg.journal.path))
        .map_err(|e| runtime(format!("[{}] {e}", e.code())))?;
    let desk = PismoDesk::from_section(
        section,
        &cfg.resolve(&section.client_secret_file),
        JournalThread::start(Arc::new(journal)),
    )
    .map_err(|e| failure(&e))?;
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
            show(&drive(&desk, &r.request_id).await?);
            Ok(())
        }
        PismoAction::Retry { request } => {
            show(&drive(&desk, &request).await?);
            Ok(())
        }
        PismoAction::List => {
            for r in desk.store().recent(50).await.map_err(|e| failure(&e))? {
                show(&r);
            }
            Ok(())
        }
    }
}
