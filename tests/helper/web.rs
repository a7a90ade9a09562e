//! A client of a fleet's HTTP face: [`Web`] reads the URL and token the
//! supervisor wrote to its runtime dir, and makes plain requests with or
//! without the token; [`Web::sse`] reads a Server-Sent Events stream until
//! the caller has what it waits for.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, RequestBuilder, Response};

use crate::wait::wait_until;

/// The HTTP face of one fleet.
#[derive(Debug, Clone)]
pub struct Web {
    /// `http://127.0.0.1:PORT/`.
    pub url: String,
    /// This start's token.
    pub token: String,
    client: Client,
}

impl Web {
    /// The face of the fleet whose runtime dir is `runtime_dir`, once it
    /// serves (the supervisor writes `http.url` when it listens).
    pub fn of(runtime_dir: &Path) -> Self {
        let read = |name: &str| {
            std::fs::read_to_string(runtime_dir.join(name))
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        };
        let url = wait_until(Duration::from_secs(10), "the HTTP face's URL", || {
            read("http.url")
        });
        let token = read("http.token").expect("the token file beside the URL");
        let client = Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        Self { url, token, client }
    }

    /// `METHOD path` without any token.
    pub fn bare(&self, method: &str, path: &str) -> RequestBuilder {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        self.client.request(
            method,
            format!("{}{}", self.url, path.trim_start_matches('/')),
        )
    }

    /// `METHOD path` with the bearer token.
    pub fn request(&self, method: &str, path: &str) -> RequestBuilder {
        self.bare(method, path).bearer_auth(&self.token)
    }

    /// A browser session: a login code minted with the token, traded at
    /// `/login` for the session cookie; its `name=value`.
    pub fn session(&self) -> String {
        let minted: serde_json::Value = self
            .request("POST", "api/login")
            .send()
            .expect("an answer")
            .json()
            .expect("JSON");
        let path = minted["path"].as_str().expect("a login path");
        let answer = self.bare("GET", path).send().expect("an answer");
        assert_eq!(answer.status(), 303, "the login code was refused");
        let cookie = answer.headers()["set-cookie"].to_str().expect("text");
        cookie.split(';').next().expect("name=value").to_string()
    }

    /// `GET path` with the token; the answer.
    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path).send().expect("an answer")
    }

    /// `POST path` with `body` as JSON, with the token; the answer.
    pub fn post(&self, path: &str, body: &serde_json::Value) -> Response {
        self.request("POST", path)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .expect("an answer")
    }

    /// Opens the stream at `path` and hands each event (its `event:` name
    /// and `data:`) to `take` until it returns `Some`, or `timeout` passes.
    pub fn sse<T>(
        &self,
        request: RequestBuilder,
        timeout: Duration,
        mut take: impl FnMut(&str, &str) -> Option<T>,
    ) -> T {
        let answer = request.timeout(timeout).send().expect("the stream opens");
        assert!(answer.status().is_success(), "stream: {}", answer.status());
        let deadline = Instant::now() + timeout;
        let mut lines = BufReader::new(answer).lines();
        let (mut kind, mut data) = (String::new(), String::new());
        while Instant::now() < deadline {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(k) = line.strip_prefix("event:") {
                kind = k.trim().to_string();
            } else if let Some(d) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(d.strip_prefix(' ').unwrap_or(d));
            } else if line.is_empty() && !data.is_empty() {
                if let Some(found) = take(&kind, &data) {
                    return found;
                }
                (kind, data) = (String::new(), String::new());
            }
        }
        panic!("the stream ended, or {timeout:?} passed, before what was waited for came");
    }
}
