//! What the service tells the service manager at each phase, and what it does with
//! each control the manager sends. Plain data, so the rules are tested on every
//! platform; the Windows layer only translates these into the SCM's types.

use std::time::Duration;

/// How long the service manager should wait for the agent to become ready
/// (journal open, printer and encoder probed, console listening).
pub const START_WAIT_HINT: Duration = Duration::from_secs(60);

/// Service-specific exit code when the agent stopped on a failure (device, journal, keys).
pub const EXIT_AGENT_FAILED: u32 = 1;

/// Service-specific exit code when the configuration is missing or invalid.
pub const EXIT_CONFIG_INVALID: u32 = 2;

/// Where the service is in its life, as the agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Loading the configuration, opening the journal, probing the devices.
    Starting,
    /// Ready: the same point where systemd is told `READY=1`.
    Running,
    /// Finishing (or rejecting) the card in progress; may take up to `grace`.
    Stopping {
        /// The time the card in progress may still need.
        grace: Duration,
    },
    /// Stopped, cleanly or not.
    Stopped(ServiceExit),
}

/// How the service ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceExit {
    /// Stopped because it was asked to.
    Clean,
    /// Stopped on a failure, with a service-specific code
    /// ([`EXIT_AGENT_FAILED`], [`EXIT_CONFIG_INVALID`]).
    Failed(u32),
}

/// The service manager's state names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManagerState {
    /// START_PENDING.
    StartPending,
    /// RUNNING.
    Running,
    /// STOP_PENDING.
    StopPending,
    /// STOPPED.
    Stopped,
}

/// One status report for the service manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusReport {
    /// The state to report.
    pub state: ManagerState,
    /// Whether stop and (pre)shutdown controls are accepted in this state.
    pub accepts_stop: bool,
    /// How long until the next report before the manager may consider the service hung.
    pub wait_hint: Duration,
    /// Progress counter of a pending state; zero outside pending states.
    pub checkpoint: u32,
    /// The exit code, meaningful once stopped.
    pub exit: ServiceExit,
}

/// Turns phases into status reports, keeping the checkpoint counter the manager expects.
#[derive(Debug, Default)]
pub struct StatusSequence {
    checkpoint: u32,
}

impl StatusSequence {
    /// The report for `phase`; pending states count their checkpoint up, others reset it.
    pub fn report(&mut self, phase: Phase) -> StatusReport {
        let (state, accepts_stop, wait_hint, exit) = match phase {
            Phase::Starting => (
                ManagerState::StartPending,
                // The manager holds a stop back until RUNNING; the agent then stops at once.
                false,
                START_WAIT_HINT,
                ServiceExit::Clean,
            ),
            Phase::Running => (
                ManagerState::Running,
                true,
                Duration::ZERO,
                ServiceExit::Clean,
            ),
            Phase::Stopping { grace } => {
                (ManagerState::StopPending, false, grace, ServiceExit::Clean)
            }
            Phase::Stopped(exit) => (ManagerState::Stopped, false, Duration::ZERO, exit),
        };
        let checkpoint = match state {
            ManagerState::StartPending | ManagerState::StopPending => {
                self.checkpoint += 1;
                self.checkpoint
            }
            ManagerState::Running | ManagerState::Stopped => {
                self.checkpoint = 0;
                0
            }
        };
        StatusReport {
            state,
            accepts_stop,
            wait_hint,
            checkpoint,
            exit,
        }
    }
}

/// A control the service manager sends, in platform-neutral words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlRequest {
    /// An operator or an installer stops the service.
    Stop,
    /// The machine is shutting down (late notice, a few seconds).
    Shutdown,
    /// The machine is about to shut down (early notice, the preshutdown timeout).
    Preshutdown,
    /// The manager asks for the current status.
    Interrogate,
    /// Anything else (pause, parameter change, power and session events).
    Other,
}

/// What the service does with a control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlAction {
    /// Raise the process-wide stop: the agent finishes the card in progress and stops.
    BeginStop,
    /// Nothing to do; the last reported status stands.
    Acknowledge,
    /// Tell the manager this control is not handled.
    NotHandled,
}

/// The action for a control: every kind of stop ends in the same graceful stop.
pub fn action_for(request: ControlRequest) -> ControlAction {
    match request {
        ControlRequest::Stop | ControlRequest::Shutdown | ControlRequest::Preshutdown => {
            ControlAction::BeginStop
        }
        ControlRequest::Interrogate => ControlAction::Acknowledge,
        ControlRequest::Other => ControlAction::NotHandled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_shutdown_and_preshutdown_all_begin_the_graceful_stop() {
        for r in [
            ControlRequest::Stop,
            ControlRequest::Shutdown,
            ControlRequest::Preshutdown,
        ] {
            assert_eq!(action_for(r), ControlAction::BeginStop, "{r:?}");
        }
    }

    #[test]
    fn interrogate_is_acknowledged_and_other_controls_are_not_handled() {
        assert_eq!(
            action_for(ControlRequest::Interrogate),
            ControlAction::Acknowledge
        );
        assert_eq!(action_for(ControlRequest::Other), ControlAction::NotHandled);
    }

    #[test]
    fn starting_is_pending_with_the_start_wait_hint_and_refuses_stop() {
        let r = StatusSequence::default().report(Phase::Starting);
        assert_eq!(r.state, ManagerState::StartPending);
        assert_eq!(r.wait_hint, START_WAIT_HINT);
        assert_eq!(r.checkpoint, 1);
        assert!(!r.accepts_stop);
    }

    #[test]
    fn running_accepts_stop_and_resets_the_checkpoint() {
        let mut seq = StatusSequence::default();
        seq.report(Phase::Starting);
        let r = seq.report(Phase::Running);
        assert_eq!(r.state, ManagerState::Running);
        assert!(r.accepts_stop);
        assert_eq!(r.checkpoint, 0);
        assert_eq!(r.wait_hint, Duration::ZERO);
    }

    #[test]
    fn stopping_waits_as_long_as_the_card_in_progress_may_need() {
        let grace = Duration::from_secs(120);
        let mut seq = StatusSequence::default();
        seq.report(Phase::Running);
        let r = seq.report(Phase::Stopping { grace });
        assert_eq!(r.state, ManagerState::StopPending);
        assert_eq!(r.wait_hint, grace);
        assert_eq!(r.checkpoint, 1);
        assert!(!r.accepts_stop);
    }

    #[test]
    fn a_failed_agent_stops_with_its_service_specific_code() {
        let r = StatusSequence::default()
            .report(Phase::Stopped(ServiceExit::Failed(EXIT_AGENT_FAILED)));
        assert_eq!(r.state, ManagerState::Stopped);
        assert_eq!(r.exit, ServiceExit::Failed(EXIT_AGENT_FAILED));
        assert_eq!(r.checkpoint, 0);
    }

    #[test]
    fn a_requested_stop_ends_clean() {
        let r = StatusSequence::default().report(Phase::Stopped(ServiceExit::Clean));
        assert_eq!(r.exit, ServiceExit::Clean);
    }
}
