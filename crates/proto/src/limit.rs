//! Cluster-wide run limits: at most N jobs of a scope running at once and/or at most
//! R starts per period, enforced by every worker together.
//!
//! A [`RunLimit`] lives in the runtime config (`jetmill limits set`); what it has in
//! use lives in KV `limits`, one [`LimitUse`] per scope key, changed only by
//! compare-and-set. A worker admits a job by one such write per scope (a running
//! lease, the next start time), and a job that must wait is handed back with a delay:
//! it waits in the queue, it never fails. docs/architecture.md ("Run limits") has the
//! whole story.

use crate::names::is_valid_tenant;
use crate::JobKind;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// `tenant` value of a limit that applies to every tenant on its own.
pub const EACH_TENANT: &str = "*";

/// How long a running job's lease holds without being renewed: a worker that died
/// frees its jobs' places within this.
pub const LEASE: Duration = Duration::from_secs(20);

/// How often a worker renews the leases of the jobs it runs.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

/// Highest `max_running` a limit may set (its leases share one KV value of at most 1 MiB).
pub const MAX_RUNNING: u32 = 5_000;
/// Highest rate (starts per second) a limit may set; above it every start would
/// contend for one key and the limit would not be worth its cost.
pub const MAX_PER_SECOND: f64 = 10_000.0;

/// At most `starts` job starts per `per_ms` milliseconds, spaced evenly (starts are at
/// least `per_ms / starts` apart, cluster-wide). Written `5/s`, `30/m`, `2/10s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rate {
    pub starts: u32,
    pub per_ms: u64,
}

impl Rate {
    /// Milliseconds between two starts.
    pub fn interval_ms(&self) -> f64 {
        self.per_ms as f64 / f64::from(self.starts.max(1))
    }

    /// Starts per second.
    pub fn per_second(&self) -> f64 {
        1000.0 / self.interval_ms()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per_ms {
            1000 => "s".to_string(),
            60_000 => "m".to_string(),
            3_600_000 => "h".to_string(),
            ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
            ms => format!("{ms}ms"),
        };
        write!(f, "{}/{unit}", self.starts)
    }
}

impl std::str::FromStr for Rate {
    type Err = LimitError;

    /// `<starts>/<period>`: `5/s`, `30/m`, `100/h`, `2/10s`, `1/500ms` (a period
    /// without a number is one of its unit).
    fn from_str(s: &str) -> Result<Rate, LimitError> {
        let bad = |why: &str| {
            LimitError(format!(
                "invalid rate {s:?}: {why}; write <starts>/<period>, e.g. 5/s, 30/m, 2/10s"
            ))
        };
        let (n, period) = s.trim().split_once('/').ok_or_else(|| bad("no '/'"))?;
        let starts: u32 = n
            .trim()
            .parse()
            .map_err(|_| bad("the number of starts is not a whole number"))?;
        let period = period.trim();
        let period = if period.starts_with(|c: char| c.is_ascii_digit()) {
            period.to_string()
        } else {
            format!("1{period}")
        };
        let per = crate::parse_duration(&period).map_err(|e| bad(e.reason))?;
        let rate = Rate {
            starts,
            per_ms: per.as_millis().min(u128::from(u64::MAX)) as u64,
        };
        rate.validate()?;
        Ok(rate)
    }
}

impl Rate {
    fn validate(&self) -> Result<(), LimitError> {
        if self.starts == 0 {
            return Err(LimitError(
                "a rate needs at least 1 start per period (to stop a kind, use `jetmill kind disable`; to stop everything, `jetmill freeze`)".into(),
            ));
        }
        if self.per_ms == 0 {
            return Err(LimitError("a rate's period must be at least 1ms".into()));
        }
        if self.per_second() > MAX_PER_SECOND {
            return Err(LimitError(format!(
                "rate {self} is over {MAX_PER_SECOND} starts per second; a limit that high is not worth its cost (leave it unlimited)"
            )));
        }
        Ok(())
    }
}

/// A limit the controller sets: on the jobs of `kind` (all kinds when absent) of
/// `tenant` (all tenants together when absent; [`EACH_TENANT`] for every tenant on
/// its own), at most `max_running` running at once and/or `rate` starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunLimit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<JobKind>,
    /// A tenant, or `*` for each tenant on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// At most this many of these jobs running at once, cluster-wide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_running: Option<u32>,
    /// At most this many starts per period, cluster-wide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
}

/// A limit that cannot be set, and why (the message says what to write instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LimitError(pub String);

