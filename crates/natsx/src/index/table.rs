//! The index's data: per tenant the ids in order with status and kind, one order over
//! every tenant, and the walk down from a cursor that picks a page's candidates.

use crate::listing::ListQuery;
use jetmill_proto::{JobId, JobKind, JobStatus};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;

/// Where a walk down the ids starts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Start {
    /// The newest job.
    Top,
    /// Below this id (a client's cursor).
    Below(JobId),
    /// Below this `(id, tenant number)` (the last candidate of a previous batch).
    After(JobId, u32),
}

/// A job whose indexed fields admit a query: the record to read.
#[derive(Debug, Clone)]
pub(super) struct Candidate {
    pub(super) tenant: Arc<str>,
    pub(super) id: JobId,
    /// The tenant's number (the position in the all-tenants order).
    pub(super) number: u32,
}

/// Indexed fields of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Meta(pub(super) Option<(JobStatus, JobKind)>);

impl Meta {
    /// Whether a record with these fields may match `q` (a value that did not parse
    /// may: its read then reports it as corrupt, as the scan would).
    fn admits(self, q: &ListQuery) -> bool {
        match self.0 {
            None => true,
            Some((s, k)) => q.status.is_none_or(|x| x == s) && q.kind.is_none_or(|x| x == k),
        }
    }
}

/// The index itself: what the task writes and listings read.
///
/// Public only so the benchmark can measure its memory; not part of the API.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Table {
    /// Tenant names by number.
    names: Vec<Arc<str>>,
    /// Tenant numbers by name.
    numbers: HashMap<Arc<str>, u32>,
    /// Per tenant number: its jobs by id.
    tenants: Vec<BTreeMap<JobId, Meta>>,
    /// Every tenant's jobs, by id then tenant number (the same id under two tenants is
    /// two jobs, as it is in the bucket).
    all: BTreeMap<(JobId, u32), Meta>,
    /// The jobs of each recurring schedule, as `(id, tenant number)` (only records that
    /// name a schedule take room here).
    by_schedule: HashMap<JobId, BTreeSet<(JobId, u32)>>,
    /// The schedule of each job in `by_schedule`, to unlink it when it goes.
    schedule_of: HashMap<(JobId, u32), JobId>,
    /// Per tenant number: how many of its records are in each status (usage and
    /// quotas read these instead of counting events).
    counts: Vec<StatusCounts>,
}

/// How many of one tenant's stored records are in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// Queued, or between attempts.
    pub pending: u64,
    /// Delayed, not due yet.
    pub scheduled: u64,
    /// Being computed.
    pub running: u64,
    /// Finished with a result.
    pub done: u64,
    /// Gave up.
    pub failed: u64,
    /// Cancelled by request.
    pub cancelled: u64,
    /// Records whose value did not parse (counted nowhere else).
    pub unreadable: u64,
}

impl StatusCounts {
    /// Every record counted.
    pub fn total(&self) -> u64 {
        self.pending
            + self.scheduled
            + self.running
            + self.done
            + self.failed
            + self.cancelled
            + self.unreadable
    }

    /// Queued, scheduled or running: not finished yet.
    pub fn in_flight(&self) -> u64 {
        self.pending + self.scheduled + self.running
    }

    fn slot(&mut self, meta: Meta) -> &mut u64 {
        match meta.0 {
            None => &mut self.unreadable,
            Some((JobStatus::Pending, _)) => &mut self.pending,
            Some((JobStatus::Scheduled, _)) => &mut self.scheduled,
            Some((JobStatus::Running, _)) => &mut self.running,
            Some((JobStatus::Done, _)) => &mut self.done,
            Some((JobStatus::Failed, _)) => &mut self.failed,
            Some((JobStatus::Cancelled, _)) => &mut self.cancelled,
        }
    }
}

impl Table {
    /// Index a record (the benchmark's entry point; the task uses [`Table::apply`]).
    #[doc(hidden)]
    pub fn insert(&mut self, tenant: &str, id: JobId, status: JobStatus, kind: JobKind) {
        self.put(tenant, id, Meta(Some((status, kind))), None);
    }

