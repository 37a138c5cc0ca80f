//! The agent's run loop, the same under a service manager and in a terminal: open the
//! devices, start the assembled agent, say it is ready, wait for the stop signal, stop
//! after the card in progress — or exit non-zero at once when the journal fails, so the
//! service manager restarts the agent.

use crate::agent::{open_devices, Agent, AgentError};
use crate::config::StationConfig;

/// Runs the agent until SIGTERM/Ctrl-C (or the Windows service stop).
pub async fn run(cfg: StationConfig) -> Result<(), AgentError> {
    let lines = open_devices(&cfg).await?;
    let mut agent = Agent::start(&cfg, lines).await?;
    tracing::info!(console = %agent.console_addr, admin = %agent.admin_addr, station = %cfg.station.perso_station, "station agent ready");
    super::notify_ready();
    tokio::select! {
        _ = super::shutdown_signal() => {}
        why = agent.failed() => {
            // Exit non-zero: the service manager restarts the agent, and recovery
            // surfaces the card that was in the printer as in doubt.
            tracing::error!(reason = %why, "the journal failed: stopping so the agent restarts");
            agent.abort();
            return Err(AgentError::Fatal(why));
        }
    }
    super::notify_stopping(super::spec::CARD_STOP_GRACE);
    tracing::info!("stopping after the card in progress");
    agent.shutdown().await;
    Ok(())
}