impl RunLimit {
    /// Check a limit before it is stored.
    pub fn validate(&self) -> Result<(), LimitError> {
        if self.max_running.is_none() && self.rate.is_none() {
            return Err(LimitError(
                "a limit needs --max-running N and/or --rate R (e.g. 5/s)".into(),
            ));
        }
        match self.max_running {
            Some(0) => {
                return Err(LimitError(
                    "max running must be at least 1 (to stop a kind, use `jetmill kind disable`; to stop everything, `jetmill freeze`)".into(),
                ))
            }
            Some(n) if n > MAX_RUNNING => {
                return Err(LimitError(format!(
                    "max running {n} is over {MAX_RUNNING}; leave it unlimited instead"
                )))
            }
            _ => {}
        }
        if let Some(rate) = &self.rate {
            rate.validate()?;
        }
        if let Some(t) = &self.tenant {
            if t != EACH_TENANT && !is_valid_tenant(t) {
                return Err(LimitError(format!(
                    "invalid tenant {t:?}: 1-64 letters, digits, '-' or '_', or '*' for each tenant on its own"
                )));
            }
        }
        Ok(())
    }

    /// Whether `other` limits the same jobs (setting one replaces the other).
    pub fn same_scope(&self, other: &RunLimit) -> bool {
        self.kind == other.kind && self.tenant == other.tenant
    }

    /// The KV `limits` key that counts a job of `kind` and `tenant` under this limit,
    /// or `None` when the limit does not apply to it.
    pub fn key_for(&self, kind: JobKind, tenant: &str) -> Option<String> {
        if self.kind.is_some_and(|k| k != kind) {
            return None;
        }
        self.key_of_tenant(tenant)
    }

    /// The scope key `tenant`'s jobs count at under this limit (whatever their kind, if
    /// the limit has one), or `None` when the limit is on another named tenant.
    pub fn key_of_tenant(&self, tenant: &str) -> Option<String> {
        let tenant_part = match self.tenant.as_deref() {
            None => "all",
            Some(EACH_TENANT) => tenant,
            Some(t) if t == tenant => t,
            Some(_) => return None,
        };
        Some(format!("{}{tenant_part}", self.key_prefix()))
    }

    /// What every scope key of this limit starts with. `each` keeps a `*` limit's keys
    /// apart from a named tenant's limit on the same kind.
    fn key_prefix(&self) -> String {
        let kind_part = self.kind.map(JobKind::as_str).unwrap_or("all");
        let each = if self.tenant.as_deref() == Some(EACH_TENANT) {
            "each"
        } else {
            "one"
        };
        format!("kind_{kind_part}.{each}.tenant_")
    }

    /// What the limit covers, for people: `factorial jobs of each tenant`.
    pub fn scope(&self) -> String {
        let kind = match self.kind {
            Some(k) => format!("{k} jobs"),
            None => "all jobs".to_string(),
        };
        match self.tenant.as_deref() {
            None => kind,
            Some(EACH_TENANT) => format!("{kind} of each tenant"),
            Some(t) => format!("{kind} of tenant {t}"),
        }
    }
}

impl fmt::Display for RunLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scope())?;
        if let Some(n) = self.max_running {
            write!(f, " at most {n} running")?;
        }
        if let Some(r) = &self.rate {
            write!(f, " at most {r} starts")?;
        }
        Ok(())
    }
}

impl RunLimit {
    /// The tenant a scope key of this limit counts (`None` when all tenants count
    /// together), or `None` outside when the key is not this limit's.
    pub fn tenant_of_key(&self, key: &str) -> Option<Option<String>> {
        let tenant = key.strip_prefix(&self.key_prefix())?;
        match self.tenant.as_deref() {
            None => (tenant == "all").then_some(None),
            Some(EACH_TENANT) => Some(Some(tenant.to_string())),
            Some(t) => (t == tenant).then(|| Some(t.to_string())),
        }
    }
}

/// One configured limit and what it has in use now (`GET /v1/limits`, `jetmill limits list`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LimitView {
    /// The limit as set.
    pub limit: RunLimit,
    /// What it covers, in words.
    pub scope: String,
    /// Its counts: one, or one per tenant for a `tenant: "*"` limit (only tenants with
    /// jobs started under it).
    pub usage: Vec<ScopeUsage>,
}

/// What one scope of a limit has in use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScopeUsage {
    /// The tenant counted here (absent when all tenants count together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Jobs running under it now (holding an unexpired place; only a limit with
    /// `max_running` keeps places, so under a rate alone this is 0).
    pub running: usize,
    /// Unix ms of the earliest next start under its rate, when that is in the future.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_start_ms: Option<i64>,
}

