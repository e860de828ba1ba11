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
    opts.connect(args.url.as_str())
        .await
        .map_err(|e| NatsxError::Connect {
            url: args.url.clone(),
            source: Box::new(e),
        })
}
