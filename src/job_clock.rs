//! When a running job gets which signal: JOB_TIMEOUT, and TERM_CHILD's
//! schedule for a job that must stop, as one state machine over plain
//! [`Instant`]s. The worker asks it what is due and when to look next; it
//! sends nothing itself.

use crate::config::KillSettings;
use std::time::{Duration, Instant};

/// How often SIGKILL is sent again to a job that lingers.
const RESEND_KILL: Duration = Duration::from_secs(1);

/// Where a running job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Running; JOB_TIMEOUT expires at `timeout_at`, if set.
    Running { timeout_at: Option<Instant> },
    /// Must stop: SIGTERM goes at `term_at` (unless `termed` already), then
    /// SIGKILL at `kill_at`.
    Terminating {
        term_at: Instant,
        termed: bool,
        kill_at: Instant,
    },
    /// SIGKILL sent; sent again at `resend_at` should it linger.
    Killing { resend_at: Instant },
}

/// What the worker should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// JOB_TIMEOUT just expired (the Term and Kill follow on schedule).
    TimedOut,
    /// Send SIGTERM to the job's process group.
    Term,
    /// Send SIGKILL to the job's process group.
    Kill,
}

/// The stop schedule of one running job.
#[derive(Debug, Clone)]
pub struct JobClock {
    stage: Stage,
    kill: KillSettings,
    timed_out: bool,
}

impl JobClock {
    /// A job started at `now`, with JOB_TIMEOUT `timeout` and the worker's
    /// kill settings.
    pub fn start(now: Instant, timeout: Option<Duration>, kill: KillSettings) -> JobClock {
        JobClock {
            stage: Stage::Running {
                timeout_at: timeout.map(|t| now + t),
            },
            kill,
            timed_out: false,
        }
    }

    /// Where the job stands.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// True once JOB_TIMEOUT has expired.
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// The worker was told to stop the job (TERM, INT, USR1): SIGKILL at
    /// once, or with TERM_CHILD, SIGTERM after the pre-shutdown timeout and
    /// SIGKILL after the term timeout. A job already stopping keeps its
    /// schedule.
    pub fn stop(&mut self, now: Instant) -> Vec<Action> {
        if let Stage::Running { .. } = self.stage {
            if !self.kill.term_child {
                self.stage = Stage::Killing {
                    resend_at: now + RESEND_KILL,
                };
                return vec![Action::Kill];
            }
            let term_at = now + self.kill.pre_shutdown_timeout;
            self.stage = Stage::Terminating {
                term_at,
                termed: false,
                kill_at: term_at + self.kill.term_timeout,
            };
        }
        self.due(now)
    }

    /// What is due at `now`, moving the stage on.
    pub fn due(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Stage::Running {
            timeout_at: Some(t),
        } = self.stage
        {
            if now >= t {
                // A timed-out job gets SIGTERM at once, TERM_CHILD or not.
                self.timed_out = true;
                actions.push(Action::TimedOut);
                self.stage = Stage::Terminating {
                    term_at: now,
                    termed: false,
                    kill_at: now + self.kill.term_timeout,
                };
            }
        }
        match &mut self.stage {
            Stage::Running { .. } => {}
            Stage::Terminating {
                term_at,
                termed,
                kill_at,
            } => {
                if !*termed && now >= *term_at {
                    *termed = true;
                    actions.push(Action::Term);
                }
                if now >= *kill_at {
                    actions.push(Action::Kill);
                    self.stage = Stage::Killing {
                        resend_at: now + RESEND_KILL,
                    };
                }
            }
            Stage::Killing { resend_at } => {
                if now >= *resend_at {
                    actions.push(Action::Kill);
                    *resend_at = now + RESEND_KILL;
                }
            }
        }
        actions
    }

    /// When something is next due, if ever.
    pub fn next(&self) -> Option<Instant> {
        match self.stage {
            Stage::Running { timeout_at } => timeout_at,
            Stage::Terminating {
                term_at,
                termed: false,
                ..
            } => Some(term_at),
            Stage::Terminating { kill_at, .. } => Some(kill_at),
            Stage::Killing { resend_at } => Some(resend_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kill(term_child: bool) -> KillSettings {
        KillSettings {
            term_child,
            term_timeout: Duration::from_secs(4),
            pre_shutdown_timeout: Duration::from_secs(2),
        }
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn without_term_child_a_stop_kills_at_once_and_again_if_it_lingers() {
        let t0 = Instant::now();
        let mut c = JobClock::start(t0, None, kill(false));
        assert_eq!(c.next(), None);
        assert_eq!(c.stop(t0), [Action::Kill]);
        assert_eq!(c.next(), Some(t0 + S));
        assert!(c.due(t0).is_empty());
        assert_eq!(c.due(t0 + S), [Action::Kill]);
        assert!(!c.timed_out());
    }

    #[test]
    fn term_child_waits_the_pre_shutdown_timeout_then_terms_then_kills() {
        let t0 = Instant::now();
        let mut c = JobClock::start(t0, None, kill(true));
        assert!(c.stop(t0).is_empty(), "the job may finish by itself first");
        assert_eq!(c.next(), Some(t0 + 2 * S));
        assert_eq!(c.due(t0 + 2 * S), [Action::Term]);
        assert_eq!(c.next(), Some(t0 + 6 * S));
        assert!(c.due(t0 + 5 * S).is_empty());
        // A second stop signal does not restart the schedule.
        assert!(c.stop(t0 + 5 * S).is_empty());
        assert_eq!(c.due(t0 + 6 * S), [Action::Kill]);
        assert!(matches!(c.stage(), Stage::Killing { .. }));
    }

    #[test]
    fn a_timeout_terms_at_once_then_kills_after_the_term_timeout() {
        let t0 = Instant::now();
        let mut c = JobClock::start(t0, Some(10 * S), kill(false));
        assert_eq!(c.next(), Some(t0 + 10 * S));
        assert!(c.due(t0 + 9 * S).is_empty());
        assert_eq!(c.due(t0 + 10 * S), [Action::TimedOut, Action::Term]);
        assert!(c.timed_out());
        assert_eq!(c.next(), Some(t0 + 14 * S));
        assert_eq!(c.due(t0 + 14 * S), [Action::Kill]);
    }

    #[test]
    fn a_late_look_does_everything_that_is_due() {
        let t0 = Instant::now();
        let mut c = JobClock::start(t0, Some(S), kill(true));
        assert_eq!(
            c.due(t0 + 60 * S),
            [Action::TimedOut, Action::Term],
            "the kill is scheduled from the moment the timeout is seen"
        );
        assert_eq!(c.due(t0 + 64 * S), [Action::Kill]);
    }
}
