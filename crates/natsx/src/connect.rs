//! Connection flags (like the `nats` CLI's) and connecting with them.

use crate::NatsxError;
use std::path::PathBuf;
use std::time::Duration;

/// How to reach NATS; flattened into every binary's flags.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL(s), comma separated.
    #[arg(
        long = "server",
        short = 's',
        env = "JETMILL_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub url: String,
    /// NATS credentials file (.creds).
    #[arg(long, env = "JETMILL_NATS_CREDS")]
    pub creds: Option<PathBuf>,
    /// NATS user name (with --password).
    #[arg(long, env = "JETMILL_NATS_USER")]
    pub user: Option<String>,
    /// NATS password (with --user).
    #[arg(long, env = "JETMILL_NATS_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

impl NatsArgs {
    /// Options for a server at `url` with no credentials.
    pub fn with_url(url: impl Into<String>) -> Self {
        NatsArgs {
            url: url.into(),
            creds: None,
            user: None,
            password: None,
        }
    }
}

/// Connect with `args`, naming the connection `name` (shown by `nats server report connections`).
///
/// Fails fast with [`NatsxError::Connect`] when the server is unreachable at start;
/// once connected, the client reconnects on its own forever.
pub async fn connect(args: &NatsArgs, name: &str) -> Result<async_nats::Client, NatsxError> {
    let mut opts = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(10)));
    if let Some(creds) = &args.creds {
        opts = opts.credentials_file(creds).await.map_err(|e| {
            NatsxError::Options(format!(
                "cannot read credentials file {}: {e}",
                creds.display()
            ))
        })?;
    }
    match (&args.user, &args.password) {
        (Some(u), Some(p)) => opts = opts.user_and_password(u.clone(), p.clone()),
        (None, None) => {}
        _ => {
            return Err(NatsxError::Options(
                "--user and --password go together".into(),
            ))
        }
    }
    let addrs = server_addrs(&args.url)?;
    opts.connect(addrs.as_slice())
        .await
        .map_err(|e| NatsxError::Connect {
            url: args.url.clone(),
            source: Box::new(e),
        })
}

/// Parse `nats://a:4222,nats://b:4222` into server addresses, naming a bad one.
fn server_addrs(urls: &str) -> Result<Vec<async_nats::ServerAddr>, NatsxError> {
    let addrs: Vec<async_nats::ServerAddr> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse()
                .map_err(|e| NatsxError::Options(format!("invalid NATS URL {u:?}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    if addrs.is_empty() {
        return Err(NatsxError::Options(
            "no NATS URL given (--server / JETMILL_NATS_URL)".into(),
        ));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::server_addrs;

    #[test]
    fn parses_comma_separated_urls_and_names_bad_ones() {
        assert_eq!(
            server_addrs("nats://a:4222, nats://b:4223")
                .map(|a| a.len())
                .ok(),
            Some(2)
        );
        let err = server_addrs("nats://a:4222,http://[bad").expect_err("bad url");
        assert!(err.to_string().contains("http://[bad"), "{err}");
        assert!(server_addrs(" , ").is_err());
    }
}
