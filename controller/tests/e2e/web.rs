//! The web page at `/`, in a real headless Chromium (Debian's `chromium` +
//! `chromium-driver`, see scripts/install-chromium.sh) against jetmill on a real
//! nats-server. Screenshots of the main states go to `target/test-output/web/`.

mod driver;

use crate::helpers::{worker_args, TestApp};
use driver::Browser;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

/// `target/test-output/web/<test>/`, emptied first.
fn output_dir(test: &str) -> PathBuf {
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .to_path_buf();
    let dir = target.join("test-output").join("web").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test-output dir");
    dir
}

async fn open_page(app: &TestApp, downloads: &std::path::Path) -> Browser {
    let browser = Browser::start(downloads).await;
    browser.goto(&app.url("/")).await;
    browser
        .wait_js(
            "page ready",
            WAIT,
            "return document.body.dataset.ready === 'true'",
            json!([]),
        )
        .await;
    browser
}

/// Status of the job's row in the jobs table, or "" while there is none.
/// Press Submit and wait for the id of the job it created (one other than `previous`).
async fn submit_form(browser: &Browser, previous: &str) -> String {
    browser
        .click(&browser.find("#submit-btn", WAIT).await)
        .await;
    browser
        .wait_js(
            "submitted job id",
            WAIT,
            "const m = document.getElementById('submit-msg').dataset.jobId || '';
             return m !== arguments[0] ? m : '';",
            json!([previous]),
        )
        .await
        .as_str()
        .expect("id")
        .to_string()
}

