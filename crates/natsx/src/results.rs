//! Result summaries, and results too large for a record kept in the Object Store.

use crate::NatsxError;
use async_nats::jetstream::object_store::ObjectStore;
use jetmill_proto::{names, JobId, ResultInfo, ResultLocation};
use sha2::{Digest, Sha256};

/// Digits shown at each end of a result preview.
pub const PREVIEW_DIGITS: usize = 50;

/// Digit count, size, SHA-256 and preview of a decimal text.
pub fn summarize(decimal: &str, location: ResultLocation) -> ResultInfo {
    let digits = decimal.trim_start_matches('-');
    let head_end = floor_char_boundary(decimal, PREVIEW_DIGITS);
    let tail_start = decimal.len().saturating_sub(PREVIEW_DIGITS);
    ResultInfo {
        digits: digits.len() as u64,
        bytes: decimal.len() as u64,
        sha256: hex::encode(Sha256::digest(decimal.as_bytes())),
        head: decimal[..head_end].to_string(),
        tail: decimal.get(tail_start..).unwrap_or_default().to_string(),
        location,
    }
}

fn floor_char_boundary(s: &str, i: usize) -> usize {
    (0..=i.min(s.len()))
        .rev()
        .find(|&j| s.is_char_boundary(j))
        .unwrap_or(0)
}

/// Store a large result under the job's object name; returns its location.
pub async fn put_large(
    store: &ObjectStore,
    bucket: &str,
    id: &JobId,
    decimal: &str,
) -> Result<ResultLocation, NatsxError> {
    let name = names::result_object(id);
    let mut reader = decimal.as_bytes();
    store
        .put(name.as_str(), &mut reader)
        .await
        .map_err(NatsxError::js("store result object"))?;
    Ok(ResultLocation::Object {
        bucket: bucket.to_string(),
        name,
    })
}
