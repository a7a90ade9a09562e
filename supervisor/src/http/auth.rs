//! Who may use the HTTP face: whoever holds this start's token, presented
//! as `Authorization: Bearer TOKEN` or as the session cookie that
//! `/login?token=TOKEN` sets (HttpOnly, SameSite=Strict, so no other site's
//! page can make the browser use it). Tokens are compared in constant time;
//! wrong ones are answered 401, and past [`FAILURES_PER_SECOND`] a second,
//! 429 for every wrong one, so guessing is slow.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::Face;
use crate::rate::{Limiter, RateLimit};

/// The session cookie's name.
pub(super) const COOKIE: &str = "corral_session";
/// Wrong tokens answered 401 per second, face-wide; more get 429.
const FAILURES_PER_SECOND: u32 = 5;

/// The token, and the count of wrong ones.
#[derive(Clone, Debug)]
pub(super) struct Gate {
    token: Arc<str>,
    failures: Arc<Limiter>,
}

impl Gate {
    /// A gate with a fresh random token.
    pub(super) fn generate() -> std::io::Result<Self> {
        let token = crate::os::spawn::new_secret()?;
        Ok(Self {
            token: token.into(),
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

    fn admits(&self, presented: &str) -> bool {
        presented.as_bytes().ct_eq(self.token.as_bytes()).into()
    }

    /// The answer to a missing or wrong token.
    fn refuse(&self, presented: bool) -> Response {
        if presented && self.failures.check().is_err() {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "1")],
                "too many wrong tokens; wait a second\n",
            )
                .into_response();
        }
        let why = if presented {
            "wrong token"
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
}

/// The token a request presents: its bearer header, else its cookie.
pub(super) fn presented(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    bearer.or_else(|| {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
    })
}

/// The gate in front of every guarded route.
pub(super) async fn require(State(face): State<Face>, request: Request, next: Next) -> Response {
    match presented(request.headers()) {
        Some(token) if face.gate.admits(token) => next.run(request).await,
        other => face.gate.refuse(other.is_some()),
    }
}

/// `/login`, the one route without the gate.
pub(super) fn routes() -> Router<Face> {
    Router::new().route("/login", get(login))
}

#[derive(Deserialize)]
struct Login {
    token: Option<String>,
}

/// Sets the session cookie and sends the browser to the dashboard.
async fn login(State(face): State<Face>, Query(login): Query<Login>) -> Response {
    match login.token {
        Some(token) if face.gate.admits(&token) => {
            let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
            let mut answer = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                answer.headers_mut().insert(header::SET_COOKIE, value);
            }
            answer
        }
        other => face.gate.refuse(other.is_some()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                k.clone(),
                HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
            );
        }
        map
    }

    #[test]
    fn a_token_comes_from_the_bearer_header_or_the_cookie() {
        let bearer = headers(&[(header::AUTHORIZATION, "Bearer abc")]);
        assert_eq!(presented(&bearer), Some("abc"));
        let cookie = headers(&[(header::COOKIE, "theme=dark; corral_session=xyz")]);
        assert_eq!(presented(&cookie), Some("xyz"));
        let other = headers(&[
            (header::COOKIE, "corral_sessionx=1"),
            (header::AUTHORIZATION, "Basic abc"),
        ]);
        assert_eq!(presented(&other), None);
    }

    #[test]
    fn only_the_token_itself_is_admitted() {
        let gate = Gate::generate().expect("a token");
        let token = gate.token().to_string();
        assert_eq!(token.len(), 64);
        assert!(gate.admits(&token));
        assert!(!gate.admits(&token[..63]));
        assert!(!gate.admits(""));
        assert_ne!(Gate::generate().expect("a token").token(), token);
    }
}