    /// Live records indexed.
    #[doc(hidden)]
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Tenants ever seen.
    pub(super) fn tenants(&self) -> usize {
        self.names.len()
    }

    /// Whether nothing is indexed.
    #[doc(hidden)]
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    fn put(&mut self, tenant: &str, id: JobId, meta: Meta, schedule: Option<JobId>) {
        let n = match self.numbers.get(tenant) {
            Some(n) => *n,
            None => {
                let n = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
                let name: Arc<str> = tenant.into();
                self.names.push(name.clone());
                self.numbers.insert(name, n);
                self.tenants.push(BTreeMap::new());
                self.counts.push(StatusCounts::default());
                n
            }
        };
        self.link(id, n, schedule);
        if let Some(jobs) = self.tenants.get_mut(n as usize) {
            let old = jobs.insert(id, meta);
            self.all.insert((id, n), meta);
            if let Some(counts) = self.counts.get_mut(n as usize) {
                if let Some(old) = old {
                    let c = counts.slot(old);
                    *c = c.saturating_sub(1);
                }
                *counts.slot(meta) += 1;
            }
        }
    }

    /// Record that job `(id, n)` belongs to `schedule` (or to none).
    fn link(&mut self, id: JobId, n: u32, schedule: Option<JobId>) {
        let old = match schedule {
            Some(s) => self.schedule_of.insert((id, n), s),
            None => self.schedule_of.remove(&(id, n)),
        };
        if old == schedule {
            return;
        }
        if let Some(old) = old {
            if let Some(set) = self.by_schedule.get_mut(&old) {
                set.remove(&(id, n));
                if set.is_empty() {
                    self.by_schedule.remove(&old);
                }
            }
        }
        if let Some(s) = schedule {
            self.by_schedule.entry(s).or_default().insert((id, n));
        }
    }

    fn remove(&mut self, tenant: &str, id: JobId) {
        if let Some(&n) = self.numbers.get(tenant) {
            self.link(id, n, None);
            let old = self
                .tenants
                .get_mut(n as usize)
                .and_then(|jobs| jobs.remove(&id));
            self.all.remove(&(id, n));
            if let (Some(old), Some(counts)) = (old, self.counts.get_mut(n as usize)) {
                let c = counts.slot(old);
                *c = c.saturating_sub(1);
            }
        }
    }

    /// `tenant`'s records per status (all zero for a tenant never seen).
    pub(super) fn counts(&self, tenant: &str) -> StatusCounts {
        self.numbers
            .get(tenant)
            .and_then(|&n| self.counts.get(n as usize))
            .copied()
            .unwrap_or_default()
    }

    /// Every tenant's counts added up (the whole bucket's records per status).
    pub(super) fn totals(&self) -> StatusCounts {
        self.counts
            .iter()
            .fold(StatusCounts::default(), |a, c| StatusCounts {
                pending: a.pending + c.pending,
                scheduled: a.scheduled + c.scheduled,
                running: a.running + c.running,
                done: a.done + c.done,
                failed: a.failed + c.failed,
                cancelled: a.cancelled + c.cancelled,
                unreadable: a.unreadable + c.unreadable,
            })
    }

    pub(super) fn apply(&mut self, change: Change) {
        match change {
            Change::Put {
                tenant,
                id,
                meta,
                schedule,
            } => self.put(&tenant, id, meta, schedule),
            Change::Remove { tenant, id } => self.remove(&tenant, id),
            Change::Skip => {}
        }
    }