impl ScopeUsage {
    /// The counts of `used` at `now_ms`, for `tenant`.
    pub fn of(tenant: Option<String>, used: &LimitUse, now_ms: i64) -> ScopeUsage {
        ScopeUsage {
            tenant,
            running: used
                .running
                .values()
                .filter(|l| l.until_ms >= now_ms)
                .count(),
            next_start_ms: (used.next_start_ms > now_ms as f64)
                .then(|| used.next_start_ms.ceil() as i64),
        }
    }
}

/// A running job's place under a concurrency limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Lease {
    /// The worker running it (it renews the lease every [`RENEW_EVERY`]).
    pub worker: String,
    /// Unix ms after which the place is free again unless renewed.
    pub until_ms: i64,
}

/// What one scope of a limit has in use (the value of a KV `limits` key).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LimitUse {
    /// Running jobs holding a place, by job id (only under a `max_running`).
    #[serde(default)]
    pub running: BTreeMap<String, Lease>,
    /// Unix ms (fractional) before which no job of this scope may start (under a `rate`).
    #[serde(default)]
    pub next_start_ms: f64,
}

/// What [`LimitUse::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Start it (its place and start are taken).
    Admit,
    /// Every place is taken: try again later.
    Full,
    /// The next start is allowed in this many ms.
    TooSoon { wait_ms: f64 },
}

impl LimitUse {
    /// Forget leases not renewed in time (their workers died or lost NATS).
    pub fn prune(&mut self, now_ms: i64) {
        self.running.retain(|_, l| l.until_ms >= now_ms);
    }

    /// Admit `job` on `worker` under `limit` at `now_ms`, taking its place and its
    /// start, or say why it must wait (then nothing changes but pruning). A job that
    /// already holds a place (a redelivery) keeps it and starts.
    pub fn admit(&mut self, limit: &RunLimit, job: &str, worker: &str, now_ms: i64) -> Decision {
        self.prune(now_ms);
        let until_ms = now_ms + LEASE.as_millis() as i64;
        if let Some(lease) = self.running.get_mut(job) {
            *lease = Lease {
                worker: worker.to_string(),
                until_ms,
            };
            return Decision::Admit;
        }
        if let Some(max) = limit.max_running {
            if self.running.len() >= max as usize {
                return Decision::Full;
            }
        }
        if let Some(rate) = &limit.rate {
            let now = now_ms as f64;
            if now < self.next_start_ms {
                return Decision::TooSoon {
                    wait_ms: self.next_start_ms - now,
                };
            }
            self.next_start_ms = self.next_start_ms.max(now) + rate.interval_ms();
        }
        if limit.max_running.is_some() {
            self.running.insert(
                job.to_string(),
                Lease {
                    worker: worker.to_string(),
                    until_ms,
                },
            );
        }
        Decision::Admit
    }

    /// Give back `job`'s place; whether it held one.
    pub fn release(&mut self, job: &str) -> bool {
        self.running.remove(job).is_some()
    }

