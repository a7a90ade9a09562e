//! Who may use the HTTP face, and from where.
//!
//! Scripts present this start's token as `Authorization: Bearer TOKEN`.
//! Browsers never see the token: a one-time login code that lives
//! [`CODE_LIFETIME`] (one `corral dashboard` leaves in the runtime dir's
//! login folder, or one `POST /api/login` mints for the token's bearer)
//! is traded by `/login?code=…` for a session cookie of its own (random,
//! HttpOnly, SameSite=Strict, named for the port, since browsers do not
//! scope cookies by port). A cookie is ambient, so requests that carry
//! one must also come from the face's own pages: a cross-site
//! `Sec-Fetch-Site` is refused, and so is a state-changing method whose
//! `Origin` is not the face's own. Every request must name a loopback
//! `Host` (no DNS rebinding). Secrets are compared in constant time; wrong
//! ones are answered 401, and past [`FAILURES_PER_SECOND`] a second, 429.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::Face;
use crate::rate::{Limiter, RateLimit};

/// Wrong secrets answered 401 per second, face-wide; more get 429.
const FAILURES_PER_SECOND: u32 = 5;
/// How long a login code may wait to be used.
pub(super) const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// Login codes outstanding at once; minting more forgets the oldest.
const MAX_CODES: usize = 16;
/// Browser sessions at once; a new login past it ends the oldest.
const MAX_SESSIONS: usize = 32;

/// A secret and how a request presented it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Credential<'a> {
    /// `Authorization: Bearer …`: the token, from a script.
    Bearer(&'a str),
    /// The session cookie, from a browser.
    Session(&'a str),
}

/// The secrets outstanding: login codes and sessions.
#[derive(Debug, Default)]
struct Secrets {
    codes: VecDeque<(String, Instant)>,
    sessions: VecDeque<String>,
}

/// The token, the outstanding secrets, and the count of wrong ones.
#[derive(Clone, Debug)]
pub(super) struct Gate {
    token: Arc<str>,
    cookie: Arc<str>,
    /// Whether requests must name a loopback `Host` (the face listens on
    /// loopback; off it, TLS or the operator's `insecure` stand instead).
    loopback: bool,
    /// Whether the face speaks TLS (its cookie is then `Secure`).
    tls: bool,
    /// Where `corral dashboard` leaves login codes, a file each.
    logins: Arc<std::path::Path>,
    secrets: Arc<Mutex<Secrets>>,
    failures: Arc<Limiter>,
}

impl Gate {
    /// A gate with a fresh random token, for a face on `port`.
    pub(super) fn generate(
        port: u16,
        (loopback, tls): (bool, bool),
        logins: &std::path::Path,
    ) -> std::io::Result<Self> {
        let token = crate::os::spawn::new_secret()?;
        Ok(Self {
            token: token.into(),
            cookie: format!("corral_session_{port}").into(),
            loopback,
            tls,
            logins: logins.into(),
            secrets: Arc::default(),
            failures: Arc::new(Limiter::new(RateLimit {
                calls: FAILURES_PER_SECOND,
                per: Duration::from_secs(1),
            })),
        })
    }

    /// The token, for the token file.
    pub(super) fn token(&self) -> &str {
        &self.token
    }

    fn secrets(&self) -> std::sync::MutexGuard<'_, Secrets> {
        self.secrets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn admits(&self, credential: Credential<'_>) -> bool {
        match credential {
            Credential::Bearer(token) => equal(token, &self.token),
            Credential::Session(id) => self.secrets().sessions.iter().any(|s| equal(id, s)),
        }
    }

    /// A new one-time login code.
    fn mint_code(&self) -> std::io::Result<String> {
        let code = crate::os::spawn::new_secret()?;
        let mut secrets = self.secrets();
        let now = Instant::now();
        secrets.codes.retain(|(_, expires)| *expires > now);
        if secrets.codes.len() >= MAX_CODES {
            secrets.codes.pop_front();
        }
        secrets.codes.push_back((code.clone(), now + CODE_LIFETIME));
        Ok(code)
    }

    /// Uses up `code` and opens a session for it, if it is outstanding.
    fn redeem(&self, code: &str) -> Option<String> {
        let session = crate::os::spawn::new_secret().ok()?;
        let left = self.take_left(code);
        let mut secrets = self.secrets();
        let now = Instant::now();
        let found = secrets
            .codes
            .iter()
            .position(|(c, expires)| *expires > now && equal(code, c));
        match found {
            Some(found) => {
                secrets.codes.remove(found);
            }
            None if left => {}
            None => return None,
        }
        if secrets.sessions.len() >= MAX_SESSIONS {
            secrets.sessions.pop_front();
        }
        secrets.sessions.push_back(session.clone());
        Some(session)
    }

    /// Whether `code` was left by `corral dashboard` in the login folder
    /// (a regular file of this user, written within [`CODE_LIFETIME`]);
    /// the file is removed either way, so it works once.
    fn take_left(&self, code: &str) -> bool {
        use std::os::unix::fs::MetadataExt;
        if code.len() != 64 || !code.bytes().all(|b| b.is_ascii_hexdigit()) {
            return false;
        }
        let path = self.logins.join(code);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            return false;
        };
        // Whoever removes it claims it: two logins with one code get one session.
        if std::fs::remove_file(&path).is_err() {
            return false;
        }
        let fresh = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age < CODE_LIFETIME);
        meta.is_file() && meta.uid() == nix::unistd::geteuid().as_raw() && fresh
    }

    /// The answer to a missing or wrong secret.
    fn refuse(&self, presented: bool) -> Response {
        if presented && self.failures.check().is_err() {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "1")],
                "too many wrong secrets; wait a second\n",
            )
                .into_response();
        }
        let why = if presented {
            "wrong token, session or login code"
        } else {
            "a token is needed: `corral http-token` prints it; send it as `Authorization: Bearer TOKEN`, or open the URL `corral dashboard` prints"
        };
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            format!("{why}\n"),
        )
            .into_response()
    }

    /// The request's credential: its bearer header, else its session cookie.
    pub(super) fn presented<'h>(&self, headers: &'h HeaderMap) -> Option<Credential<'h>> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| Credential::Bearer(t.trim()));
        bearer.or_else(|| cookie(headers, &self.cookie).map(Credential::Session))
    }
}