    /// Up to `n` candidates whose indexed fields admit `q`, newest
    /// first from `from`, and whether more follow.
    pub(super) fn candidates(
        &self,
        q: &ListQuery,
        from: Start,
        n: usize,
    ) -> (Vec<Candidate>, bool) {
        let mut out = Vec::with_capacity(n.min(1024));
        let mut more = false;
        let mut take = |id: JobId, t: u32, meta: Meta| {
            if !meta.admits(q) {
                return true;
            }
            if out.len() == n {
                more = true;
                return false;
            }
            if let Some(name) = self.names.get(t as usize) {
                out.push(Candidate {
                    tenant: name.clone(),
                    id,
                    number: t,
                });
            }
            true
        };
        if let Some(schedule) = q.schedule {
            let tenant = match &q.tenant {
                Some(name) => match self.numbers.get(name.as_str()) {
                    Some(&t) => Some(t),
                    None => return (out, false),
                },
                None => None,
            };
            let Some(jobs) = self.by_schedule.get(&schedule) else {
                return (out, false);
            };
            let upper = match from {
                Start::Top => Bound::Unbounded,
                Start::Below(id) => Bound::Excluded((id, 0)),
                Start::After(id, t) => Bound::Excluded((id, t)),
            };
            for &(id, t) in jobs.range((Bound::Unbounded, upper)).rev() {
                if tenant.is_some_and(|want| want != t) {
                    continue;
                }
                let meta = self.all.get(&(id, t)).copied().unwrap_or(Meta(None));
                if !take(id, t, meta) {
                    break;
                }
            }
            return (out, more);
        }
        match &q.tenant {
            Some(tenant) => {
                let Some(&t) = self.numbers.get(tenant.as_str()) else {
                    return (out, false);
                };
                let Some(jobs) = self.tenants.get(t as usize) else {
                    return (out, false);
                };
                let upper = match from {
                    Start::Top => Bound::Unbounded,
                    Start::Below(id) | Start::After(id, _) => Bound::Excluded(id),
                };
                for (id, meta) in jobs.range((Bound::Unbounded, upper)).rev() {
                    if !take(*id, t, *meta) {
                        break;
                    }
                }
            }
            None => {
                let upper = match from {
                    Start::Top => Bound::Unbounded,
                    // Every tenant's job with this id is at or above (id, 0).
                    Start::Below(id) => Bound::Excluded((id, 0)),
                    Start::After(id, t) => Bound::Excluded((id, t)),
                };
                for ((id, t), meta) in self.all.range((Bound::Unbounded, upper)).rev() {
                    if !take(*id, *t, *meta) {
                        break;
                    }
                }
            }
        }
        (out, more)
    }
}

/// What one message of the bucket's stream does to the index.
#[derive(Debug)]
pub(super) enum Change {
    Put {
        tenant: String,
        id: JobId,
        meta: Meta,
        /// The recurring schedule the record names, if any.
        schedule: Option<JobId>,
    },
    Remove {
        tenant: String,
        id: JobId,
    },
    /// Not a job record key (nothing to index).
    Skip,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> JobId {
        JobId::new()
    }

    fn q(
        tenant: Option<&str>,
        status: Option<JobStatus>,
        before: Option<JobId>,
        limit: usize,
    ) -> ListQuery {
        ListQuery {
            tenant: tenant.map(str::to_string),
            status,
            kind: None,
            schedule: None,
            before,
            limit,
        }
    }

    fn ids(c: &(Vec<Candidate>, bool)) -> Vec<JobId> {
        c.0.iter().map(|c| c.id).collect()
    }