    /// Extend the leases `jobs` (run by `worker`) still hold to [`LEASE`] from `now_ms`;
    /// whether any was. A lease that lapsed meanwhile (NATS was out of reach for longer
    /// than [`LEASE`]) is not taken again: its place may be another job's by now, and a
    /// renewal racing the job's release must not bring a finished job back.
    pub fn renew<'a>(
        &mut self,
        worker: &str,
        jobs: impl IntoIterator<Item = &'a str>,
        now_ms: i64,
    ) -> bool {
        self.prune(now_ms);
        let until_ms = now_ms + LEASE.as_millis() as i64;
        let mut renewed = false;
        for job in jobs {
            if let Some(lease) = self.running.get_mut(job) {
                *lease = Lease {
                    worker: worker.to_string(),
                    until_ms,
                };
                renewed = true;
            }
        }
        renewed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(max_running: Option<u32>, rate: Option<&str>) -> RunLimit {
        RunLimit {
            kind: Some(JobKind::Factorial),
            tenant: None,
            max_running,
            rate: rate.map(|r| r.parse().expect("rate")),
        }
    }

    #[test]
    fn rates_parse_and_print_as_written() {
        for (text, starts, per_ms, shown) in [
            ("5/s", 5, 1000, "5/s"),
            ("30/m", 30, 60_000, "30/m"),
            ("100/h", 100, 3_600_000, "100/h"),
            ("2/10s", 2, 10_000, "2/10s"),
            ("1/500ms", 1, 500, "1/500ms"),
        ] {
            let r: Rate = text.parse().expect(text);
            assert_eq!((r.starts, r.per_ms), (starts, per_ms), "{text}");
            assert_eq!(r.to_string(), shown);
        }
        for bad in ["5", "0/s", "x/s", "5/parsec", "20000/s", "5/0s"] {
            let e = bad.parse::<Rate>().expect_err(bad);
            assert!(e.0.contains("rate") || e.0.contains("start"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_limit_needs_a_bound_and_a_valid_tenant() {
        assert!(limit(None, None).validate().is_err());
        assert!(limit(Some(0), None).validate().is_err());
        assert!(limit(Some(2), None).validate().is_ok());
        let bad_tenant = RunLimit {
            tenant: Some("a.b".into()),
            ..limit(Some(1), None)
        };
        assert!(bad_tenant.validate().expect_err("a.b").0.contains("tenant"));
    }

    #[test]
    fn keys_say_which_jobs_count_together() {
        let kind = limit(Some(1), None);
        assert_eq!(
            kind.key_for(JobKind::Factorial, "acme").as_deref(),
            Some("kind_factorial.one.tenant_all")
        );
        assert_eq!(kind.key_for(JobKind::Sum, "acme"), None);
        let each = RunLimit {
            kind: None,
            tenant: Some(EACH_TENANT.into()),
            ..kind.clone()
        };
        assert_eq!(
            each.key_for(JobKind::Sum, "acme").as_deref(),
            Some("kind_all.each.tenant_acme")
        );
        let one = RunLimit {
            tenant: Some("acme".into()),
            ..kind.clone()
        };
        assert_eq!(one.key_for(JobKind::Factorial, "other"), None);
        assert_ne!(
            one.key_for(JobKind::Factorial, "acme"),
            RunLimit {
                kind: Some(JobKind::Factorial),
                ..each
            }
            .key_for(JobKind::Factorial, "acme")
        );
    }

    #[test]
    fn keys_are_traced_back_to_their_limit_and_tenant() {
        let each = RunLimit {
            tenant: Some(EACH_TENANT.into()),
            ..limit(Some(1), None)
        };
        let key = each.key_for(JobKind::Factorial, "acme").expect("covers");
        assert_eq!(each.tenant_of_key(&key), Some(Some("acme".into())));
        let all = limit(Some(1), None);
        assert_eq!(all.tenant_of_key(&key), None);
        let key = all.key_for(JobKind::Factorial, "acme").expect("covers");
        assert_eq!(all.tenant_of_key(&key), Some(None));
        assert_eq!(each.tenant_of_key(&key), None);
    }

    #[test]
    fn places_are_taken_released_and_lapse() {
        let l = limit(Some(2), None);
        let mut u = LimitUse::default();
        assert_eq!(u.admit(&l, "a", "w1", 0), Decision::Admit);
        assert_eq!(u.admit(&l, "b", "w2", 0), Decision::Admit);
        assert_eq!(u.admit(&l, "c", "w1", 0), Decision::Full);
        // A redelivery of a job holding a place keeps it.
        assert_eq!(u.admit(&l, "a", "w2", 1), Decision::Admit);
        assert!(u.release("b"));
        assert_eq!(u.admit(&l, "c", "w1", 2), Decision::Admit);
        // w2 died: its lease on `a` lapses unless renewed; w1 renews `c`.
        let later = LEASE.as_millis() as i64 + 10;
        assert!(u.renew("w1", ["c"], later - 20));
        assert!(
            !u.renew("w1", ["gone"], later - 20),
            "a released job is not brought back"
        );
        assert_eq!(u.admit(&l, "d", "w1", later), Decision::Admit);
        assert_eq!(u.admit(&l, "e", "w1", later), Decision::Full);
        assert_eq!(u.running.keys().collect::<Vec<_>>(), ["c", "d"]);
    }

    #[test]
    fn starts_are_spaced_by_the_rate() {
        let l = limit(None, Some("4/s"));
        let mut u = LimitUse::default();
        assert_eq!(u.admit(&l, "a", "w", 1000), Decision::Admit);
        assert_eq!(
            u.admit(&l, "b", "w", 1100),
            Decision::TooSoon { wait_ms: 150.0 }
        );
        assert_eq!(u.admit(&l, "b", "w", 1250), Decision::Admit);
        // Idle for a while: no burst is saved up, the next start is one interval on.
        assert_eq!(u.admit(&l, "c", "w", 5000), Decision::Admit);
        assert!(matches!(
            u.admit(&l, "d", "w", 5001),
            Decision::TooSoon { .. }
        ));
        assert!(u.running.is_empty(), "a rate alone keeps no leases");
    }

    #[test]
    fn a_full_limit_does_not_spend_a_start() {
        let l = limit(Some(1), Some("10/s"));
        let mut u = LimitUse::default();
        assert_eq!(u.admit(&l, "a", "w", 0), Decision::Admit);
        let next = u.next_start_ms;
        assert_eq!(u.admit(&l, "b", "w", 500), Decision::Full);
        assert_eq!(u.next_start_ms, next);
    }
}
