//! A full JetStream store, told apart from an unreachable one.
//!
//! nats-server refuses a write when a storage limit is reached, with an error code
//! that names which (checked against nats-server 2.15.1):
//!
//! | code | description | limit |
//! |---|---|---|
//! | 10023 | insufficient resources | the server's `max_file_store` (or `max_memory_store`) is used up |
//! | 10047 | insufficient storage resources available | the server cannot reserve a stream's `max_bytes` within `max_file_store` |
//! | 10002 | resource limits exceeded for account | the account's JetStream `max_file` (or `max_mem`) |
//!
//! (A stream's own `max_msgs`/`max_bytes` with discard-new answer 10077; for `JOBS`
//! that is `--max-queued`, a 429 "queue full", not a full store.)
//!
//! An ordinary client cannot read the server's `max_file_store` (account info shows only
//! account limits), so [`probe`] also makes one tiny write, replacing the previous one,
//! and reports the limit that refuses it.

use async_nats::jetstream;
use jetmill_natsx::Jet;
use serde::Serialize;

/// `Retry-After` seconds for a full store: space comes back when workers drain the
/// queue or an operator acts, not within a second.
pub const RETRY_AFTER_SECS: u64 = 30;
/// Share of an account limit at which the store counts as nearly full.
pub const NEAR_FULL: f64 = 0.9;
/// KV key (in the `idempotency` bucket) that [`probe`] rewrites.
const PROBE_KEY: &str = "_store-probe";

/// A storage limit that refused a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StoreLimit {
    /// JetStream's error code.
    pub err_code: u64,
    /// The setting that is exhausted, as it is named in the server or account config.
    pub limit: &'static str,
    /// What that means, for people.
    pub reason: &'static str,
}

impl StoreLimit {
    /// The limit behind a JetStream error code, if it is a storage limit.
    pub fn from_code(code: u64) -> Option<StoreLimit> {
        let (limit, reason) = match code {
            10023 => (
                "max_file_store",
                "the nats-server's JetStream storage (max_file_store) is used up",
            ),
            10047 => (
                "max_file_store",
                "the nats-server has no JetStream storage left to reserve (max_file_store)",
            ),
            10002 => (
                "account max_file",
                "the account's JetStream storage limit (jetstream max_file) is reached",
            ),
            _ => return None,
        };
        Some(StoreLimit {
            err_code: code,
            limit,
            reason,
        })
    }

    /// The storage limit named anywhere in `e`'s `source()` chain.
    pub fn find(e: &(dyn std::error::Error + 'static)) -> Option<StoreLimit> {
        let mut cur = Some(e);
        while let Some(c) = cur {
            if let Some(js) = c.downcast_ref::<jetstream::Error>() {
                if let Some(limit) = StoreLimit::from_code(js.error_code().0) {
                    return Some(limit);
                }
            }
            cur = c.source();
        }
        None
    }
}

/// What the account stores, what it may store, and whether a write is refused now.
#[derive(Debug, Clone, Serialize)]
pub struct StoreReport {
    /// File storage used by this account's streams, in bytes.
    pub used_bytes: u64,
    /// File storage reserved by streams with a `max_bytes`, in bytes.
    pub reserved_bytes: u64,
    /// The account's file storage limit, if it has one (the server's own
    /// `max_file_store` is not visible to clients; `full` tells when it is reached).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_limit_bytes: Option<u64>,
    /// The limit that refused the probe write: the store is full.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full: Option<StoreLimit>,
}

impl StoreReport {
    /// Used share of the account limit, if there is one.
    pub fn used_share(&self) -> Option<f64> {
        self.account_limit_bytes
            .filter(|&l| l > 0)
            .map(|l| self.used_bytes as f64 / l as f64)
    }

    /// Full, or at [`NEAR_FULL`] of an account limit.
    pub fn near_full(&self) -> bool {
        self.full.is_some() || self.used_share().is_some_and(|s| s >= NEAR_FULL)
    }
}

/// Why the store could not be examined.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The account info request failed.
    #[error("reading JetStream account info: {0}")]
    Account(#[source] jetstream::context::AccountError),
    /// The probe write failed for another reason than a storage limit.
    #[error("probe write: {0}")]
    Write(#[source] jetstream::kv::PutError),
}

/// Read the account's storage use, and try one tiny write to see whether a limit
/// refuses it (one KV key, history 1: the store does not grow).
pub async fn probe(jet: &Jet) -> Result<StoreReport, ProbeError> {
    let account = jet.js.query_account().await.map_err(ProbeError::Account)?;
    let limit = account.limits.max_storage.unwrap_or(-1);
    let full = match jet
        .idempotency
        .put(PROBE_KEY, jetmill_proto::now_ms().to_string().into())
        .await
    {
        Ok(_) => None,
        Err(e) => match StoreLimit::find(&e) {
            Some(limit) => Some(limit),
            None => return Err(ProbeError::Write(e)),
        },
    };
    Ok(StoreReport {
        used_bytes: account.storage,
        reserved_bytes: account.reserved_storage,
        account_limit_bytes: u64::try_from(limit).ok().filter(|&l| l > 0),
        full,
    })
}