    #[test]
    fn candidates_walk_down_from_the_cursor_per_tenant_and_across_tenants() {
        let mut t = Table::default();
        let a: Vec<JobId> = (0..5).map(|_| id()).collect();
        let b: Vec<JobId> = (0..3).map(|_| id()).collect();
        for (i, x) in a.iter().enumerate() {
            let s = if i % 2 == 0 {
                JobStatus::Done
            } else {
                JobStatus::Pending
            };
            t.insert("a", *x, s, JobKind::Factorial);
        }
        for x in &b {
            t.insert("b", *x, JobStatus::Pending, JobKind::Sum);
        }
        let newest_a: Vec<JobId> = a.iter().rev().copied().collect();
        let c = t.candidates(&q(Some("a"), None, None, 2), Start::Top, 2);
        assert_eq!((ids(&c), c.1), (newest_a[..2].to_vec(), true));
        let c = t.candidates(&q(Some("a"), None, None, 10), Start::Below(a[2]), 10);
        assert_eq!((ids(&c), c.1), (vec![a[1], a[0]], false));
        let c = t.candidates(
            &q(Some("a"), Some(JobStatus::Done), None, 10),
            Start::Top,
            10,
        );
        assert_eq!(ids(&c), vec![a[4], a[2], a[0]]);
        let c = t.candidates(&q(Some("nobody"), None, None, 10), Start::Top, 10);
        assert!(c.0.is_empty() && !c.1);

        let mut every: Vec<JobId> = a.iter().chain(&b).copied().collect();
        every.sort_unstable_by(|x, y| y.cmp(x));
        let c = t.candidates(&q(None, None, None, 100), Start::Top, 100);
        assert_eq!((ids(&c), c.1), (every.clone(), false));
        let c = t.candidates(
            &q(None, Some(JobStatus::Pending), None, 100),
            Start::Top,
            100,
        );
        assert_eq!(c.0.len(), 2 + 3);

        // Exactly `n` matches left: no "more".
        let c = t.candidates(&q(Some("b"), None, None, 3), Start::Top, 3);
        assert_eq!((c.0.len(), c.1), (3, false));
    }

    #[test]
    fn removals_and_status_changes_update_both_orders() {
        let mut t = Table::default();
        let x = id();
        let y = id();
        t.insert("a", x, JobStatus::Pending, JobKind::Factorial);
        t.insert("a", y, JobStatus::Pending, JobKind::Factorial);
        t.insert("a", x, JobStatus::Done, JobKind::Factorial);
        let done = q(Some("a"), Some(JobStatus::Done), None, 10);
        assert_eq!(ids(&t.candidates(&done, Start::Top, 10)), vec![x]);
        let done_all = q(None, Some(JobStatus::Done), None, 10);
        assert_eq!(ids(&t.candidates(&done_all, Start::Top, 10)), vec![x]);
        t.apply(Change::Remove {
            tenant: "a".into(),
            id: x,
        });
        assert!(t.candidates(&done, Start::Top, 10).0.is_empty());
        assert!(t.candidates(&done_all, Start::Top, 10).0.is_empty());
        assert_eq!(t.len(), 1);
        // Removing an unknown key is a no-op.
        t.apply(Change::Remove {
            tenant: "zz".into(),
            id: y,
        });
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn status_counts_follow_puts_changes_and_removals() {
        let mut t = Table::default();
        let (x, y, z) = (id(), id(), id());
        t.insert("a", x, JobStatus::Pending, JobKind::Factorial);
        t.insert("a", y, JobStatus::Pending, JobKind::Sum);
        t.insert("b", z, JobStatus::Running, JobKind::Sum);
        t.insert("a", x, JobStatus::Running, JobKind::Factorial);
        t.insert("a", x, JobStatus::Done, JobKind::Factorial);
        let a = t.counts("a");
        assert_eq!((a.pending, a.running, a.done, a.total()), (1, 0, 1, 2));
        assert_eq!(a.in_flight(), 1);
        t.apply(Change::Remove {
            tenant: "a".into(),
            id: x,
        });
        t.apply(Change::Remove {
            tenant: "a".into(),
            id: x,
        });
        let a = t.counts("a");
        assert_eq!((a.pending, a.done, a.total()), (1, 0, 1));
        assert_eq!(t.counts("b").running, 1);
        assert_eq!(t.counts("nobody"), StatusCounts::default());
        t.put("b", id(), Meta(None), None);
        assert_eq!((t.counts("b").unreadable, t.counts("b").total()), (1, 2));
        let all = t.totals();
        assert_eq!(all.total(), t.counts("a").total() + t.counts("b").total());
        assert_eq!(all.running, t.counts("a").running + 1);
    }

    #[test]
    fn an_unparsable_value_stays_a_candidate_for_every_filter() {
        let mut t = Table::default();
        let x = id();
        t.put("a", x, Meta(None), None);
        let c = t.candidates(
            &q(Some("a"), Some(JobStatus::Running), None, 10),
            Start::Top,
            10,
        );
        assert_eq!(ids(&c), vec![x]);
    }
}
