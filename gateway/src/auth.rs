//! Who is calling: `Authorization: Bearer <token>` resolved to a [`Principal`].
//!
//! A token is either a static API key (from `--api-keys`, checked first) or a JWT:
//! HS256 with `--jwt-secret`, or RS256/EdDSA with the public key in `--jwt-public-key`.
//! A JWT's `sub` is the tenant, `exp` is required, and a `scope` containing `admin`
//! (space-separated string or array) lets the caller see every tenant's jobs.
//!
//! With nothing configured, auth is off and every caller is the
//! [`names::DEFAULT_TENANT`]; the gateway then refuses a non-loopback address unless
//! `--allow-open` is given (see `startup.rs`).

use crate::{ApiError, AppState};
use anyhow::Context;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use jetmill_proto::names;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Authentication flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AuthArgs {
    /// Shared secret for HS256 bearer JWTs (their `sub` is the tenant).
    #[arg(long, env = "JETMILL_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// File holding the HS256 secret (e.g. the Docker secret `/run/secrets/jwt-secret`);
    /// a trailing newline is ignored.
    #[arg(long, env = "JETMILL_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// PEM public key (RSA or Ed25519) for RS256/EdDSA bearer JWTs.
    #[arg(long, env = "JETMILL_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// File of static API keys, one `<key> <tenant> [admin]` per line (`#` starts a comment).
    #[arg(long, env = "JETMILL_API_KEYS")]
    pub api_keys: Option<PathBuf>,
    /// Serve without authentication on a non-loopback address (every caller is tenant `public`).
    #[arg(long, env = "JETMILL_ALLOW_OPEN")]
    pub allow_open: bool,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant that owns the jobs this caller submits, and whose jobs it sees.
    pub tenant: String,
    /// May read every tenant's jobs.
    pub admin: bool,
}

impl Principal {
    /// The caller of a gateway without auth.
    pub fn open() -> Self {
        Principal {
            tenant: names::DEFAULT_TENANT.to_string(),
            admin: false,
        }
    }

    /// Whether this caller may see a job of `tenant`.
    pub fn can_see(&self, tenant: &str) -> bool {
        self.admin || self.tenant == tenant
    }
}

/// Why a request is not authenticated (always a 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("missing bearer token: send `Authorization: Bearer <token>`")]
    Missing,
    /// The header is not `Bearer <token>`.
    #[error("the Authorization header must be `Bearer <token>`")]
    Malformed,
    /// The token is expired.
    #[error("the token has expired")]
    Expired,
    /// The token is not a known API key nor a JWT we can verify.
    #[error("invalid token: {0}")]
    Invalid(&'static str),
}

/// The configured verifiers; shared by every request.
#[derive(Default)]
pub struct Auth {
    /// Verifier for HS256 JWTs.
    hs256: Option<DecodingKey>,
    /// Verifier for public-key JWTs, with the algorithms its key type allows.
    public: Option<(DecodingKey, Vec<Algorithm>)>,
    /// SHA-256 of each API key -> its caller (hashed so lookups do not compare secrets).
    api_keys: HashMap<[u8; 32], Principal>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    scope: Option<serde_json::Value>,
}

impl Auth {
    /// Load the keys the flags name; errors say which file or value is unusable.
    pub fn from_args(args: &AuthArgs) -> anyhow::Result<Auth> {
        let mut auth = Auth::default();
        let from_file = match &args.jwt_secret_file {
            Some(_) if args.jwt_secret.is_some() => anyhow::bail!(
                "give the JWT secret once: --jwt-secret or --jwt-secret-file, not both"
            ),
            Some(path) => Some(
                jetmill_natsx::connect::read_secret_file(path)
                    .map_err(|e| anyhow::anyhow!("--jwt-secret-file: {e}"))?,
            ),
            None => None,
        };
        let secret = from_file.as_deref().or(args.jwt_secret.as_deref());
        if let Some(secret) = secret.filter(|s| !s.is_empty()) {
            auth.hs256 = Some(DecodingKey::from_secret(secret.as_bytes()));
        }
        if let Some(path) = &args.jwt_public_key {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading --jwt-public-key {}", path.display()))?;
            let key = DecodingKey::from_rsa_pem(&pem)
                .or_else(|_| DecodingKey::from_ed_pem(&pem))
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| {
                    format!(
                        "--jwt-public-key {} is not an RSA or Ed25519 public key in PEM",
                        path.display()
                    )
                })?;
            let algorithms = key.family().algorithms().to_vec();
            auth.public = Some((key, algorithms));
        }
        if let Some(path) = &args.api_keys {
            auth.api_keys = load_api_keys(path)?;
        }
        Ok(auth)
    }

    /// Whether any way to authenticate is configured (if not, everyone is `public`).
    pub fn is_enabled(&self) -> bool {
        self.hs256.is_some() || self.public.is_some() || !self.api_keys.is_empty()
    }

    /// Resolve an `Authorization` header to a caller.
    pub fn authenticate(
        &self,
        authorization: Option<&HeaderValue>,
    ) -> Result<Principal, AuthError> {
        if !self.is_enabled() {
            return Ok(Principal::open());
        }
        let value = authorization.ok_or(AuthError::Missing)?;
        let value = value.to_str().map_err(|_| AuthError::Malformed)?;
        let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Malformed);
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Malformed);
        }
        if let Some(p) = self.api_keys.get(&sha256(token)) {
            return Ok(p.clone());
        }
        self.verify_jwt(token)
    }

    fn verify_jwt(&self, token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Invalid("not a known API key or a JWT"))?;
        let (key, algorithms) = match (&self.hs256, &self.public) {
            (Some(k), _) if header.alg == Algorithm::HS256 => (k, vec![Algorithm::HS256]),
            (_, Some((k, algs))) if algs.contains(&header.alg) => (k, algs.clone()),
            _ => return Err(AuthError::Invalid("this token's algorithm is not accepted")),
        };
        let mut validation = Validation::new(header.alg);
        validation.algorithms = algorithms;
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_aud = false;
        validation.leeway = 30;
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| match e
            .kind()
        {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::InvalidSignature => AuthError::Invalid("bad signature"),
            ErrorKind::MissingRequiredClaim(_) => {
                AuthError::Invalid("the token needs `sub` and `exp` claims")
            }
            _ => AuthError::Invalid("the token could not be verified"),
        })?;
        let claims = data.claims;
        if !names::is_valid_tenant(&claims.sub) {
            return Err(AuthError::Invalid(
                "`sub` must be a tenant name of 1-64 letters, digits, `-` or `_`",
            ));
        }
        Ok(Principal {
            tenant: claims.sub,
            admin: has_admin_scope(claims.scope.as_ref()),
        })
    }
}

