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

/// Size and SHA-256 of a binary result (a split factorial's part: no digits, no preview).
pub fn summarize_binary(bytes: &[u8], location: ResultLocation) -> ResultInfo {
    ResultInfo {
        digits: 0,
        bytes: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(bytes)),
        head: String::new(),
        tail: String::new(),
        location,
    }
}

fn floor_char_boundary(s: &str, i: usize) -> usize {
    (0..=i.min(s.len()))
        .rev()
        .find(|&j| s.is_char_boundary(j))
        .unwrap_or(0)
}

/// Bytes per chunk of a result object (the object store's default).
const CHUNK: usize = 128 * 1024;

/// Store a large result under the job's object name, every message of it expiring
/// after `ttl` (the job's retention); returns its location.
///
/// The object store layout of `async_nats` (chunks on `$O.<bucket>.C.<nuid>`, then the
/// JSON info on `$O.<bucket>.M.<base64url(name)>` rolling up the subject), written here
/// because its `put` sets no per-message TTL; reads go through `async_nats` as before.
/// An object this replaces (a retried job) has its old chunks purged.
pub async fn put_large(
    store: &ObjectStore,
    js: &async_nats::jetstream::Context,
    bucket: &str,
    id: &JobId,
    decimal: &str,
    ttl: std::time::Duration,
) -> Result<ResultLocation, NatsxError> {
    put_object(
        store,
        js,
        bucket,
        names::result_object(id),
        decimal.as_bytes(),
        ttl,
    )
    .await
}

/// [`put_large`] for any bytes under any object name (a split factorial's binary parts).
pub async fn put_object(
    store: &ObjectStore,
    js: &async_nats::jetstream::Context,
    bucket: &str,
    name: String,
    bytes: &[u8],
    ttl: std::time::Duration,
) -> Result<ResultLocation, NatsxError> {
    use async_nats::jetstream::object_store::{ObjectInfo, ObjectOptions};
    use base64::Engine;
    let old = store.info(name.as_str()).await.ok();
    let nuid = uuid::Uuid::now_v7().simple().to_string();
    let ttl_secs = ttl.as_secs().max(1).to_string();
    let with_ttl = || {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-TTL", ttl_secs.as_str());
        h
    };
    let chunk_subject = format!("$O.{bucket}.C.{nuid}");
    let mut acks = Vec::new();
    for chunk in bytes.chunks(CHUNK) {
        acks.push(
            js.publish_with_headers(
                chunk_subject.clone(),
                with_ttl(),
                bytes::Bytes::copy_from_slice(chunk),
            )
            .await
            .map_err(NatsxError::js("store result chunk"))?,
        );
    }
    for ack in acks {
        ack.await.map_err(NatsxError::js("store result chunk"))?;
    }
    let digest = Sha256::digest(bytes);
    let info = ObjectInfo {
        name: name.clone(),
        description: None,
        metadata: Default::default(),
        headers: None,
        options: Some(ObjectOptions {
            link: None,
            max_chunk_size: Some(CHUNK),
        }),
        bucket: bucket.to_string(),
        nuid,
        size: bytes.len(),
        chunks: bytes.len().div_ceil(CHUNK),
        modified: Some(time::OffsetDateTime::now_utc()),
        digest: Some(format!(
            "SHA-256={}",
            base64::engine::general_purpose::URL_SAFE.encode(digest)
        )),
        deleted: false,
    };
    let meta = serde_json::to_vec(&info).map_err(|e| NatsxError::Corrupt {
        what: "result object info".into(),
        detail: e.to_string(),
    })?;
    let mut headers = with_ttl();
    headers.insert("Nats-Rollup", "sub");
    let meta_subject = format!(
        "$O.{bucket}.M.{}",
        base64::engine::general_purpose::URL_SAFE.encode(&name)
    );
    js.publish_with_headers(meta_subject, headers, meta.into())
        .await
        .map_err(NatsxError::js("store result object info"))?
        .await
        .map_err(NatsxError::js("store result object info"))?;
    if let Some(old) = old.filter(|o| !o.nuid.is_empty()) {
        // Best effort: what is left expires with its own TTL (or stays, from before TTLs).
        if let Err(e) = js
            .get_stream(format!("OBJ_{bucket}"))
            .await
            .map_err(NatsxError::js("open the results stream"))?
            .purge()
            .filter(format!("$O.{bucket}.C.{}", old.nuid))
            .await
        {
            tracing::warn!(object = %name, error = %e, "could not purge an overwritten result's old chunks");
        }
    }
    Ok(ResultLocation::Object {
        bucket: bucket.to_string(),
        name,
    })
}

/// Open the large result `name` for reading (streamed to a client as it arrives).
pub async fn open(
    store: &ObjectStore,
    name: &str,
) -> Result<async_nats::jetstream::object_store::Object, NatsxError> {
    store
        .get(name)
        .await
        .map_err(NatsxError::js("read result object"))
}

/// The whole object `name` as bytes (`size_hint`: its length, if known).
pub async fn read_bytes(
    store: &ObjectStore,
    name: &str,
    size_hint: usize,
) -> Result<Vec<u8>, NatsxError> {
    use tokio::io::AsyncReadExt;
    let mut object = open(store, name).await?;
    let mut out = Vec::with_capacity(size_hint);
    object
        .read_to_end(&mut out)
        .await
        .map_err(NatsxError::js("read result object"))?;
    Ok(out)
}

/// The whole decimal text of the large result `name` (`size_hint`: its length in
/// bytes, if known, to allocate once).
pub async fn read_text(
    store: &ObjectStore,
    name: &str,
    size_hint: usize,
) -> Result<String, NatsxError> {
    use tokio::io::AsyncReadExt;
    let mut object = open(store, name).await?;
    let mut text = String::with_capacity(size_hint);
    object
        .read_to_string(&mut text)
        .await
        .map_err(NatsxError::js("read result object"))?;
    Ok(text)
}
