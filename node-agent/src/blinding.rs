//! Whether the agent is blind, judged from its own state at every status tick
//! ([`crate::tick`]): sustained drops, probes not attached, a restart loop. The reasons go to
//! heartbeats (the detector turns them into a `DefenseEvasion:Runtime/PeregrineAgentBlinded`
//! finding and marks the node's coverage `DEGRADED`), to `/healthz` and `/metrics`, and in
//! standalone mode straight to the finding.
//!
//! The thresholds (docs/agent.md, "Blinding"):
//! - **Sustained drops**: events lost (kernel ring buffer or scratch area, or the agent's own
//!   queue) in each of `drop_ticks` consecutive ticks (default 3, one tick a second). A tick
//!   counts only if its loss is above `drop_ratio` of what the kernel produced in it
//!   (lost / (lost + read); default 0: any loss). A lone burst is a Loss event, not blinding;
//!   an attacker who keeps the agent dropping for seconds is.
//! - **Probes not attached**: any probe `failed` at start, or found `detached` by the periodic
//!   re-check ([`crate::probes::LinkWatch`]).
//! - **Restart loop**: at least `restarts` starts (default 3) within `restart_window` (default
//!   10 minutes), from [`crate::starts::StartHistory`].

use std::time::Duration;

use peregrine_event::{BlindingKind, BlindingReason};

use crate::probes::{AttachState, ProbeStatus};

/// Targets named in a probe reason; the rest are counted.
const TARGETS_NAMED: usize = 6;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlindingConfig {
    /// Consecutive lossy ticks that make sustained drops; 0 turns the check off.
    pub drop_ticks: u32,
    /// A tick is lossy when more than this fraction of its events was lost (0: any loss).
    pub drop_ratio: f64,
    /// Starts within `restart_window` that make a restart loop; 0 turns the check off.
    pub restarts: u32,
    pub restart_window: Duration,
    /// How often the probes' links are re-checked; zero turns the re-check off.
    pub probe_check_interval: Duration,
}

impl Default for BlindingConfig {
    fn default() -> Self {
        BlindingConfig {
            drop_ticks: 3,
            drop_ratio: 0.0,
            restarts: 3,
            restart_window: Duration::from_secs(600),
            probe_check_interval: Duration::from_secs(10),
        }
    }
}

/// What one tick saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TickDrops {
    /// Lost in the kernel (ring buffer full, no scratch area).
    pub kernel: u64,
    /// Dropped because the agent's queue was full.
    pub user: u64,
    /// Records read from the ring buffer.
    pub read: u64,
}

/// Carries the drop streak from tick to tick.
#[derive(Clone, Debug)]
pub struct Assessor {
    cfg: BlindingConfig,
    tick: Duration,
    /// Consecutive lossy ticks so far, and what they lost.
    streak: u32,
    streak_kernel: u64,
    streak_user: u64,
}

impl Assessor {
    /// `tick` is the status tick's period (for the reason's wording).
    pub fn new(cfg: BlindingConfig, tick: Duration) -> Assessor {
        Assessor {
            cfg,
            tick,
            streak: 0,
            streak_kernel: 0,
            streak_user: 0,
        }
    }

    pub fn config(&self) -> &BlindingConfig {
        &self.cfg
    }

