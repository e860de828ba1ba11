//! The worker's memory budget (`--memory-budget`, else its cgroup's limit, which is how
//! it runs under swarm resource limits): a job whose estimated peak does not fit what
//! the running jobs leave is handed back (not an attempt), one that no live worker's
//! budget can ever hold fails at once with the reason, instead of an OOM kill and a
//! redelivery loop.

use crate::context::WorkerCtx;
use jetmill_proto::JobMessage;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How long a job that does not fit now waits before it is delivered again.
const WAIT: Duration = Duration::from_secs(2);

/// This process's budget: the flag, else the cgroup's memory limit, else none.
pub fn budget(flag: Option<u64>) -> Option<u64> {
    flag.or_else(cgroup_limit)
}

/// cgroup v2 `memory.max`, or v1 `memory.limit_in_bytes` (v1 says "no limit" with a
/// huge number).
fn cgroup_limit() -> Option<u64> {
    let v2 = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok();
    let v1 = || std::fs::read_to_string("/sys/fs/cgroup/memory/memory.limit_in_bytes").ok();
    let text = v2.or_else(v1)?;
    text.trim().parse::<u64>().ok().filter(|&b| b < (1 << 60))
}

/// Parse `--memory-budget`: bytes, or a number with `k`, `M`, `G`, `T` (powers of 1024).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let unit = t[i..].trim_end_matches(['b', 'B', 'i']);
            let mult: u64 = match unit.to_ascii_lowercase().as_str() {
                "k" => 1 << 10,
                "m" => 1 << 20,
                "g" => 1 << 30,
                "t" => 1 << 40,
                _ => return Err(format!("{s:?}: the unit must be k, M, G or T (e.g. 2G)")),
            };
            (&t[..i], mult)
        }
        None => (t, 1),
    };
    let value: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 2G, 512M or bytes)"))?;
    if !(value.is_finite() && value > 0.0) {
        return Err(format!("{s:?}: a budget must be positive"));
    }
    Ok((value * mult as f64) as u64)
}

/// The estimated peak memory of `job`'s kernel, bytes.
pub fn estimate(job: &JobMessage) -> u64 {
    jetmill_compute::task::estimated_peak_bytes(&crate::execute::to_task(&job.spec))
}

/// What the budget says about starting a job now.
pub enum Fit<'a> {
    /// Start it; the reservation is given back when this is dropped.
    Run(Reservation<'a>),
    /// Not now (the running jobs hold the room, or it is bigger than this worker but a
    /// live worker can hold it): deliver it again after this long.
    Wait(Duration),
    /// No live worker's budget can hold it: fail it with this reason.
    Never(String),
}

/// Memory reserved for a running job.
pub struct Reservation<'a> {
    ctx: Option<&'a WorkerCtx>,
    bytes: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Some(ctx) = self.ctx {
            ctx.reserved.fetch_sub(self.bytes, Ordering::Relaxed);
        }
    }
}

fn gb(b: u64) -> String {
    format!("{:.2} GB", b as f64 / 1e9)
}

/// Whether `job` fits this worker's budget now.
pub async fn admit<'a>(ctx: &'a WorkerCtx, job: &JobMessage) -> Fit<'a> {
    let Some(budget) = ctx.memory_budget else {
        return Fit::Run(Reservation {
            ctx: None,
            bytes: 0,
        });
    };
    let need = estimate(job);
    if need <= budget {
        let mut held = ctx.reserved.load(Ordering::Relaxed);
        loop {
            // The first job always runs on an idle worker (its estimate fits the budget).
            if held > 0 && held + need > budget {
                return Fit::Wait(WAIT);
            }
            match ctx.reserved.compare_exchange(
                held,
                held + need,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Fit::Run(Reservation {
                        ctx: Some(ctx),
                        bytes: need,
                    })
                }
                Err(now) => held = now,
            }
        }
    }
    // Bigger than this worker: another live worker may hold it.
    match jetmill_natsx::control::workers(&ctx.jet).await {
        Ok(reports) => {
            let room = reports
                .iter()
                .filter(|r| r.id != ctx.worker_id)
                .map(|r| r.memory_budget)
                .max_by_key(|b| b.unwrap_or(u64::MAX));
            match room {
                Some(None) => Fit::Wait(WAIT),
                Some(Some(b)) if b >= need => Fit::Wait(WAIT),
                other => {
                    let largest = other.flatten().unwrap_or(0).max(budget);
                    Fit::Never(format!(
                        "needs about {} of memory (estimated peak), but the largest worker budget is {}: run a worker with a larger --memory-budget (or memory limit), or split it (POST /v1/workflows with {{\"factorial\": {{\"input\": n, \"split\": k}}}})",
                        gb(need),
                        gb(largest)
                    ))
                }
            }
        }
        // Cannot tell: wait rather than fail a job that might fit elsewhere.
        Err(_) => Fit::Wait(WAIT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_read_with_units() {
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("1.5GiB"), Ok(3 << 29));
        assert!(parse_bytes("2X").is_err());
        assert!(parse_bytes("-1G").is_err());
        assert!(parse_bytes("lots").is_err());
    }
}
