//! The one error type of this crate; the `kind` tells callers what to do.

/// What went wrong talking to NATS, by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum NatsxError {
    /// NATS cannot be reached (retry later, check the URL).
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Credentials or options are unusable (fix the configuration).
    #[error("invalid NATS options: {0}")]
    Options(String),
    /// A stream, consumer or bucket could not be created or verified.
    #[error("cannot provision {what}: {source}")]
    Provision {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// JetStream did not answer about a stream, consumer or bucket for now (timed out,
    /// or 503 "temporarily unavailable"): a cluster electing its leaders; retry.
    #[error("JetStream did not answer about {what} (retry shortly): {source}")]
    Unavailable {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stream, consumer or bucket does not exist, and creating it got no answer (what a
    /// NATS user without the permission sees): an operator must run `jetmill provision`.
    #[error("{what} does not exist and could not be created (does this NATS user lack the permission? run `jetmill provision` with operator credentials): {source}")]
    Missing {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A JetStream operation (publish, KV, object store) failed.
    #[error("{op} failed: {source}")]
    JetStream {
        op: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Stored data could not be read (a record that is not jetmill JSON).
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: String, detail: String },
}

impl NatsxError {
    /// Wrap any JetStream error with the operation that failed.
    pub fn js<E: std::error::Error + Send + Sync + 'static>(
        op: &'static str,
    ) -> impl FnOnce(E) -> NatsxError {
        move |e| NatsxError::JetStream {
            op,
            source: Box::new(e),
        }
    }

    /// The stream position of a consumed message, or a corrupt-data error naming `what`.
    pub(crate) fn info_of<'m>(
        msg: &'m async_nats::jetstream::Message,
        what: &str,
    ) -> Result<async_nats::jetstream::message::Info<'m>, NatsxError> {
        msg.info().map_err(|e| NatsxError::Corrupt {
            what: what.into(),
            detail: e.to_string(),
        })
    }
}
