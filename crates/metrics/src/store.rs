//! JetStream storage: what the account uses, its limit, and whether writes are refused.
//!
//! Set by the gateway from its store probe (account info plus one tiny write) at each
//! scrape and each `/readyz`.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Gauges of the JetStream store (gateway).
#[derive(Default)]
pub struct StoreGauges {
    used: Gauge,
    reserved: Gauge,
    limit: Gauge,
    full: Gauge,
}

impl StoreGauges {
    pub(crate) fn register(&self, r: &mut Registry) {
        r.register(
            "jetmill_store_used_bytes",
            "JetStream file storage used by the account's streams",
            self.used.clone(),
        );
        r.register(
            "jetmill_store_reserved_bytes",
            "JetStream file storage reserved by streams with a max_bytes",
            self.reserved.clone(),
        );
        r.register(
            "jetmill_store_limit_bytes",
            "The account's JetStream file storage limit (0: none; the server's max_file_store is not visible to clients)",
            self.limit.clone(),
        );
        r.register(
            "jetmill_store_full",
            "1 while JetStream refuses writes because a storage limit is reached (submits answer 507)",
            self.full.clone(),
        );
    }

    /// Record a reading of the store (`limit` is `None` without an account limit).
    pub fn set(&self, used: u64, reserved: u64, limit: Option<u64>, full: bool) {
        let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.used.set(g(used));
        self.reserved.set(g(reserved));
        self.limit.set(limit.map_or(0, g));
        self.set_full(full);
    }

    /// Record whether the last probe write was refused for a storage limit.
    pub fn set_full(&self, full: bool) {
        self.full.set(i64::from(full));
    }

    /// Whether the store was last seen full.
    pub fn is_full(&self) -> bool {
        self.full.get() != 0
    }
}
