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
    /// File holding the NATS password (with --user), e.g. a Docker secret at
    /// `/run/secrets/nats-worker-password`; a trailing newline is ignored.
    #[arg(long, env = "JETMILL_NATS_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
}

impl NatsArgs {
    /// Options for a server at `url` with no credentials.
    pub fn with_url(url: impl Into<String>) -> Self {
        NatsArgs {
            url: url.into(),
            creds: None,
            user: None,
            password: None,
            password_file: None,
        }
    }

    /// The password from `--password` or `--password-file` (refusing both).
    pub fn password(&self) -> Result<Option<String>, NatsxError> {
        match (&self.password, &self.password_file) {
            (Some(_), Some(_)) => Err(NatsxError::Options(
                "give the NATS password once: --password or --password-file, not both".into(),
            )),
            (Some(p), None) => Ok(Some(p.clone())),
            (None, Some(path)) => read_secret_file(path)
                .map(Some)
                .map_err(|e| NatsxError::Options(format!("--password-file: {e}"))),
            (None, None) => Ok(None),
        }
    }
}

/// Read a secret from `path` (a Docker secret, a file an operator wrote), without its
/// trailing newline; an unreadable or empty file is an error naming the path.
pub fn read_secret_file(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(secret.to_string())
}

/// The last `Permissions Violation` a server reported on any connection of this process
/// (its whole text, naming the subject). A refused request gets no answer and times
/// out, so this is what lets a command say *why* it timed out.
static LAST_PERMISSION_VIOLATION: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// The last `Permissions Violation` any connection of this process was told of, e.g.
/// `Some("Permissions Violation for Publish to ...")`: a refused request only times out,
/// so this is what lets a command say why.
pub fn last_permission_violation() -> Option<String> {
    LAST_PERMISSION_VIOLATION
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

fn note_server_error(e: &async_nats::ServerError) {
    let text = e.to_string();
    if let Some(at) = text.find("Permissions Violation") {
        *LAST_PERMISSION_VIOLATION
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(text[at..].to_string());
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
    match (&args.user, args.password()?) {
        (Some(u), Some(p)) => opts = opts.user_and_password(u.clone(), p),
        (None, None) => {}
        _ => {
            return Err(NatsxError::Options(
                "--user and --password (or --password-file) go together".into(),
            ))
        }
    }
    // A refused publish or subscribe (a user without the permission) is reported by the
    // server only on the connection, not to the request: log it, it names the subject.
    opts = opts.event_callback(|event| async move {
        match event {
            async_nats::Event::ServerError(e) => {
                note_server_error(&e);
                tracing::warn!(error = %e, "NATS server error")
            }
            async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS"),
            async_nats::Event::Connected => tracing::info!("connected to NATS"),
            other => tracing::debug!(event = %other, "NATS connection event"),
        }
    });
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
    use super::{server_addrs, NatsArgs};

    #[test]
    fn a_password_file_is_read_without_its_newline_and_conflicts_are_refused() {
        let dir = std::env::temp_dir().join(format!("jetmill-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("nats-worker-password");
        std::fs::write(&file, "s3cret\n").expect("write");
        let mut args = NatsArgs::with_url("nats://127.0.0.1:4222");
        args.password_file = Some(file.clone());
        assert_eq!(args.password().ok().flatten().as_deref(), Some("s3cret"));

        args.password = Some("other".into());
        let err = args.password().expect_err("both given");
        assert!(err.to_string().contains("not both"), "{err}");

        args.password = None;
        args.password_file = Some(dir.join("missing"));
        let err = args.password().expect_err("missing file");
        assert!(err.to_string().contains("missing"), "{err}");

        std::fs::write(&file, "\n").expect("write");
        args.password_file = Some(file);
        let err = args.password().expect_err("empty file");
        assert!(err.to_string().contains("empty"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

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
