//! The autoscaler's decision logic: pure, clock passed in, no I/O.
//!
//! Up fast, down slowly (the shape of Kubernetes' HPA and KEDA):
//! - the wanted count is `ceil(load / jobs per worker)` clamped to `[min, max]`, where
//!   the load is the larger of the queue depth and the jobs running in the slots;
//! - scaling up goes straight to the wanted count (one tick after the burst shows),
//!   unless the last change is younger than the up cooldown;
//! - scaling down goes to the *highest* wanted count seen within the stabilization
//!   window, and only once the last change is older than the down cooldown. A depth
//!   that oscillates around a threshold therefore never shrinks what it just grew.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

/// Tuning of one scaled target (a swarm service, or the local worker processes).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    /// Fewest workers.
    pub min: u32,
    /// Most workers.
    pub max: u32,
    /// Queued jobs one worker should take; `None`: its slots, as the workers report them.
    pub jobs_per_worker: Option<u32>,
    /// No scale-up sooner than this after the last change.
    pub up_cooldown: Duration,
    /// No scale-down sooner than this after the last change.
    pub down_cooldown: Duration,
    /// A scale-down goes only as low as the highest wanted count within this window.
    pub stabilization: Duration,
}

/// What the autoscaler sees at one tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Load {
    /// Queue depth: the workers consumer's `num_pending + num_ack_pending`.
    pub depth: u64,
    /// Jobs running, summed over the live worker reports.
    pub running: u64,
    /// Slots, summed over the live worker reports.
    pub slots: u64,
    /// Live worker reports.
    pub reporting_workers: u64,
}

impl Load {
    /// Average slots per reporting worker, if any reported.
    pub fn slots_per_worker(&self) -> Option<u32> {
        (self.reporting_workers > 0 && self.slots > 0)
            .then(|| u32::try_from(self.slots.div_ceil(self.reporting_workers)).unwrap_or(u32::MAX))
    }
}

/// Which way a decision went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Up,
    Down,
    Hold,
}

impl Direction {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
            Direction::Hold => "hold",
        }
    }
}

/// Why a decision went the way it did (a bounded metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Fewer workers than the minimum: raised to it.
    BelowMin,
    /// More workers than the maximum: lowered to it.
    AboveMax,
    /// The queue (or the busy slots) wants more workers.
    Load,
    /// The queue wants more but the target is at its maximum.
    AtMax,
    /// Less load than workers: scaled down (to the window's highest want).
    LowLoad,
    /// Would change, but the last change is too recent.
    Cooldown,
    /// Would scale down, but the stabilization window saw a higher want.
    Stabilizing,
    /// The current count is what the load wants.
    Steady,
}

impl Reason {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BelowMin => "below_min",
            Reason::AboveMax => "above_max",
            Reason::Load => "load",
            Reason::AtMax => "at_max",
            Reason::LowLoad => "low_load",
            Reason::Cooldown => "cooldown",
            Reason::Stabilizing => "stabilizing",
            Reason::Steady => "steady",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One decision for one target.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Decision {
    /// Workers before the decision.
    pub current: u32,
    /// Workers after it (`current` when held).
    pub desired: u32,
    /// What the load alone asks for, clamped to `[min, max]`.
    pub wanted: u32,
    /// Jobs per worker used for `wanted`.
    pub jobs_per_worker: u32,
    pub direction: Direction,
    pub reason: Reason,
}

/// The decision state of one target: its recent wants and its last change.
#[derive(Debug, Clone)]
pub struct Policy {
    config: PolicyConfig,
    /// `(when, wanted)` within the stabilization window, oldest first.
    wants: VecDeque<(Instant, u32)>,
    last_change: Option<Instant>,
    /// The first decision: a down cooldown counts from here until the first change, so
    /// an autoscaler that just (re)started does not take workers away before it has
    /// watched the load for that long. Scaling up is never held by it.
    first_seen: Option<Instant>,
}

impl Policy {
    /// A policy with no history: the first tick may scale up (or into the bounds) at
    /// once, and down only after `down_cooldown`.
    pub fn new(config: PolicyConfig) -> Self {
        Policy {
            config,
            wants: VecDeque::new(),
            last_change: None,
            first_seen: None,
        }
    }

    /// The backend applied a change at `now`: the cooldowns count from here.
    pub fn applied(&mut self, now: Instant) {
        self.last_change = Some(now);
    }

    /// The tuning in force.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Replace the tuning (a service's labels changed), keeping the history.
    pub fn set_config(&mut self, config: PolicyConfig) {
        self.config = config;
    }