fn equal(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The value of cookie `name` in `headers`.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
}

/// Whether `host` (a `Host` header) names a loopback address, so that a
/// page whose name was rebound to 127.0.0.1 is not served.
pub(super) fn loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Why a request that carries the session cookie is not the face's own
/// page asking, if it is not: a cross-site fetch, or a state-changing
/// method from another origin (or none named).
pub(super) fn foreign(method: &Method, headers: &HeaderMap) -> Option<&'static str> {
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if site.is_some_and(|s| s != "same-origin" && s != "none") {
        return Some("a request from another site's page");
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    // A WebSocket handshake is a GET, and names its page's origin.
    let upgrade = headers.contains_key(header::UPGRADE);
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) && !upgrade;
    match (origin, host) {
        (Some(origin), Some(host))
            if origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"))
                == Some(host) =>
        {
            None
        }
        (Some(_), _) => Some("a request from another origin"),
        (None, _) if safe => None,
        (None, _) => Some("a state-changing request or a WebSocket with no Origin"),
    }
}

/// The gate in front of every guarded route.
pub(super) async fn require(State(face): State<Face>, request: Request, next: Next) -> Response {
    let gate = &face.gate;
    if let Some(refused) = wrong_host(gate, request.headers()) {
        return refused;
    }
    match gate.presented(request.headers()) {
        Some(credential) if gate.admits(credential) => {
            if let Credential::Session(_) = credential
                && let Some(why) = foreign(request.method(), request.headers())
            {
                return (
                    StatusCode::FORBIDDEN,
                    format!("refused: {why} carrying the dashboard's session cookie\n"),
                )
                    .into_response();
            }
            next.run(request).await
        }
        other => gate.refuse(other.is_some()),
    }
}

fn wrong_host(gate: &Gate, headers: &HeaderMap) -> Option<Response> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match host {
        _ if !gate.loopback => None,
        Some(host) if loopback_host(host) => None,
        _ => Some(
            (
                StatusCode::MISDIRECTED_REQUEST,
                "the HTTP face answers only to a loopback Host (127.0.0.1, [::1], localhost)\n",
            )
                .into_response(),
        ),
    }
}

/// `/login` (the one route without the gate) and `/api/login`, which
/// mints its codes.
pub(super) fn routes() -> Router<Face> {
    Router::new().route("/login", get(login))
}

/// The guarded route that mints login codes (for bearers only: a session
/// cannot extend itself).
pub(super) fn code_routes() -> Router<Face> {
    Router::new().route("/api/login", post(mint))
}

