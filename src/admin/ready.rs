//! `/ready`: the journal opens, every configured line's printer and encoder answer,
//! and the hub is reachable or no status report has been waiting too long.

use std::time::Duration;

use serde::Serialize;

use super::metrics::{open_journal, outbox_depth, OutboxDepth};
use super::Monitor;

/// An undelivered report older than this means the outbox is not draining.
pub const OUTBOX_STALE: Duration = Duration::from_secs(300);

/// How long the hub gets to accept a TCP connection.
const UPSTREAM_PROBE: Duration = Duration::from_secs(2);

/// One readiness condition and its reason in words.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked: `journal`, `line <name>`, `upstream`.
    pub check: String,
    /// Whether it holds.
    pub ok: bool,
    /// Why, in words an operator can act on.
    pub reason: String,
}

/// The `/ready` body.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    /// Every check holds.
    pub ready: bool,
    /// Each check with its reason.
    pub checks: Vec<Check>,
}

fn check(name: impl Into<String>, ok: bool, reason: impl Into<String>) -> Check {
    Check {
        check: name.into(),
        ok,
        reason: reason.into(),
    }
}

/// Runs every check.
pub async fn check_all(m: &Monitor) -> Readiness {
    let path = m.journal.clone();
    let journal = tokio::task::spawn_blocking(move || {
        let conn = open_journal(&path).map_err(|e| e.to_string())?;
        outbox_depth(&conn).map_err(|e| format!("cannot read the journal: {e}"))
    })
    .await
    .unwrap_or_else(|e| Err(format!("journal check failed: {e}")));

    let mut checks = vec![match &journal {
        Ok(_) => check("journal", true, "journal open"),
        Err(e) => check("journal", false, e.clone()),
    }];

    let health: std::collections::BTreeMap<_, _> = m.station.lines().into_iter().collect();
    for line in &m.lines {
        let name = format!("line {line}");
        checks.push(match health.get(line) {
            Some(None) => check(name, true, "printer and encoder answering"),
            Some(Some(problem)) => check(name, false, problem.clone()),
            None => check(name, false, "production has not started on this line yet"),
        });
    }

    for (task, why) in m.station.tasks_down() {
        checks.push(check(
            format!("task {task}"),
            false,
            format!("stopped: {why}"),
        ));
    }
    checks.push(upstream(&m.upstream, journal.ok()).await);
    Readiness {
        ready: checks.iter().all(|c| c.ok),
        checks,
    }
}

/// The hub accepts connections, or the reports waiting for it are all recent.
async fn upstream(url: &str, outbox: Option<OutboxDepth>) -> Check {
    let reached = match hub_address(url) {
        Some(addr) => {
            match tokio::time::timeout(UPSTREAM_PROBE, tokio::net::TcpStream::connect(&addr)).await
            {
                Ok(Ok(_)) => Ok(addr),
                Ok(Err(e)) => Err(format!("hub {addr} not reachable ({e})")),
                Err(_) => Err(format!(
                    "hub {addr} not reachable (no answer within {} s)",
                    UPSTREAM_PROBE.as_secs()
                )),
            }
        }
        None => Err(format!("upstream.url {url} names no host")),
    };
    match (reached, outbox) {
        (Ok(addr), _) => check("upstream", true, format!("hub {addr} reachable")),
        (Err(why), Some(o)) if o.oldest.map_or(true, |age| age < OUTBOX_STALE) => check(
            "upstream",
            true,
            format!(
                "{why}; outbox draining: {} report(s) waiting, none older than {} s",
                o.waiting,
                OUTBOX_STALE.as_secs()
            ),
        ),
        (Err(why), Some(o)) => check(
            "upstream",
            false,
            format!(
                "{why}; {} report(s) waiting, the oldest for {} s",
                o.waiting,
                o.oldest.unwrap_or_default().as_secs()
            ),
        ),
        (Err(why), None) => check("upstream", false, format!("{why}; outbox unreadable")),
    }
}

/// `host:port` of the hub URL.
fn hub_address(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hub_address_defaults_to_the_scheme_port() {
        assert_eq!(
            hub_address("https://hub.example/api").as_deref(),
            Some("hub.example:443")
        );
        assert_eq!(
            hub_address("http://127.0.0.1:8480").as_deref(),
            Some("127.0.0.1:8480")
        );
    }

    #[tokio::test]
    async fn an_unreachable_hub_with_a_stale_report_is_not_ready() {
        let stale = OutboxDepth {
            waiting: 1,
            oldest: Some(OUTBOX_STALE * 2),
            parked: 0,
        };
        let c = upstream("http://127.0.0.1:1", Some(stale)).await;
        assert!(!c.ok, "{}", c.reason);
        assert!(c.reason.contains("600 s"), "{}", c.reason);
    }

    #[tokio::test]
    async fn an_unreachable_hub_with_an_empty_outbox_is_ready() {
        let empty = OutboxDepth {
            waiting: 0,
            oldest: None,
            parked: 0,
        };
        let c = upstream("http://127.0.0.1:1", Some(empty)).await;
        assert!(c.ok, "{}", c.reason);
        assert!(c.reason.contains("not reachable"), "{}", c.reason);
    }
}
