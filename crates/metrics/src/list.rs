//! Listing pages by where they came from: the gateway's in-memory index of the job
//! records, or a scan of the bucket (index off, or not caught up in time).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Label set `{source}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// `index` or `scan`.
    pub source: &'static str,
}

/// Where a listing page came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListSource {
    /// The in-memory index.
    Index,
    /// A scan of the bucket.
    Scan,
}

/// Listing counters (gateway).
#[derive(Default)]
pub struct ListMetrics {
    pages: Family<SourceLabel, Counter>,
}

impl ListMetrics {
    pub(crate) fn register(&self, r: &mut Registry) {
        r.register(
            "jetmill_list_pages",
            "GET /v1/jobs pages served, by source: the in-memory index, or a scan of the \
             bucket (index off, bootstrapping, down or behind)",
            self.pages.clone(),
        );
    }

    /// Count one page served from `source`.
    pub fn page(&self, source: ListSource) {
        let source = match source {
            ListSource::Index => "index",
            ListSource::Scan => "scan",
        };
        self.pages.get_or_create(&SourceLabel { source }).inc();
    }
}