/// `scope` as an OAuth2 space-separated string or a JSON array of strings.
fn has_admin_scope(scope: Option<&serde_json::Value>) -> bool {
    match scope {
        Some(serde_json::Value::String(s)) => s.split_whitespace().any(|s| s == "admin"),
        Some(serde_json::Value::Array(a)) => a.iter().any(|v| v.as_str() == Some("admin")),
        _ => false,
    }
}

fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Parse an API key file: `<key> <tenant> [admin]` per line, `#` comments, blank lines.
fn load_api_keys(path: &Path) -> anyhow::Result<HashMap<[u8; 32], Principal>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --api-keys {}", path.display()))?;
    let mut keys = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let at = || format!("{}:{}", path.display(), n + 1);
        let (key, tenant, admin) = match fields.as_slice() {
            [k, t] => (*k, *t, false),
            [k, t, "admin"] => (*k, *t, true),
            _ => anyhow::bail!("{}: expected `<key> <tenant> [admin]`", at()),
        };
        if !names::is_valid_tenant(tenant) {
            anyhow::bail!(
                "{}: tenant {tenant:?} must be 1-64 letters, digits, `-` or `_`",
                at()
            );
        }
        let principal = Principal {
            tenant: tenant.to_string(),
            admin,
        };
        if keys.insert(sha256(key), principal).is_some() {
            anyhow::bail!("{}: this key appears twice", at());
        }
    }
    Ok(keys)
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state
            .auth()
            .authenticate(parts.headers.get(header::AUTHORIZATION))
            .map_err(ApiError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_may_be_a_string_or_an_array() {
        assert!(has_admin_scope(Some(&serde_json::json!("read admin"))));
        assert!(has_admin_scope(Some(&serde_json::json!(["admin"]))));
        assert!(!has_admin_scope(Some(&serde_json::json!("administrator"))));
        assert!(!has_admin_scope(None));
    }

    #[test]
    fn api_key_file_lines_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys");
        std::fs::write(&path, "# comment\nk1 acme\n\nk2 ops admin # trailing\n").expect("write");
        let keys = load_api_keys(&path).expect("valid file");
        assert_eq!(keys.len(), 2);
        assert!(keys[&sha256("k2")].admin);
        std::fs::write(&path, "k1 bad.tenant\n").expect("write");
        assert!(
            load_api_keys(&path).is_err(),
            "dots would break record keys"
        );
        std::fs::write(&path, "k1 acme root\n").expect("write");
        assert!(load_api_keys(&path).is_err());
    }

    #[test]
    fn the_jwt_secret_comes_from_a_file_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jwt-secret");
        std::fs::write(&path, "k3y\n").expect("write");
        let mut args = AuthArgs {
            jwt_secret_file: Some(path.clone()),
            ..AuthArgs::default()
        };
        let auth = Auth::from_args(&args).expect("secret file");
        assert!(auth.is_enabled());
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &serde_json::json!({"sub": "acme", "exp": 4_000_000_000u64}),
            &jsonwebtoken::EncodingKey::from_secret(b"k3y"),
        )
        .expect("token");
        let header = HeaderValue::from_str(&format!("Bearer {token}")).expect("header");
        let who = auth
            .authenticate(Some(&header))
            .expect("the file's secret without its newline verifies");
        assert_eq!(who.tenant, "acme");

        args.jwt_secret = Some("other".into());
        let err = Auth::from_args(&args).err().expect("both refused");
        assert!(err.to_string().contains("not both"), "{err}");

        args.jwt_secret = None;
        args.jwt_secret_file = Some(dir.path().join("missing"));
        let err = Auth::from_args(&args).err().expect("unreadable refused");
        assert!(err.to_string().contains("cannot read"), "{err}");
    }
}