    /// Decide for `current` workers under `load` at `now`. Call [`Policy::applied`]
    /// once the backend made the change, so the cooldowns start from it.
    pub fn decide(&mut self, now: Instant, load: &Load, current: u32) -> Decision {
        let c = &self.config;
        let (min, max) = (c.min, c.max.max(c.min));
        let per = c
            .jobs_per_worker
            .or_else(|| load.slots_per_worker())
            .unwrap_or(1)
            .max(1);
        let need = |n: u64| u32::try_from(n.div_ceil(u64::from(per))).unwrap_or(u32::MAX);
        let raw = need(load.depth).max(need(load.running));
        let wanted = raw.clamp(min, max);

        self.wants.push_back((now, wanted));
        while let Some(&(t, _)) = self.wants.front() {
            if now.saturating_duration_since(t) > c.stabilization {
                self.wants.pop_front();
            } else {
                break;
            }
        }
        let first_seen = *self.first_seen.get_or_insert(now);
        let since_change = self.last_change.map(|t| now.saturating_duration_since(t));
        let cooled = |cooldown: Duration| since_change.is_none_or(|d| d >= cooldown);
        let since_down_start =
            now.saturating_duration_since(self.last_change.unwrap_or(first_seen));

        let (direction, desired, reason) = if current < min {
            let why = if wanted > min {
                Reason::Load
            } else {
                Reason::BelowMin
            };
            (Direction::Up, wanted, why)
        } else if current > max {
            (Direction::Down, max, Reason::AboveMax)
        } else if wanted > current {
            if cooled(c.up_cooldown) {
                (Direction::Up, wanted, Reason::Load)
            } else {
                (Direction::Hold, current, Reason::Cooldown)
            }
        } else if wanted < current {
            let highest = self.wants.iter().map(|&(_, w)| w).max().unwrap_or(wanted);
            if highest >= current {
                (Direction::Hold, current, Reason::Stabilizing)
            } else if since_down_start < c.down_cooldown {
                (Direction::Hold, current, Reason::Cooldown)
            } else {
                (Direction::Down, highest, Reason::LowLoad)
            }
        } else if raw > max {
            (Direction::Hold, current, Reason::AtMax)
        } else {
            (Direction::Hold, current, Reason::Steady)
        };
        Decision {
            current,
            desired,
            wanted,
            jobs_per_worker: per,
            direction,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PolicyConfig {
        PolicyConfig {
            min: 1,
            max: 8,
            jobs_per_worker: Some(4),
            up_cooldown: Duration::ZERO,
            down_cooldown: Duration::from_secs(30),
            stabilization: Duration::from_secs(60),
        }
    }

    fn depth(d: u64) -> Load {
        Load {
            depth: d,
            ..Load::default()
        }
    }

    /// A fake clock: ticks every 2 s from a fixed start, the replicas follow each decision.
    struct Script {
        policy: Policy,
        start: Instant,
        t: Duration,
        current: u32,
    }

    impl Script {
        fn new(config: PolicyConfig, current: u32) -> Self {
            Script {
                policy: Policy::new(config),
                start: Instant::now(),
                t: Duration::ZERO,
                current,
            }
        }

        fn tick(&mut self, load: Load) -> Decision {
            let now = self.start + self.t;
            let d = self.policy.decide(now, &load, self.current);
            if d.direction != Direction::Hold {
                self.policy.applied(now);
            }
            self.current = d.desired;
            self.t += Duration::from_secs(2);
            d
        }
    }

    #[test]
    fn a_burst_goes_to_the_maximum_in_one_tick() {
        let mut s = Script::new(config(), 1);
        let d = s.tick(depth(1000));
        assert_eq!(
            (d.direction, d.desired, d.reason),
            (Direction::Up, 8, Reason::Load)
        );
        let d = s.tick(depth(1000));
        assert_eq!(
            (d.direction, d.desired, d.reason),
            (Direction::Hold, 8, Reason::AtMax)
        );
    }

    #[test]
    fn counts_are_clamped_between_min_and_max() {
        let mut s = Script::new(config(), 0);
        let d = s.tick(depth(0));
        assert_eq!(
            (d.direction, d.desired, d.reason),
            (Direction::Up, 1, Reason::BelowMin)
        );
        let mut s = Script::new(config(), 20);
        let d = s.tick(depth(1000));
        assert_eq!(
            (d.direction, d.desired, d.reason),
            (Direction::Down, 8, Reason::AboveMax)
        );
        // ceil(9 / 4) = 3
        let mut s = Script::new(config(), 1);
        assert_eq!(s.tick(depth(9)).desired, 3);
    }

    #[test]
    fn an_oscillating_depth_does_not_flap() {
        // 7 wants 2 workers, 9 wants 3: the depth crosses the threshold every tick.
        let mut s = Script::new(config(), 2);
        let mut changes = 0;
        for i in 0..60 {
            let d = s.tick(depth(if i % 2 == 0 { 9 } else { 7 }));
            if d.direction != Direction::Hold {
                changes += 1;
            }
        }
        assert_eq!(changes, 1, "one scale-up to 3, then held");
        assert_eq!(s.current, 3);
    }

    #[test]
    fn scale_down_waits_for_the_window_and_the_cooldown() {
        let mut s = Script::new(config(), 1);
        assert_eq!(s.tick(depth(32)).desired, 8); // t = 0: up
        let mut first_down = None;
        for _ in 0..60 {
            let at = s.t;
            let d = s.tick(depth(0));
            if d.direction == Direction::Down {
                assert_eq!((d.desired, d.reason), (1, Reason::LowLoad));
                first_down = Some(at);
                break;
            }
            assert_eq!(d.reason, Reason::Stabilizing, "at {at:?}");
        }
        // The want of 8 at t = 0 leaves the 60 s window after t = 60 s.
        assert_eq!(first_down, Some(Duration::from_secs(62)));
    }

    #[test]
    fn the_down_cooldown_holds_after_a_recent_change() {
        let cfg = PolicyConfig {
            stabilization: Duration::ZERO,
            ..config()
        };
        let mut s = Script::new(cfg, 1);
        assert_eq!(s.tick(depth(32)).desired, 8); // t = 0
        let d = s.tick(depth(0)); // t = 2
        assert_eq!((d.direction, d.reason), (Direction::Hold, Reason::Cooldown));
        let mut t = s.t;
        while s.tick(depth(0)).direction == Direction::Hold {
            t = s.t;
        }
        assert_eq!(t, Duration::from_secs(30), "first down at 30 s");
        assert_eq!(s.current, 1);
    }

    #[test]
    fn a_fresh_autoscaler_waits_the_down_cooldown_before_taking_workers_away() {
        let cfg = PolicyConfig {
            stabilization: Duration::ZERO,
            ..config()
        };
        // Started (or restarted) with 4 workers and nothing queued: they stay until it
        // has watched an idle queue for the down cooldown.
        let mut s = Script::new(cfg.clone(), 4);
        let d = s.tick(depth(0)); // t = 0
        assert_eq!((d.direction, d.reason), (Direction::Hold, Reason::Cooldown));
        let mut t = s.t;
        while s.tick(depth(0)).direction == Direction::Hold {
            t = s.t;
        }
        assert_eq!(t, Duration::from_secs(30), "first down at 30 s");
        assert_eq!(s.current, 1);
        // Going up is never held by it; nor is getting into the bounds.
        let mut s = Script::new(cfg.clone(), 1);
        assert_eq!(s.tick(depth(32)).direction, Direction::Up);
        let mut s = Script::new(cfg, 12);
        let d = s.tick(depth(0));
        assert_eq!(
            (d.direction, d.desired, d.reason),
            (Direction::Down, 8, Reason::AboveMax)
        );
    }

    #[test]
    fn the_up_cooldown_holds_a_second_scale_up() {
        let cfg = PolicyConfig {
            up_cooldown: Duration::from_secs(5),
            ..config()
        };
        let mut s = Script::new(cfg, 1);
        assert_eq!(s.tick(depth(8)).desired, 2); // t = 0
        let d = s.tick(depth(32)); // t = 2
        assert_eq!((d.direction, d.reason), (Direction::Hold, Reason::Cooldown));
        s.tick(depth(32)); // t = 4
        let d = s.tick(depth(32)); // t = 6
        assert_eq!(
            (d.direction, d.desired, d.reason),
            (Direction::Up, 8, Reason::Load)
        );
    }

    #[test]
    fn busy_slots_keep_workers_and_slots_set_the_target() {
        let cfg = PolicyConfig {
            jobs_per_worker: None,
            stabilization: Duration::ZERO,
            down_cooldown: Duration::ZERO,
            ..config()
        };
        // 3 workers with 2 slots each, 6 running, nothing queued: keep 3.
        let busy = Load {
            depth: 6,
            running: 6,
            slots: 6,
            reporting_workers: 3,
        };
        let mut s = Script::new(cfg, 3);
        let d = s.tick(busy);
        assert_eq!((d.jobs_per_worker, d.desired), (2, 3));
        assert_eq!(d.reason, Reason::Steady);
        // 20 queued at 2 slots each: 10, clamped to 8.
        let d = s.tick(Load { depth: 20, ..busy });
        assert_eq!((d.desired, d.reason), (8, Reason::Load));
        // No reports: one job per worker.
        assert_eq!(Load::default().slots_per_worker(), None);
    }
}
