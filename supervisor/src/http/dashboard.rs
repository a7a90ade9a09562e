//! The dashboard: one page and its script and style, built into the binary
//! (no build step, no CDN). The page keeps the fleet live from
//! `/api/plugins?watch=1` and a plugin's log from its `logs?follow=1`
//! stream, and acts through the REST API; a Content-Security-Policy keeps
//! it to this origin's files.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::Face;

const PAGE: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/style.css");
const POLICY: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'";

pub(super) fn routes() -> Router<Face> {
    Router::new()
        .route("/", get(|| file(PAGE, "text/html; charset=utf-8")))
        .route(
            "/app.js",
            get(|| file(SCRIPT, "text/javascript; charset=utf-8")),
        )
        .route("/style.css", get(|| file(STYLE, "text/css; charset=utf-8")))
}

async fn file(body: &'static str, kind: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}
