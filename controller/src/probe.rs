//! `jetmill probe URL`: an HTTP health check for container images.
//!
//! The runtime images have no shell, curl or wget (a scratch-like base works), so their
//! `HEALTHCHECK`s run the `jetmill` binary itself: `GET URL`, exit 0 on a 2xx answer,
//! otherwise print why and exit 1 (Docker's "unhealthy").

use crate::cli::parse_duration;
use std::time::Duration;

/// Flags of `jetmill probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// The URL to GET, e.g. `http://127.0.0.1:8080/readyz`.
    pub url: String,
    /// Give up after this long (e.g. 500ms, 3s).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// GET the URL; `Ok(true)` on a 2xx status, `Ok(false)` (after printing why) otherwise.
pub async fn run(args: &ProbeArgs) -> anyhow::Result<bool> {
    // Exit 1 (not 2, which Docker reserves) for every failure, a bad URL included.
    let url = match reqwest::Url::parse(&args.url) {
        Ok(url) => url,
        Err(e) => {
            eprintln!("probe: invalid URL {:?}: {e}", args.url);
            return Ok(false);
        }
    };
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .no_proxy()
        .build()?;
    match client.get(url.clone()).send().await {
        Ok(resp) if resp.status().is_success() => Ok(true),
        Ok(resp) => {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            let body: String = body.chars().take(300).collect();
            eprintln!("probe {url}: HTTP {status}: {}", body.trim());
            Ok(false)
        }
        Err(e) => {
            eprintln!("probe {url}: {e}");
            Ok(false)
        }
    }
}
