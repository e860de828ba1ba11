//! The web page at `/`: plain HTML, CSS and JavaScript from `gateway/web/`, embedded
//! in the binary so the gateway serves it with no files beside it and no network.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

/// One embedded file and its content type.
struct Asset {
    body: &'static str,
    content_type: &'static str,
}

const INDEX: Asset = Asset {
    body: include_str!("../../web/index.html"),
    content_type: "text/html; charset=utf-8",
};
const APP_JS: Asset = Asset {
    body: include_str!("../../web/app.js"),
    content_type: "text/javascript; charset=utf-8",
};
const STYLE_CSS: Asset = Asset {
    body: include_str!("../../web/style.css"),
    content_type: "text/css; charset=utf-8",
};

/// Everything the page loads comes from this origin; nothing from a CDN.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

fn serve(asset: &Asset) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            // Small files; always revalidate so a new binary's page is picked up.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
        ],
        asset.body,
    )
        .into_response()
}

/// `GET /`: the page.
pub async fn index() -> Response {
    serve(&INDEX)
}

/// `GET /assets/app.js`.
pub async fn app_js() -> Response {
    serve(&APP_JS)
}

/// `GET /assets/style.css`.
pub async fn style_css() -> Response {
    serve(&STYLE_CSS)
}