async fn mint(State(face): State<Face>, headers: HeaderMap) -> Response {
    if !matches!(face.gate.presented(&headers), Some(Credential::Bearer(_))) {
        return (
            StatusCode::FORBIDDEN,
            "login codes are minted for the token's bearer only\n",
        )
            .into_response();
    }
    match face.gate.mint_code() {
        Ok(code) => axum::Json(serde_json::json!({
            "path": format!("/login?code={code}"),
            "expires_in_s": CODE_LIFETIME.as_secs(),
        }))
        .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

#[derive(Deserialize)]
struct Login {
    code: Option<String>,
}

/// Trades a login code for a session cookie and sends the browser to the
/// dashboard.
async fn login(
    State(face): State<Face>,
    headers: HeaderMap,
    Query(login): Query<Login>,
) -> Response {
    if let Some(refused) = wrong_host(&face.gate, &headers) {
        return refused;
    }
    let session = login
        .code
        .as_deref()
        .and_then(|code| face.gate.redeem(code));
    let Some(session) = session else {
        return face.gate.refuse(login.code.is_some());
    };
    let secure = if face.gate.tls { "; Secure" } else { "" };
    let cookie = format!(
        "{}={session}; HttpOnly; SameSite=Strict; Path=/{secure}",
        face.gate.cookie
    );
    let mut answer = (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        answer.headers_mut().insert(header::SET_COOKIE, value);
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                header::HeaderName::from_bytes(k.as_bytes()).expect("a name"),
                HeaderValue::from_str(v).expect("a value"),
            );
        }
        map
    }

    #[test]
    fn a_credential_is_the_bearer_header_or_this_ports_cookie() {
        let gate = Gate::generate(7700, (true, false), std::path::Path::new("/nonexistent"))
            .expect("a token");
        let bearer = headers(&[("authorization", "Bearer abc")]);
        assert_eq!(gate.presented(&bearer), Some(Credential::Bearer("abc")));
        let cookie = headers(&[("cookie", "theme=dark; corral_session_7700=xyz")]);
        assert_eq!(gate.presented(&cookie), Some(Credential::Session("xyz")));
        let other = headers(&[
            ("cookie", "corral_session_7701=1; corral_session_77000=2"),
            ("authorization", "Basic abc"),
        ]);
        assert_eq!(gate.presented(&other), None);
    }

    #[test]
    fn only_the_token_itself_is_admitted_and_a_session_only_from_a_code() {
        let gate = Gate::generate(1, (true, false), std::path::Path::new("/nonexistent"))
            .expect("a token");
        let token = gate.token().to_string();
        assert_eq!(token.len(), 64);
        assert!(gate.admits(Credential::Bearer(&token)));
        assert!(!gate.admits(Credential::Bearer(&token[..63])));
        assert!(!gate.admits(Credential::Bearer("")));
        assert!(
            !gate.admits(Credential::Session(&token)),
            "the token is no session"
        );
        assert_ne!(
            Gate::generate(1, (true, false), std::path::Path::new("/nonexistent"))
                .expect("a token")
                .token(),
            token
        );

        let code = gate.mint_code().expect("a code");
        assert!(gate.redeem("nonsense").is_none());
        let session = gate.redeem(&code).expect("the code opens a session");
        assert!(gate.redeem(&code).is_none(), "a code works once");
        assert!(gate.admits(Credential::Session(&session)));
        assert!(
            !gate.admits(Credential::Bearer(&session)),
            "a session is no token"
        );
    }

    #[test]
    fn codes_and_sessions_are_bounded_oldest_first() {
        let gate = Gate::generate(1, (true, false), std::path::Path::new("/nonexistent"))
            .expect("a token");
        let first = gate.mint_code().expect("a code");
        for _ in 0..MAX_CODES {
            gate.mint_code().expect("a code");
        }
        assert!(
            gate.redeem(&first).is_none(),
            "the oldest code was forgotten"
        );
        let mut sessions = Vec::new();
        for _ in 0..=MAX_SESSIONS {
            let code = gate.mint_code().expect("a code");
            sessions.push(gate.redeem(&code).expect("a session"));
        }
        assert!(!gate.admits(Credential::Session(&sessions[0])));
        assert!(gate.admits(Credential::Session(&sessions[MAX_SESSIONS])));
    }

    #[test]
    fn only_the_faces_own_pages_may_use_the_cookie() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(foreign(&get, &headers(&[])), None);
        assert_eq!(foreign(&get, &headers(&[("sec-fetch-site", "none")])), None);
        assert!(foreign(&get, &headers(&[("sec-fetch-site", "same-site")])).is_some());
        assert!(foreign(&get, &headers(&[("sec-fetch-site", "cross-site")])).is_some());
        let own = [
            ("host", "127.0.0.1:7700"),
            ("origin", "http://127.0.0.1:7700"),
        ];
        assert_eq!(foreign(&post, &headers(&own)), None);
        assert!(foreign(&post, &headers(&[("host", "127.0.0.1:7700")])).is_some());
        let other = [
            ("host", "127.0.0.1:7700"),
            ("origin", "http://127.0.0.1:8000"),
        ];
        assert!(foreign(&post, &headers(&other)).is_some());
        let null = [("host", "127.0.0.1:7700"), ("origin", "null")];
        assert!(foreign(&post, &headers(&null)).is_some());
    }

    #[test]
    fn only_loopback_hosts_are_served() {
        for host in [
            "127.0.0.1:7700",
            "localhost:1",
            "[::1]:80",
            "127.0.0.2",
            "LOCALHOST",
        ] {
            assert!(loopback_host(host), "{host}");
        }
        for host in ["evil.example:7700", "10.0.0.1:80", "localhost.evil:1", ""] {
            assert!(!loopback_host(host), "{host}");
        }
    }
}