    /// The reasons to be blind after this tick. `starts_in_window` is how many starts the
    /// restart history has within the window (`None`: no history kept).
    pub fn assess(
        &mut self,
        drops: TickDrops,
        probes: &[ProbeStatus],
        starts_in_window: Option<usize>,
    ) -> Vec<BlindingReason> {
        let mut reasons = Vec::new();
        let lost = drops.kernel.saturating_add(drops.user);
        let produced = lost.saturating_add(drops.read);
        let lossy = lost > 0 && (lost as f64) > self.cfg.drop_ratio * (produced as f64);
        if lossy {
            self.streak = self.streak.saturating_add(1);
            self.streak_kernel = self.streak_kernel.saturating_add(drops.kernel);
            self.streak_user = self.streak_user.saturating_add(drops.user);
        } else {
            self.streak = 0;
            self.streak_kernel = 0;
            self.streak_user = 0;
        }
        if self.cfg.drop_ticks > 0 && self.streak >= self.cfg.drop_ticks {
            reasons.push(BlindingReason::new(
                BlindingKind::SustainedDrops,
                format!(
                    "events lost in each of the last {} ticks of {} ms: {} in the kernel, {} in the agent's queue",
                    self.streak,
                    self.tick.as_millis(),
                    self.streak_kernel,
                    self.streak_user
                ),
            ));
        }
        for (kind, state, verb) in [
            (
                BlindingKind::ProbesFailed,
                AttachState::Failed,
                "failed to attach",
            ),
            (
                BlindingKind::ProbesDetached,
                AttachState::Detached,
                "were detached after attaching",
            ),
        ] {
            let hit: Vec<&str> = probes
                .iter()
                .filter(|p| p.state == state)
                .map(|p| p.target.as_str())
                .collect();
            if !hit.is_empty() {
                let named = hit
                    .iter()
                    .take(TARGETS_NAMED)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ");
                let more = hit.len().saturating_sub(TARGETS_NAMED);
                reasons.push(BlindingReason::new(
                    kind,
                    format!(
                        "{} of {} probes {verb}: {named}{}",
                        hit.len(),
                        probes.len(),
                        if more > 0 {
                            format!(" and {more} more")
                        } else {
                            String::new()
                        }
                    ),
                ));
            }
        }
        if let Some(n) = starts_in_window
            && self.cfg.restarts > 0
            && n >= self.cfg.restarts as usize
        {
            reasons.push(BlindingReason::new(
                BlindingKind::RestartLoop,
                format!("{n} starts within {} s", self.cfg.restart_window.as_secs()),
            ));
        }
        reasons
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(target: &str, state: AttachState) -> ProbeStatus {
        ProbeStatus {
            program: "p",
            target: target.into(),
            state,
            error: None,
        }
    }

    fn codes(r: &[BlindingReason]) -> Vec<&str> {
        r.iter().map(|r| r.code.as_str()).collect()
    }

    const NONE: TickDrops = TickDrops {
        kernel: 0,
        user: 0,
        read: 100,
    };

    fn a() -> Assessor {
        Assessor::new(BlindingConfig::default(), Duration::from_secs(1))
    }

    #[test]
    fn drops_must_last_three_ticks_in_a_row() {
        let mut a = a();
        let kernel = TickDrops {
            kernel: 10,
            user: 0,
            read: 100,
        };
        let user = TickDrops {
            kernel: 0,
            user: 5,
            read: 100,
        };
        assert!(a.assess(kernel, &[], None).is_empty());
        assert!(a.assess(user, &[], None).is_empty());
        // A quiet tick breaks the streak.
        assert!(a.assess(NONE, &[], None).is_empty());
        assert!(a.assess(kernel, &[], None).is_empty());
        assert!(a.assess(kernel, &[], None).is_empty());
        let r = a.assess(user, &[], None);
        assert_eq!(codes(&r), ["sustained_drops"]);
        assert_eq!(
            r[0].detail,
            "events lost in each of the last 3 ticks of 1000 ms: 20 in the kernel, 5 in the agent's queue"
        );
        // It holds while the drops go on, and clears at the first quiet tick.
        assert_eq!(codes(&a.assess(kernel, &[], None)), ["sustained_drops"]);
        assert!(a.assess(NONE, &[], None).is_empty());
    }

    #[test]
    fn a_ratio_ignores_small_loss() {
        let mut a = Assessor::new(
            BlindingConfig {
                drop_ratio: 0.1,
                ..BlindingConfig::default()
            },
            Duration::from_secs(1),
        );
        let small = TickDrops {
            kernel: 5,
            user: 0,
            read: 95,
        };
        for _ in 0..10 {
            assert!(a.assess(small, &[], None).is_empty());
        }
        let big = TickDrops {
            kernel: 50,
            user: 0,
            read: 50,
        };
        a.assess(big, &[], None);
        a.assess(big, &[], None);
        assert_eq!(codes(&a.assess(big, &[], None)), ["sustained_drops"]);
        // Everything lost, nothing read: lossy whatever the ratio.
        let all = TickDrops {
            kernel: 1,
            user: 0,
            read: 0,
        };
        assert_eq!(codes(&a.assess(all, &[], None)), ["sustained_drops"]);
    }

    #[test]
    fn zero_turns_checks_off() {
        let mut a = Assessor::new(
            BlindingConfig {
                drop_ticks: 0,
                restarts: 0,
                ..BlindingConfig::default()
            },
            Duration::from_secs(1),
        );
        let drops = TickDrops {
            kernel: 1,
            user: 1,
            read: 0,
        };
        for _ in 0..10 {
            assert!(a.assess(drops, &[], Some(100)).is_empty());
        }
    }

    #[test]
    fn failed_and_detached_probes_are_named_and_bounded() {
        let mut a = a();
        let mut probes = vec![
            probe("sched/sched_process_exec", AttachState::Attached),
            probe("syscalls/sys_enter_openat", AttachState::Failed),
            probe("syscalls/sys_enter_open", AttachState::Absent),
        ];
        let r = a.assess(NONE, &probes, None);
        assert_eq!(codes(&r), ["probes_failed"]);
        assert_eq!(
            r[0].detail,
            "1 of 3 probes failed to attach: syscalls/sys_enter_openat"
        );
        probes[0].state = AttachState::Detached;
        for i in 0..20 {
            probes.push(probe(
                &format!("syscalls/sys_exit_{i}"),
                AttachState::Detached,
            ));
        }
        let r = a.assess(NONE, &probes, None);
        assert_eq!(codes(&r), ["probes_failed", "probes_detached"]);
        assert!(
            r[1].detail.starts_with(
                "21 of 23 probes were detached after attaching: sched/sched_process_exec, "
            ),
            "{}",
            r[1].detail
        );
        assert!(r[1].detail.ends_with(" and 15 more"), "{}", r[1].detail);
        // Absent probes (no such tracepoint here) are not blindness.
        let absent = [probe("a/b", AttachState::Absent)];
        assert!(a.assess(NONE, &absent, None).is_empty());
    }

    #[test]
    fn a_restart_loop_needs_three_starts_in_the_window() {
        let mut a = a();
        assert!(a.assess(NONE, &[], Some(2)).is_empty());
        let r = a.assess(NONE, &[], Some(3));
        assert_eq!(codes(&r), ["restart_loop"]);
        assert_eq!(r[0].detail, "3 starts within 600 s");
        assert!(a.assess(NONE, &[], None).is_empty());
    }
}
