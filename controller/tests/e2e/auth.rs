//! Auth and tenants: who may call, and which jobs each caller sees.

use crate::helpers::{start_gateway, TestApp};
use jetmill_gateway::{Application, GatewayArgs};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;

const SECRET: &str = "test-secret-for-hs256";
const ACME_KEY: &str = "key-acme-0123456789";
const ROOT_KEY: &str = "key-root-0123456789";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/e2e/fixtures")
        .join(name)
}

/// A JWT for `sub`, valid for an hour from now plus `exp_offset` seconds.
fn jwt(
    alg: Algorithm,
    key: &EncodingKey,
    sub: &str,
    scope: Option<&str>,
    exp_offset: i64,
) -> String {
    let exp = jsonwebtoken::get_current_timestamp() as i64 + 3600 + exp_offset;
    let mut claims = json!({"sub": sub, "exp": exp});
    if let Some(s) = scope {
        claims["scope"] = json!(s);
    }
    encode(&Header::new(alg), &claims, key).expect("sign test token")
}

fn hs(sub: &str, scope: Option<&str>) -> String {
    jwt(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        sub,
        scope,
        0,
    )
}

/// A gateway with an HS256 secret, the Ed25519 public key and an API key file.
async fn secured() -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = dir.path().join("api-keys");
    std::fs::write(
        &keys,
        format!("# test keys\n{ACME_KEY} acme\n{ROOT_KEY} ops admin\n"),
    )
    .expect("write api keys");
    let app = TestApp::gateway_with(|a| {
        a.auth.jwt_secret = Some(SECRET.into());
        a.auth.jwt_public_key = Some(fixture("ed25519-public.pem"));
        a.auth.api_keys = Some(keys);
    })
    .await;
    (app, dir)
}

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = app.http.request(method, app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

async fn submit_as(app: &TestApp, token: &str, n: u64) -> String {
    let (status, _, body) = call(
        app,
        reqwest::Method::POST,
        "/v1/jobs",
        Some(token),
        Some(json!({"kind": "factorial", "input": n})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    body["id"].as_str().expect("id").to_string()
}

fn assert_unauthorized(status: u16, headers: &reqwest::header::HeaderMap, body: &Value) {
    assert_eq!(status, 401, "{body}");
    let challenge = headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(challenge.starts_with("Bearer"), "challenge: {challenge:?}");
    assert_eq!(body["status"], 401, "problem JSON: {body}");
    assert_eq!(body["type"], "unauthorized");
}

#[tokio::test]
async fn requests_without_valid_credentials_get_401_with_a_bearer_challenge() {
    let (app, _dir) = secured().await;
    let get = reqwest::Method::GET;
    let (s, h, b) = call(&app, get.clone(), "/v1/jobs", None, None).await;
    assert_unauthorized(s, &h, &b);

    let wrong_key = EncodingKey::from_secret(b"not-the-secret");
    let forged = jwt(Algorithm::HS256, &wrong_key, "acme", Some("admin"), 0);
    let expired = jwt(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        "acme",
        None,
        -7200,
    );
    for (what, token) in [
        ("bad signature", forged.as_str()),
        ("expired", expired.as_str()),
        ("unknown api key", "key-nobody"),
        ("garbage", "not.a.jwt"),
    ] {
        let (s, h, b) = call(&app, get.clone(), "/v1/jobs", Some(token), None).await;
        assert_unauthorized(s, &h, &b);
        let challenge = h["www-authenticate"].to_str().unwrap_or_default();
        assert!(challenge.contains("invalid_token"), "{what}: {challenge}");
    }
    let (_, _, b) = call(&app, get.clone(), "/v1/jobs", Some(&expired), None).await;
    assert!(
        b["detail"].as_str().unwrap_or_default().contains("expired"),
        "{b}"
    );

    // A submit without credentials publishes nothing.
    let (s, h, b) = call(
        &app,
        reqwest::Method::POST,
        "/v1/jobs",
        None,
        Some(json!({"kind": "factorial", "input": 5})),
    )
    .await;
    assert_unauthorized(s, &h, &b);
    assert_eq!(app.stream_messages("JOBS").await, 0);
    // Health checks stay open for load balancers.
    let (s, _, _) = call(&app, get, "/healthz", None, None).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn tenants_see_only_their_own_jobs_and_admins_see_all() {
    let (app, _dir) = secured().await;
    let get = reqwest::Method::GET;
    let acme = hs("acme", None);
    let globex = hs("globex", Some("read write"));
    let admin = hs("ops", Some("read admin"));
    let ed_key =
        EncodingKey::from_ed_pem(&std::fs::read(fixture("ed25519-private.pem")).expect("key"))
            .expect("ed25519 key");
    let acme_ed = jwt(Algorithm::EdDSA, &ed_key, "acme", None, 0);

    let acme_job = submit_as(&app, &acme, 10).await;
    let globex_job = submit_as(&app, &globex, 11).await;
    let api_key_job = submit_as(&app, ACME_KEY, 12).await;

    // The record is stored under the tenant.
    let kv = app.jobs_kv().await;
    assert!(kv
        .get(format!("acme.{acme_job}"))
        .await
        .expect("kv get")
        .is_some());
    assert!(kv
        .get(format!("globex.{globex_job}"))
        .await
        .expect("kv get")
        .is_some());

    let job = |id: &str| format!("/v1/jobs/{id}");
    let (s, _, b) = call(&app, get.clone(), &job(&acme_job), Some(&acme), None).await;
    assert_eq!((s, b["tenant"].as_str()), (200, Some("acme")), "{b}");
    // The EdDSA token and the API key are the same tenant.
    let (s, _, _) = call(&app, get.clone(), &job(&acme_job), Some(&acme_ed), None).await;
    assert_eq!(s, 200);
    let (s, _, _) = call(&app, get.clone(), &job(&acme_job), Some(ACME_KEY), None).await;
    assert_eq!(s, 200);

    // Another tenant's job does not exist for you: 404, not 403.
    for path in [job(&acme_job), format!("{}/result", job(&acme_job))] {
        let (s, _, b) = call(&app, get.clone(), &path, Some(&globex), None).await;
        assert_eq!(s, 404, "{path}: {b}");
    }
    let (s, _, _) = call(&app, get.clone(), &job(&globex_job), Some(ACME_KEY), None).await;
    assert_eq!(s, 404);

    let ids = |b: &Value| -> Vec<String> {
        b["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| j["id"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let (_, _, b) = call(&app, get.clone(), "/v1/jobs", Some(&acme), None).await;
    assert_eq!(ids(&b), vec![api_key_job.clone(), acme_job.clone()]);
    let (_, _, b) = call(&app, get.clone(), "/v1/jobs", Some(&globex), None).await;
    assert_eq!(ids(&b), vec![globex_job.clone()]);
    let (s, _, b) = call(
        &app,
        get.clone(),
        "/v1/jobs?tenant=acme",
        Some(&globex),
        None,
    )
    .await;
    assert_eq!((s, b["field"].as_str()), (400, Some("tenant")), "{b}");

    // Admins (JWT scope or API key flag) see every tenant.
    for token in [admin.as_str(), ROOT_KEY] {
        let (s, _, b) = call(&app, get.clone(), &job(&globex_job), Some(token), None).await;
        assert_eq!((s, b["tenant"].as_str()), (200, Some("globex")), "{b}");
        let (_, _, b) = call(&app, get.clone(), "/v1/jobs", Some(token), None).await;
        assert_eq!(
            ids(&b),
            vec![api_key_job.clone(), globex_job.clone(), acme_job.clone()]
        );
        let (_, _, b) = call(
            &app,
            get.clone(),
            "/v1/jobs?tenant=globex",
            Some(token),
            None,
        )
        .await;
        assert_eq!(ids(&b), vec![globex_job.clone()]);
    }
}

#[tokio::test]
async fn rs256_tokens_are_verified_with_the_configured_public_key() {
    let app = TestApp::gateway_only().await;
    let shutdown = app.shutdown.clone();
    let base = start_gateway(app.nats.url(), &shutdown, |a| {
        a.auth.jwt_public_key = Some(fixture("rsa-public.pem"));
    })
    .await;
    let key = EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa-private.pem")).expect("key"))
        .expect("rsa key");
    let good = jwt(Algorithm::RS256, &key, "acme", None, 0);
    // An HS256 token is refused when no secret is configured, even "signed" with the public key.
    let confused = jwt(
        Algorithm::HS256,
        &EncodingKey::from_secret(&std::fs::read(fixture("rsa-public.pem")).expect("pem")),
        "acme",
        None,
        0,
    );
    let http = reqwest::Client::new();
    let status = |token: String| {
        let req = http.get(format!("{base}/v1/jobs")).bearer_auth(token);
        async move { req.send().await.expect("GET").status().as_u16() }
    };
    assert_eq!(status(good).await, 200);
    assert_eq!(status(confused).await, 401);
}

#[tokio::test]
async fn an_open_gateway_refuses_a_public_address_unless_forced() {
    let app = TestApp::gateway_only().await;
    let mut args = GatewayArgs::local(app.nats.url(), SocketAddr::from(([0, 0, 0, 0], 0)))
        .expect("gateway defaults");
    let err = Application::build(&args)
        .await
        .err()
        .expect("must refuse to start");
    assert!(format!("{err:#}").contains("--allow-open"), "{err:#}");
    args.auth.allow_open = true;
    let open = Application::build(&args).await.expect("forced open starts");
    drop(open);
    // With auth configured, a public address is fine.
    args.auth.allow_open = false;
    args.auth.jwt_secret = Some(SECRET.into());
    Application::build(&args)
        .await
        .expect("authenticated gateway starts");
}