async fn row_status(browser: &Browser, id: &str) -> String {
    browser
        .js(
            "const r = document.querySelector(`tr[data-id=\"${arguments[0]}\"]`); return r ? r.dataset.status : '';",
            json!([id]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn page_and_assets_are_served_with_content_types() {
    let app = TestApp::gateway_only().await;
    for (path, ct, needle) in [
        ("/", "text/html; charset=utf-8", "<title>jetmill</title>"),
        (
            "/assets/app.js",
            "text/javascript; charset=utf-8",
            "'use strict'",
        ),
        ("/assets/style.css", "text/css; charset=utf-8", ":root"),
    ] {
        let resp = app.http.get(app.url(path)).send().await.expect("GET");
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        assert_eq!(resp.headers()["content-type"], ct, "{path}");
        assert!(resp.headers()["content-security-policy"]
            .to_str()
            .expect("csp")
            .contains("default-src 'self'"));
        let body = resp.text().await.expect("body");
        assert!(body.contains(needle), "{path} lacks {needle}");
    }
    // Nothing from another origin: the page works offline.
    let html = app
        .http
        .get(app.url("/"))
        .send()
        .await
        .expect("GET /")
        .text()
        .await
        .expect("html");
    assert!(!html.contains("http://") && !html.contains("https://"));
    let missing = app
        .http
        .get(app.url("/assets/nope.js"))
        .send()
        .await
        .expect("GET");
    assert_eq!(missing.status().as_u16(), 404);
}

#[tokio::test]
async fn workers_endpoint_reports_live_workers_and_queue_depth() {
    let app = TestApp::spawn().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let view = loop {
        let v: Value = app
            .http
            .get(app.url("/v1/workers"))
            .send()
            .await
            .expect("GET /v1/workers")
            .json()
            .await
            .expect("json");
        if v["workers"].as_array().is_some_and(|w| !w.is_empty()) {
            break v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no worker report: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let w = &view["workers"][0];
    assert!(w["concurrency"].as_u64().is_some_and(|c| c >= 1), "{view}");
    assert!(
        w["frozen"].is_boolean() && w["config_revision"].is_u64(),
        "{view}"
    );
    assert_eq!(view["queue_depth"], 0, "{view}");
    let doc: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("GET /openapi.json")
        .json()
        .await
        .expect("json");
    assert!(
        doc["paths"]["/v1/workers"]["get"].is_object(),
        "GET /v1/workers is not in the OpenAPI document"
    );
}

#[tokio::test]
async fn page_submits_factorial_shows_errors_progress_and_downloads_the_result() {
    let app = TestApp::spawn().await;
    let out = output_dir("submit");
    let downloads = tempfile::tempdir().expect("download dir");
    let browser = open_page(&app, downloads.path()).await;

    // A bad input: the API's problem+json shows next to the input field.
    let input = browser.find("#f-input", WAIT).await;
    browser.type_into(&input, "-5").await;
    browser
        .click(&browser.find("#submit-btn", WAIT).await)
        .await;
    let err = browser
        .wait_js(
            "error next to the input",
            WAIT,
            "return document.getElementById('err-input').textContent",
            json!([]),
        )
        .await;
    assert!(
        err.as_str().unwrap_or_default().contains("negative"),
        "input error: {err}"
    );
    let invalid = browser
        .js(
            "return document.getElementById('f-input').getAttribute('aria-invalid')",
            json!([]),
        )
        .await;
    assert_eq!(invalid, "true");
    browser.screenshot(&out.join("01-input-error.png")).await;
    // A bad option shows next to its own field.
    browser.type_into(&input, "10").await;
    let attempts = browser.find("#f-max-attempts", WAIT).await;
    browser.type_into(&attempts, "99").await;
    browser
        .click(&browser.find("#submit-btn", WAIT).await)
        .await;
    browser
        .wait_js(
            "error next to max attempts",
            WAIT,
            "return document.getElementById('err-max-attempts').textContent",
            json!([]),
        )
        .await;
    assert_eq!(
        browser
            .js(
                "return document.getElementById('err-input').textContent",
                json!([])
            )
            .await,
        ""
    );
    browser.screenshot(&out.join("02-option-error.png")).await;

    // factorial(50000) through the form.
    browser.type_into(&attempts, "").await;
    browser.type_into(&input, "50000").await;
    let id = submit_form(&browser, "").await;
    let record = app.get_job(&id).await;
    assert_eq!(record["kind"], "factorial");
    assert!(
        record["input"] == 50000 || record["input"] == "50000",
        "{record}"
    );

    // The row appears; watch its progress bar until the status is done.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seen_progress = Vec::new();
    let mut seen_status = Vec::new();
    let mut shot = false;
    loop {
        let v = browser
            .js(
                "const r = document.querySelector(`tr[data-id=\"${arguments[0]}\"]`);
                 return r ? [r.dataset.status, Number(r.querySelector('progress').value)] : null;",
                json!([id]),
            )
            .await;
        if let Some(arr) = v.as_array() {
            let status = arr[0].as_str().unwrap_or_default().to_string();
            let p = arr[1].as_f64().unwrap_or(-1.0);
            if seen_status.last() != Some(&status) {
                seen_status.push(status.clone());
            }
            if seen_progress.last() != Some(&p) {
                seen_progress.push(p);
            }
            if !shot {
                browser.screenshot(&out.join("03-job-row.png")).await;
                shot = true;
            }
            if status == "done" {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} not done on the page; statuses {seen_status:?}, progress {seen_progress:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(seen_progress.last(), Some(&1.0), "{seen_progress:?}");
    let cells = browser
        .js(
            "const r = document.querySelector(`tr[data-id=\"${arguments[0]}\"]`);
             return ['attempts','worker','duration'].map(c => r.querySelector(`[data-col=\"${c}\"]`).textContent);",
            json!([id]),
        )
        .await;
    assert_eq!(cells[0], "1", "{cells}");
    assert!(!cells[1].as_str().unwrap_or_default().is_empty(), "{cells}");
    assert!(!cells[2].as_str().unwrap_or_default().is_empty(), "{cells}");
    browser.screenshot(&out.join("04-job-done.png")).await;

    // Open the job: record, timeline, result preview.
    let record = app.get_job(&id).await;
    let info = &record["result_info"];
    browser
        .click(
            &browser
                .find(
                    &format!("tr[data-id=\"{id}\"] [data-action=\"open\"]"),
                    WAIT,
                )
                .await,
        )
        .await;
    let digits = browser
        .wait_js(
            "result preview",
            WAIT,
            "return document.getElementById('result-box').hidden ? '' : document.getElementById('result-digits').textContent",
            json!([]),
        )
        .await;
    assert_eq!(digits, info["digits"].to_string());
    let head = browser
        .text(&browser.find("#result-head", WAIT).await)
        .await;
    let tail = browser
        .text(&browser.find("#result-tail", WAIT).await)
        .await;
    assert_eq!(head, info["head"].as_str().expect("head"));
    assert_eq!(tail, info["tail"].as_str().expect("tail"));
    browser
        .wait_js(
            "timeline shows accepted, started and done",
            WAIT,
            "const l = document.getElementById('job-timeline');
             return ['accepted','started','done'].every(e => l.querySelector(`li[data-event=\"${e}\"]`));",
            json!([]),
        )
        .await;
    browser.screenshot(&out.join("05-job-view.png")).await;
    // This gateway has the event stream, so the page follows it rather than polling.
    let live = browser
        .js(
            "return document.getElementById('job-view').dataset.live",
            json!([]),
        )
        .await;
    assert_eq!(live, "sse");
    // And the jobs table follows the all-jobs event feed (one connection for every row).
    browser
        .wait_js(
            "the jobs table is on the /v1/events feed",
            WAIT,
            "return document.body.dataset.feed === 'sse';",
            json!([]),
        )
        .await;

    // Download the full result through the link and check it against the record.
    browser
        .click(&browser.find("#result-download", WAIT).await)
        .await;
    let file = downloads.path().join(format!("{id}.txt"));
    let bytes = info["bytes"].as_u64().expect("bytes");
    let deadline = tokio::time::Instant::now() + WAIT;
    let text = loop {
        if let Ok(meta) = std::fs::metadata(&file) {
            if meta.len() == bytes {
                break std::fs::read_to_string(&file).expect("read download");
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "download of {} did not arrive in {}; files: {:?}",
            file.display(),
            downloads.path().display(),
            std::fs::read_dir(downloads.path())
                .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
                .unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(text.len() as u64, info["digits"].as_u64().expect("digits"));
    assert!(text.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(
        hex::encode(Sha256::digest(text.as_bytes())),
        info["sha256"].as_str().expect("sha256")
    );
}

#[tokio::test]
async fn page_cancels_a_running_job_and_shows_workers_at_phone_width() {
    let app = TestApp::spawn().await;
    let out = output_dir("cancel");
    let downloads = tempfile::tempdir().expect("download dir");
    // A long job: the chaos delay keeps it running until it is cancelled.
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 20, "chaos": {"delay_ms": 600000}}))
        .await;
    let browser = open_page(&app, downloads.path()).await;

    let deadline = tokio::time::Instant::now() + WAIT;
    while row_status(&browser, &id).await != "running" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} never showed as running; status {:?}",
            row_status(&browser, &id).await
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The workers panel shows the worker busy with it.
    let running = browser
        .wait_js(
            "worker row with one running job",
            WAIT,
            "const r = document.querySelector('#workers-body tr');
             return r && r.querySelector('[data-col=\"running\"]').textContent === '1'
               ? [r.querySelector('[data-col=\"concurrency\"]').textContent,
                  r.querySelector('[data-col=\"frozen\"]').textContent,
                  document.getElementById('queue-depth').textContent]
               : null;",
            json!([]),
        )
        .await;
    assert_eq!(running[1], "no", "{running}");
    assert_eq!(
        running[2], "1",
        "queue depth counts the in-flight job: {running}"
    );
    browser.screenshot(&out.join("01-running.png")).await;

    browser
        .click(
            &browser
                .find(
                    &format!("tr[data-id=\"{id}\"] [data-action=\"cancel\"]"),
                    WAIT,
                )
                .await,
        )
        .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while row_status(&browser, &id).await != "cancelled" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} not cancelled on the page"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(app.get_job(&id).await["status"], "cancelled");
    let cancel_hidden = browser
        .js(
            "return document.querySelector(`tr[data-id=\"${arguments[0]}\"] [data-action=\"cancel\"]`).hidden",
            json!([id]),
        )
        .await;
    assert_eq!(cancel_hidden, true);
    browser.screenshot(&out.join("02-cancelled.png")).await;

    // A long job through the form: its progress bar moves; Cancel in the job view.
    let input = browser.find("#f-input", WAIT).await;
    browser.type_into(&input, "5000000").await;
    let long = submit_form(&browser, &id).await;
    let moved = browser
        .wait_js(
            "progress bar between 0 and 1",
            WAIT,
            "const r = document.querySelector(`tr[data-id=\"${arguments[0]}\"]`);
             if (!r) return null;
             if (r.dataset.status !== 'running') return r.dataset.status === 'done' ? 'done' : null;
             const p = Number(r.querySelector('progress').value);
             return p > 0 && p < 1 ? p : null;",
            json!([long]),
        )
        .await;
    assert!(
        moved.is_f64(),
        "factorial(5000000) finished before its progress showed: {moved}"
    );
    browser.screenshot(&out.join("03-progress.png")).await;
    browser
        .click(
            &browser
                .find(
                    &format!("tr[data-id=\"{long}\"] [data-action=\"open\"]"),
                    WAIT,
                )
                .await,
        )
        .await;
    browser
        .wait_js(
            "job view open",
            WAIT,
            "return document.getElementById('job-id').textContent === arguments[0]
                && !document.getElementById('job-cancel').hidden",
            json!([long]),
        )
        .await;
    browser
        .click(&browser.find("#job-cancel", WAIT).await)
        .await;
    browser
        .wait_js(
            "job view shows cancelled",
            WAIT,
            "const d = document.querySelector('#job-record dd[data-field=\"status\"]');
             return d && d.textContent === 'cancelled'
                && !!document.querySelector('#job-timeline li[data-event=\"cancelled\"]');",
            json!([]),
        )
        .await;
    assert_eq!(app.get_job(&long).await["status"], "cancelled");
    browser.screenshot(&out.join("04-job-cancelled.png")).await;

    // The status filter.
    browser
        .click(
            &browser
                .find("#status-filter option[value=\"done\"]", WAIT)
                .await,
        )
        .await;
    browser
        .wait_js(
            "filter hides the cancelled job",
            WAIT,
            "return !document.querySelector(`tr[data-id=\"${arguments[0]}\"]`)",
            json!([id]),
        )
        .await;
    browser
        .click(
            &browser
                .find("#status-filter option[value=\"\"]", WAIT)
                .await,
        )
        .await;
    browser.find(&format!("tr[data-id=\"{id}\"]"), WAIT).await;

    // Phone width: nothing overflows sideways, every control has a label.
    browser.set_window(390, 844).await;
    browser
        .wait_js(
            "no horizontal overflow at phone width",
            WAIT,
            "return document.documentElement.scrollWidth <= window.innerWidth",
            json!([]),
        )
        .await;
    let unlabelled = browser
        .js(
            "return [...document.querySelectorAll('input, select, textarea, button')]
               .filter(e => !e.hidden && !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
               .map(e => e.id || e.outerHTML.slice(0, 60));",
            json!([]),
        )
        .await;
    assert_eq!(unlabelled, json!([]), "controls without a label");
    browser.screenshot(&out.join("05-phone.png")).await;
}

#[tokio::test]
async fn page_explains_401_and_sends_the_token_it_is_given() {
    const KEY: &str = "key-web-0123456789";
    let keys_dir = tempfile::tempdir().expect("tempdir");
    let keys = keys_dir.path().join("api-keys");
    std::fs::write(&keys, format!("{KEY} webtenant\n")).expect("write api keys");
    let app = TestApp::gateway_with(|a| a.auth.api_keys = Some(keys)).await;
    app.start_worker_in_process(worker_args(app.nats.url()));
    let out = output_dir("auth");
    let downloads = tempfile::tempdir().expect("download dir");
    // The page itself needs no token; the API does.
    let browser = open_page(&app, downloads.path()).await;
    let banner = browser
        .wait_js(
            "401 explained",
            WAIT,
            "const b = document.getElementById('auth-msg'); return b.hidden ? '' : b.textContent;",
            json!([]),
        )
        .await;
    assert!(
        banner.as_str().unwrap_or_default().contains("401")
            && banner.as_str().unwrap_or_default().contains("Access token"),
        "{banner}"
    );
    browser.screenshot(&out.join("01-401.png")).await;

    // A wrong token is called wrong, the right one clears the banner.
    let token = browser.find("#token", WAIT).await;
    browser.type_into(&token, "not-the-key").await;
    browser
        .click(&browser.find("#token-save", WAIT).await)
        .await;
    browser
        .wait_js(
            "wrong token explained",
            WAIT,
            "return document.getElementById('auth-msg').textContent.includes('not accepted')",
            json!([]),
        )
        .await;
    browser.type_into(&token, KEY).await;
    browser
        .click(&browser.find("#token-save", WAIT).await)
        .await;
    browser
        .wait_js(
            "banner gone, workers and limits listed with the token",
            WAIT,
            "return document.getElementById('auth-msg').hidden && !!document.querySelector('#workers-body tr')
                && !document.getElementById('limits-empty').hidden && !document.getElementById('limits-msg').textContent",
            json!([]),
        )
        .await;
    let stored = browser
        .js("return sessionStorage.getItem('jetmill.token')", json!([]))
        .await;
    assert_eq!(stored, KEY);

    // Submit, follow the job (SSE with the token), download through fetch.
    let input = browser.find("#f-input", WAIT).await;
    browser.type_into(&input, "3000").await;
    let id = submit_form(&browser, "").await;
    browser
        .click(
            &browser
                .find(
                    &format!("tr[data-id=\"{id}\"] [data-action=\"open\"]"),
                    WAIT,
                )
                .await,
        )
        .await;
    browser
        .wait_js(
            "result preview",
            WAIT,
            "return !document.getElementById('result-box').hidden && document.querySelector('#job-timeline li[data-event=\"done\"]')",
            json!([]),
        )
        .await;
    browser.screenshot(&out.join("02-job-with-token.png")).await;
    browser
        .click(&browser.find("#copy-result", WAIT).await)
        .await;
    let copied = browser
        .wait_js(
            "copy confirmed",
            WAIT,
            "return document.getElementById('copy-msg').textContent",
            json!([]),
        )
        .await;
    assert!(
        copied.as_str().unwrap_or_default().starts_with("Copied "),
        "{copied}"
    );
    let digits: u64 = browser
        .text(&browser.find("#result-digits", WAIT).await)
        .await
        .parse()
        .expect("digit count");
    browser
        .click(&browser.find("#result-download", WAIT).await)
        .await;
    let file = downloads.path().join(format!("{id}.txt"));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if std::fs::metadata(&file).is_ok_and(|m| m.len() == digits) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "download with a token did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn rows_show_ids_people_can_tell_apart_and_mark_cached_results() {
    // The result cache on: the second identical job is answered from the first.
    let app = TestApp::gateway_with(|g| g.result_cache = true).await;
    app.start_worker_in_process(worker_args(app.nats.url()));
    let first = app
        .submit_ok(json!({"kind": "factorial", "input": 77}))
        .await;
    assert_eq!(
        app.wait_finished(&first, Duration::from_secs(60)).await["status"],
        "done"
    );
    let (status, hit) = app.submit(&json!({"kind": "factorial", "input": 77})).await;
    assert_eq!((status, &hit["cached"]), (200, &json!(true)), "{hit}");
    let again = hit["id"].as_str().expect("id").to_string();

    let dir = output_dir("short-ids");
    let browser = open_page(&app, &dir).await;
    let shown = browser
        .wait_js(
            "both rows listed",
            WAIT,
            "const ids = arguments;
             const text = (id) => {
               const b = document.querySelector(`tr[data-id=\"${id}\"] [data-action=\"open\"]`);
               return b ? b.textContent : null;
             };
             const a = text(ids[0]), b = text(ids[1]);
             return a && b ? [a, b] : '';",
            json!([first, again]),
        )
        .await;
    let (a, b) = (
        shown[0].as_str().unwrap_or(""),
        shown[1].as_str().unwrap_or(""),
    );
    assert_ne!(a, b, "two jobs of the same minute must not look alike");
    assert!(
        first.ends_with(a.trim_start_matches('…')),
        "{a} is not {first}'s tail"
    );
    let badges = browser
        .js(
            "return [arguments[0], arguments[1]].map((id) =>
               !!document.querySelector(`tr[data-id=\"${id}\"] .cached`));",
            json!([first, again]),
        )
        .await;
    assert_eq!(badges, json!([false, true]), "only the cache hit is marked");
    browser.screenshot(&dir.join("short-ids.png")).await;
}

#[tokio::test]
async fn page_submits_a_range_of_inputs_as_one_batch() {
    let app = TestApp::spawn().await;
    let out = output_dir("batch");
    let downloads = tempfile::tempdir().expect("download dir");
    let browser = open_page(&app, downloads.path()).await;

    // Over the batch limit: explained next to the input, nothing submitted.
    let input = browser.find("#f-input", WAIT).await;
    browser.type_into(&input, "1..5000").await;
    browser
        .click(&browser.find("#submit-btn", WAIT).await)
        .await;
    let err = browser
        .wait_js(
            "range error next to the input",
            WAIT,
            "return document.getElementById('err-input').textContent",
            json!([]),
        )
        .await;
    assert!(
        err.as_str().unwrap_or_default().contains("1000"),
        "range error: {err}"
    );

    browser.type_into(&input, "30..39").await;
    browser
        .click(&browser.find("#submit-btn", WAIT).await)
        .await;
    let batch = browser
        .wait_js(
            "submitted batch id",
            WAIT,
            "return document.getElementById('submit-msg').dataset.batchId || ''",
            json!([]),
        )
        .await
        .as_str()
        .expect("batch id")
        .to_string();
    let msg = browser
        .js(
            "return document.getElementById('submit-msg').textContent",
            json!([]),
        )
        .await;
    assert!(
        msg.as_str().unwrap_or_default().contains("10 jobs"),
        "message: {msg}"
    );
    let status: Value = app
        .http
        .get(app.url(&format!("/v1/batches/{batch}?wait=30s")))
        .send()
        .await
        .expect("batch status")
        .json()
        .await
        .expect("json");
    assert_eq!(status["counts"]["done"], 10, "{status}");
    let page: Value = app
        .http
        .get(app.url(&format!("/v1/jobs?batch={batch}")))
        .send()
        .await
        .expect("batch jobs")
        .json()
        .await
        .expect("json");
    let inputs: Vec<u64> = page["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["input"].as_u64())
        .collect();
    assert_eq!(inputs, (30..40).rev().collect::<Vec<u64>>());
    // The jobs table shows them as they finish.
    let first = page["jobs"][0]["id"].as_str().expect("id").to_string();
    browser
        .wait_js(
            "a batch job done in the table",
            WAIT,
            "const r = document.querySelector(`tr[data-id=\"${arguments[0]}\"]`); return r && r.dataset.status === 'done';",
            json!([first]),
        )
        .await;
    browser
        .screenshot(&out.join("01-batch-submitted.png"))
        .await;
}

#[tokio::test]
async fn page_charts_a_backlog_arriving_and_a_worker_draining_it() {
    let app = TestApp::gateway_with(|g| g.activity_interval_ms = 100).await;
    let out = output_dir("activity");
    let downloads = tempfile::tempdir().expect("download dir");
    let browser = open_page(&app, downloads.path()).await;
    for i in 0..30u32 {
        app.submit_ok(json!({"kind": "factorial", "input": 200 + i}))
            .await;
    }
    // The burst shows on the queue chart, with no live worker.
    browser
        .wait_js(
            "queue depth chart at 30 with no workers",
            WAIT,
            "const d = document.getElementById('chart-depth').dataset;
             const w = document.getElementById('chart-workers').dataset;
             return Number(d.now) >= 30 && w.now === '0';",
            json!([]),
        )
        .await;
    browser
        .js(
            "document.getElementById('workers').scrollIntoView()",
            json!([]),
        )
        .await;
    browser.screenshot(&out.join("01-backlog.png")).await;

    app.start_worker_in_process(worker_args(app.nats.url()));
    browser
        .wait_js(
            "the worker on the chart, jobs/s above 0 and the queue empty",
            WAIT,
            "const d = document.getElementById('chart-depth').dataset;
             const r = document.getElementById('chart-rate').dataset;
             const w = document.getElementById('chart-workers').dataset;
             return w.now === '1' && Number(r.peak) > 0 && d.now === '0' && Number(d.peak) >= 30;",
            json!([]),
        )
        .await;
    let points = browser
        .js(
            "return [...document.querySelectorAll('#activity polyline')].map(p => p.getAttribute('points').trim().split(' ').length);",
            json!([]),
        )
        .await;
    let points: Vec<u64> = serde_json::from_value(points).expect("point counts");
    assert!(
        points.iter().all(|&n| n >= 2),
        "every chart has a line: {points:?}"
    );
    let caption = browser
        .js(
            "return document.getElementById('chart-depth').querySelector('figcaption').textContent",
            json!([]),
        )
        .await;
    assert!(
        caption.as_str().unwrap_or_default().contains("peak"),
        "caption: {caption}"
    );
    browser
        .js(
            "document.getElementById('workers').scrollIntoView()",
            json!([]),
        )
        .await;
    browser.screenshot(&out.join("02-drained.png")).await;
}

#[tokio::test]
async fn a_failed_job_shows_as_a_dead_letter_with_its_trail_and_the_page_retries_it() {
    let mut app = TestApp::gateway_only().await;
    app.start_worker_process("flaky", &["--chaos-fail-probability", "1"]);
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 30, "max_attempts": 2}))
        .await;
    assert_eq!(
        app.wait_finished(&id, Duration::from_secs(60)).await["status"],
        "failed"
    );
    app.workers[0].signal("KILL");
    app.workers[0].wait_exit(Duration::from_secs(10)).await;
    app.start_worker_process("healthy", &[]);

    let dir = output_dir("dead-letter");
    let browser = open_page(&app, &dir).await;
    let row = browser
        .wait_js(
            "the failed row marked as a dead letter, with a Retry button",
            WAIT,
            "const r = document.querySelector(`tr[data-id=\"${arguments[0]}\"]`);
             if (!r || r.dataset.status !== 'failed') return '';
             const b = r.querySelector('[data-action=\"retry\"]');
             return r.querySelector('.dead-letter') && b && !b.hidden ? 'ok' : '';",
            json!([id]),
        )
        .await;
    assert_eq!(row, json!("ok"));
    // The job view shows each failed attempt with its worker.
    browser
        .click(
            &browser
                .find(
                    &format!("tr[data-id=\"{id}\"] [data-action=\"open\"]"),
                    WAIT,
                )
                .await,
        )
        .await;
    let trail = browser
        .wait_js(
            "the error trail in the job view",
            WAIT,
            "const t = [1, 2].map((n) => {
               const d = document.querySelector(`#job-record [data-field=\"failure-${n}\"]`);
               return d ? d.textContent : null;
             });
             return t.every((x) => x) ? t : '';",
            json!([]),
        )
        .await;
    for line in trail.as_array().expect("two lines") {
        let line = line.as_str().unwrap_or_default();
        assert!(line.contains("flaky") && line.contains("chaos"), "{line}");
    }
    browser.screenshot(&dir.join("dead-letter.png")).await;
    browser
        .click(
            &browser
                .find(
                    &format!("tr[data-id=\"{id}\"] [data-action=\"retry\"]"),
                    WAIT,
                )
                .await,
        )
        .await;
    let done = browser
        .wait_js(
            "the retried job done, no longer a dead letter",
            Duration::from_secs(60),
            "const r = document.querySelector(`tr[data-id=\"${arguments[0]}\"]`);
             return r && r.dataset.status === 'done' && !r.querySelector('.dead-letter')
               && r.querySelector('[data-action=\"retry\"]').hidden ? 'ok' : '';",
            json!([id]),
        )
        .await;
    assert_eq!(done, json!("ok"));
    let record = app.get_job(&id).await;
    assert_eq!(
        (&record["status"], &record["retries"]),
        (&json!("done"), &json!(1))
    );
    browser.screenshot(&dir.join("retried.png")).await;
}

#[tokio::test]
async fn the_page_submits_a_delayed_job_shows_it_scheduled_and_due_then_done() {
    let app = TestApp::spawn().await;
    let dir = output_dir("delayed");
    let browser = open_page(&app, &dir).await;
    browser
        .type_into(&browser.find("#f-input", WAIT).await, "25")
        .await;
    let delay = browser.find("#f-delay", WAIT).await;
    // A bad delay is named next to its own field.
    browser.type_into(&delay, "later").await;
    browser
        .click(&browser.find("#submit-btn", WAIT).await)
        .await;
    let err = browser
        .wait_js(
            "the error next to the delay",
            WAIT,
            "return document.getElementById('err-delay').textContent",
            json!([]),
        )
        .await;
    assert!(
        err.as_str().unwrap_or_default().contains("duration"),
        "{err}"
    );
    browser.type_into(&delay, "3s").await;
    browser
        .click(&browser.find("#submit-btn", WAIT).await)
        .await;
    let id = browser
        .wait_js(
            "the submitted job's id",
            WAIT,
            "return document.getElementById('submit-msg').dataset.jobId || ''",
            json!([]),
        )
        .await;
    let id = id.as_str().expect("id").to_string();
    let row = browser
        .wait_js(
            "the row scheduled, with when it is due",
            WAIT,
            "const r = document.querySelector(`tr[data-id=\"${arguments[0]}\"]`);
             const due = r && r.querySelector('.due');
             return r && r.dataset.status === 'scheduled' && due ? due.textContent : '';",
            json!([id]),
        )
        .await;
    assert!(
        row.as_str().unwrap_or_default().starts_with("due "),
        "{row}"
    );
    browser.screenshot(&dir.join("scheduled.png")).await;
    let done = browser
        .wait_js(
            "the row done once due, without the due mark",
            Duration::from_secs(30),
            "const r = document.querySelector(`tr[data-id=\"${arguments[0]}\"]`);
             return r && r.dataset.status === 'done' && !r.querySelector('.due') ? 'ok' : '';",
            json!([id]),
        )
        .await;
    assert_eq!(done, json!("ok"));
    let rec = app.get_job(&id).await;
    assert_eq!(rec["result"], "15511210043330985984000000", "{rec}");
}

#[tokio::test]
async fn the_schedules_panel_creates_pauses_resumes_and_deletes_a_schedule_and_lists_its_jobs() {
    let app = TestApp::spawn().await;
    let dir = output_dir("schedules");
    // A job of no schedule: the schedule's "Jobs" filter must hide it.
    let loose = app
        .submit_ok(json!({"kind": "factorial", "input": 5}))
        .await;
    let browser = open_page(&app, &dir).await;
    browser
        .wait_js(
            "no schedules yet",
            WAIT,
            "return !document.getElementById('schedules-empty').hidden",
            json!([]),
        )
        .await;
    browser
        .find(&format!("tr[data-id=\"{loose}\"]"), WAIT)
        .await;

    // A bad expression: five fields, named next to the cron input.
    let cron = browser.find("#s-cron", WAIT).await;
    browser.type_into(&cron, "* * * * *").await;
    browser
        .click(&browser.find("#schedule-create", WAIT).await)
        .await;
    let err = browser
        .wait_js(
            "the error next to the cron input",
            WAIT,
            "const t = document.getElementById('err-s-cron').textContent;
             return t.includes('six') ? t : '';",
            json!([]),
        )
        .await;
    assert_eq!(
        browser
            .js(
                "return document.getElementById('s-cron').getAttribute('aria-invalid')",
                json!([])
            )
            .await,
        "true",
        "{err}"
    );
    browser.screenshot(&dir.join("01-cron-error.png")).await;

    // factorial(12) every second, the job taken from the submit form.
    browser
        .type_into(&browser.find("#f-input", WAIT).await, "12")
        .await;
    browser.type_into(&cron, "@every 1s").await;
    browser
        .click(&browser.find("#schedule-create", WAIT).await)
        .await;
    let sid = browser
        .wait_js(
            "a running schedule row",
            WAIT,
            "const r = [...document.querySelectorAll('#schedules-body tr')].find((r) =>
               r.querySelector('[data-col=\"state\"]').textContent === 'running');
             return r ? r.dataset.scheduleId : '';",
            json!([]),
        )
        .await
        .as_str()
        .expect("schedule id")
        .to_string();
    assert_eq!(
        browser
            .js(
                "return document.getElementById('err-s-cron').textContent",
                json!([])
            )
            .await,
        "",
        "the old error is cleared"
    );
    let record: Value = app
        .http
        .get(app.url(&format!("/v1/schedules/{sid}")))
        .send()
        .await
        .expect("GET schedule")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (
            &record["cron"],
            &record["job"]["kind"],
            &record["job"]["input"]
        ),
        (&json!("@every 1s"), &json!("factorial"), &json!(12)),
        "{record}"
    );
    let row = format!("#schedules-body tr[data-schedule-id=\"{sid}\"]");
    let cells = browser
        .js(
            "const r = document.querySelector(arguments[0]);
             return ['id', 'cron', 'time_zone', 'job'].map((c) => r.querySelector(`[data-col=\"${c}\"]`).textContent);",
            json!([row]),
        )
        .await;
    assert_eq!(
        cells,
        json!([
            format!("…{}", &sid[sid.len() - 8..]),
            "@every 1s",
            "UTC",
            "factorial 12"
        ]),
    );

    // "Jobs": the jobs table shows only this schedule's jobs, and they run.
    browser
        .click(
            &browser
                .find(&format!("{row} [data-action=\"jobs\"]"), WAIT)
                .await,
        )
        .await;
    let chip = browser
        .wait_js(
            "the schedule filter shown",
            WAIT,
            "const f = document.getElementById('schedule-filter'); return f.hidden ? '' : f.textContent;",
            json!([]),
        )
        .await;
    assert!(
        chip.as_str()
            .unwrap_or_default()
            .contains(&sid[sid.len() - 8..]),
        "{chip}"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let shown = browser
            .js(
                "return [...document.querySelectorAll('#jobs-body tr')].map((r) => [r.dataset.id, r.dataset.status]);",
                json!([]),
            )
            .await;
        let shown: Vec<(String, String)> = serde_json::from_value(shown).expect("rows");
        let page: Value = app
            .http
            .get(app.url(&format!("/v1/jobs?schedule={sid}&limit=1000")))
            .send()
            .await
            .expect("GET jobs of the schedule")
            .json()
            .await
            .expect("json");
        let made: std::collections::HashSet<String> = page["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .filter_map(|j| j["id"].as_str().map(str::to_string))
            .collect();
        assert!(
            shown.iter().all(|(id, _)| made.contains(id)),
            "rows of other jobs under the schedule filter: {shown:?}, schedule's jobs {made:?}"
        );
        assert!(!shown.iter().any(|(id, _)| id == &loose));
        if made.len() >= 2 && shown.len() >= 2 && shown.iter().any(|(_, s)| s == "done") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the schedule's jobs did not show and finish: rows {shown:?}, made {made:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.screenshot(&dir.join("02-schedule-jobs.png")).await;

    // Pause, then resume.
    let state_is = |want: &'static str| {
        let row = row.clone();
        let browser = &browser;
        async move {
            browser
                .wait_js(
                    &format!("the schedule {want}"),
                    WAIT,
                    "const r = document.querySelector(arguments[0]);
                     if (!r || r.querySelector('[data-col=\"state\"]').textContent !== arguments[1]) return false;
                     const pause = r.querySelector('[data-action=\"pause\"]');
                     const resume = r.querySelector('[data-action=\"resume\"]');
                     return pause.hidden === (arguments[1] === 'paused') && resume.hidden === (arguments[1] === 'running');",
                    json!([row, want]),
                )
                .await;
        }
    };
    browser
        .click(
            &browser
                .find(&format!("{row} [data-action=\"pause\"]"), WAIT)
                .await,
        )
        .await;
    state_is("paused").await;
    let record: Value = app
        .http
        .get(app.url(&format!("/v1/schedules/{sid}")))
        .send()
        .await
        .expect("GET schedule")
        .json()
        .await
        .expect("json");
    assert_eq!(record["paused"], true, "{record}");
    browser.screenshot(&dir.join("03-paused.png")).await;
    browser
        .click(
            &browser
                .find(&format!("{row} [data-action=\"resume\"]"), WAIT)
                .await,
        )
        .await;
    state_is("running").await;
    let record: Value = app
        .http
        .get(app.url(&format!("/v1/schedules/{sid}")))
        .send()
        .await
        .expect("GET schedule")
        .json()
        .await
        .expect("json");
    assert_eq!(record["paused"], false, "{record}");

    // Delete: the row goes, and so does the schedule.
    browser
        .click(
            &browser
                .find(&format!("{row} [data-action=\"delete\"]"), WAIT)
                .await,
        )
        .await;
    browser
        .wait_js(
            "the row gone and the list empty",
            WAIT,
            "return !document.querySelector(arguments[0])
                && !document.getElementById('schedules-empty').hidden;",
            json!([row]),
        )
        .await;
    let status = app
        .http
        .get(app.url(&format!("/v1/schedules/{sid}")))
        .send()
        .await
        .expect("GET schedule")
        .status()
        .as_u16();
    assert_eq!(status, 404);

    // "show all" lifts the filter: the loose job is back.
    browser
        .click(&browser.find("#schedule-filter-clear", WAIT).await)
        .await;
    browser
        .find(&format!("tr[data-id=\"{loose}\"]"), WAIT)
        .await;
    assert_eq!(
        browser
            .js(
                "return document.getElementById('schedule-filter').hidden",
                json!([])
            )
            .await,
        true
    );
    browser.screenshot(&dir.join("04-deleted.png")).await;
}

/// Run `jetmill <args>` and check it exited 0 (with no live worker it still writes the
/// config: nothing is left to apply it).
async fn jetmill_ok(app: &TestApp, args: &[&str]) {
    let out = app.jetmill(args).await;
    assert!(
        out.status.success(),
        "jetmill {args:?}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_limits_panel_shows_each_limit_with_what_it_has_in_use() {
    let app = TestApp::spawn().await;
    let dir = output_dir("limits");
    jetmill_ok(
        &app,
        &["limits", "set", "--kind", "factorial", "--max-running", "2"],
    )
    .await;
    jetmill_ok(&app, &["limits", "set", "--tenant", "*", "--rate", "30/m"]).await;
    // A long job holds one of the two factorial places until it is cancelled.
    let id = app
        .submit_ok(json!({"kind": "factorial", "input": 20, "chaos": {"delay_ms": 600000}}))
        .await;
    let browser = open_page(&app, &dir).await;
    let cells = "(r) => ['scope', 'max_running', 'rate', 'tenant', 'running', 'next_start']
                   .map((c) => r.querySelector(`[data-col=\"${c}\"]`).textContent)";
    let rows = browser
        .wait_js(
            "the two limits, one job running under the first, the second counting tenant public",
            WAIT,
            &format!(
                "const rows = [...document.querySelectorAll('#limits-body tr')].map({cells});
                 return rows.length === 2 && rows[0][4] === '1 / 2' && rows[1][3] === 'public' ? rows : null;"
            ),
            json!([]),
        )
        .await;
    assert_eq!(
        rows[0],
        json!(["factorial jobs", "2", "", "", "1 / 2", ""]),
        "{rows}"
    );
    let each: Vec<String> = serde_json::from_value(rows[1].clone()).expect("cells");
    assert_eq!(
        each[..5],
        // A rate alone holds no places: it has no running count.
        ["all jobs of each tenant", "", "30/m", "public", ""],
        "{rows}"
    );
    // One start under 30/m: the next is due within 2 s of it (or already due).
    let next = &each[5];
    assert!(
        next == "now"
            || (next.starts_with("in ") && (next.ends_with(" ms") || next.ends_with(" s"))),
        "next start {next:?}"
    );
    assert!(
        browser
            .js(
                "return document.getElementById('limits-empty').hidden",
                json!([])
            )
            .await
            == json!(true)
    );
    browser
        .js(
            "document.getElementById('limits').scrollIntoView()",
            json!([]),
        )
        .await;
    browser.screenshot(&dir.join("01-limits.png")).await;

    // The job cancelled, its place is free again on the next refresh.
    let (status, _) = app.cancel(&id).await;
    assert_eq!(status, 200);
    browser
        .wait_js(
            "the factorial limit with nothing running",
            WAIT,
            "const r = document.querySelector('#limits-body tr[data-scope=\"factorial jobs\"]');
             return r && r.querySelector('[data-col=\"running\"]').textContent === '0 / 2';",
            json!([]),
        )
        .await;

    // No limits: the panel says so, and how they are set.
    jetmill_ok(&app, &["limits", "clear", "--all"]).await;
    let empty = browser
        .wait_js(
            "the no-limits line",
            WAIT,
            "const p = document.getElementById('limits-empty');
             return !p.hidden && !document.querySelector('#limits-body tr') ? p.textContent : '';",
            json!([]),
        )
        .await;
    assert!(
        empty
            .as_str()
            .unwrap_or_default()
            .contains("jetmill limits set"),
        "{empty}"
    );
    browser.screenshot(&dir.join("02-no-limits.png")).await;
}

#[tokio::test]
async fn the_workflow_panel_follows_a_fan_out_to_done_and_shows_a_cycle_refused() {
    let app = TestApp::spawn().await;
    let dir = output_dir("workflow");
    let browser = open_page(&app, &dir).await;

    // The textarea holds a fan-out/fan-in example that is valid as it stands.
    let spec = browser.find("#w-spec", WAIT).await;
    let example: Value = serde_json::from_str(
        browser
            .js("return document.getElementById('w-spec').value", json!([]))
            .await
            .as_str()
            .expect("textarea text"),
    )
    .expect("the example is JSON");
    let fan_out = example["fan_out"].as_array().expect("fan_out").len();
    assert!(fan_out >= 2 && example["fan_in"].is_object(), "{example}");
    browser
        .click(&browser.find("#workflow-submit", WAIT).await)
        .await;
    let id = browser
        .wait_js(
            "the submitted workflow's id",
            WAIT,
            "return document.getElementById('workflow-msg').dataset.workflowId || ''",
            json!([]),
        )
        .await
        .as_str()
        .expect("id")
        .to_string();

    // Followed live from the event stream until the workflow and every step are done.
    let steps = browser
        .wait_js(
            "the workflow done with every step done",
            Duration::from_secs(60),
            "const v = document.getElementById('workflow-view');
             const rows = [...document.querySelectorAll('#wf-steps tr')];
             if (v.hidden || v.dataset.id !== arguments[0] || v.dataset.status !== 'done') return null;
             if (!rows.length || !rows.every((r) => r.dataset.status === 'done')) return null;
             return rows.map((r) => ({
               name: r.dataset.step,
               status: r.querySelector('[data-col=\"status\"] .status').textContent,
               cls: r.querySelector('[data-col=\"status\"] .status').className,
               progress: Number(r.querySelector('progress').value),
               depends_on: r.querySelector('[data-col=\"depends_on\"]').textContent,
               job: r.querySelector('[data-col=\"job\"] [data-action=\"open\"]').title,
             }));",
            json!([id]),
        )
        .await;
    let steps = steps.as_array().expect("rows").clone();
    assert_eq!(steps.len(), fan_out + 1, "{steps:?}");
    let overall = browser
        .js(
            "return [document.getElementById('wf-status').textContent,
                     document.getElementById('wf-status').className,
                     document.getElementById('wf-pct').textContent,
                     document.getElementById('workflow-view').dataset.live,
                     document.getElementById('wf-cancel').hidden];",
            json!([]),
        )
        .await;
    assert_eq!(
        overall,
        json!(["done", "status status-done", "100%", "sse", true]),
        "{overall}"
    );
    browser.screenshot(&dir.join("01-workflow-done.png")).await;

    // The rows match the API's view of the workflow, step by step.
    let view: Value = app
        .http
        .get(app.url(&format!("/v1/workflows/{id}")))
        .send()
        .await
        .expect("GET workflow")
        .json()
        .await
        .expect("json");
    assert_eq!(view["status"], "done", "{view}");
    let api_steps = view["steps"].as_array().expect("steps");
    assert_eq!(api_steps.len(), steps.len(), "{view}");
    for (row, step) in steps.iter().zip(api_steps) {
        assert_eq!(row["name"], step["name"], "{row} vs {step}");
        assert_eq!(row["job"], step["job_id"], "{row} vs {step}");
        assert_eq!(row["status"], "done", "{row}");
        assert_eq!(row["cls"], "status status-done", "{row}");
        assert_eq!(row["progress"], 1.0, "{row}");
        let deps: Vec<&str> = step["depends_on"]
            .as_array()
            .expect("depends_on")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(row["depends_on"], deps.join(", "), "{row} vs {step}");
    }
    // The fan-in step waits for every fan-out step.
    let last = steps.last().expect("fan-in row");
    assert_eq!(
        last["depends_on"]
            .as_str()
            .unwrap_or_default()
            .split(", ")
            .count(),
        fan_out,
        "{last}"
    );

    // A step's job id opens the page's job view on that job.
    let job = last["job"].as_str().expect("job id").to_string();
    browser
        .click(
            &browser
                .find(
                    &format!(
                        "#wf-steps tr[data-step=\"{}\"] [data-action=\"open\"]",
                        last["name"].as_str().expect("name")
                    ),
                    WAIT,
                )
                .await,
        )
        .await;
    browser
        .wait_js(
            "the job view of the fan-in step, done",
            WAIT,
            "return !document.getElementById('job-view').hidden
                && document.getElementById('job-id').textContent === arguments[0]
                && document.querySelector('#job-record [data-field=\"status\"]')?.textContent === 'done';",
            json!([job]),
        )
        .await;

    // A cycle: the API's 422 detail and field show under the textarea.
    browser
        .type_into(
            &spec,
            r#"{"steps": [{"name": "a", "kind": "factorial", "input": 1, "depends_on": ["b"]}, {"name": "b", "kind": "factorial", "input": 1, "depends_on": ["a"]}]}"#,
        )
        .await;
    browser
        .click(&browser.find("#workflow-submit", WAIT).await)
        .await;
    let err = browser
        .wait_js(
            "the cycle refused under the textarea",
            WAIT,
            "const e = document.getElementById('err-w-spec');
             const d = e.querySelector('[data-part=\"detail\"]');
             const f = e.querySelector('[data-part=\"field\"]');
             return d && f ? [e.textContent, d.textContent, f.textContent, e.dataset.field] : null;",
            json!([]),
        )
        .await;
    assert!(err[0].as_str().unwrap_or_default().contains("422"), "{err}");
    assert!(
        err[1].as_str().unwrap_or_default().contains("cycle"),
        "{err}"
    );
    assert!(
        err[2].as_str().unwrap_or_default().starts_with("steps["),
        "{err}"
    );
    assert_eq!(err[2], err[3], "{err}");
    assert_eq!(
        browser
            .js(
                "return document.getElementById('w-spec').getAttribute('aria-invalid')",
                json!([])
            )
            .await,
        "true"
    );
    browser.screenshot(&dir.join("02-cycle-refused.png")).await;
}
