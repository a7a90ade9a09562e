//! Errors as HTTP answers: each [`ErrorReply`] code has one status, and the
//! body is the reply itself (`{"code", "message"}`), as `corral call`
//! shows it. A plugin that is down is 503 with `Retry-After`; one that
//! passed its `call_timeout` 504; a plugin's own codes are 500.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use corral_proto::{ErrorReply, codes};

/// An error answered over HTTP.
#[derive(Debug)]
pub(super) struct Failure(pub(super) ErrorReply);

impl From<ErrorReply> for Failure {
    fn from(reply: ErrorReply) -> Self {
        Self(reply)
    }
}

impl Failure {
    /// A request the face cannot take: 400 with `message`.
    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self(ErrorReply::new(codes::BAD_REQUEST, message))
    }
}

/// The status an error code is answered with.
pub(super) fn status_of(code: &str) -> StatusCode {
    match code {
        codes::UNKNOWN_PLUGIN | codes::UNKNOWN_ACTION => StatusCode::NOT_FOUND,
        codes::BAD_REQUEST | codes::BAD_PAYLOAD | codes::BAD_TOPIC => StatusCode::BAD_REQUEST,
        codes::DENIED => StatusCode::FORBIDDEN,
        codes::TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        codes::RATE_LIMITED | codes::LIMIT => StatusCode::TOO_MANY_REQUESTS,
        codes::NOT_RUNNING | codes::SHUTTING_DOWN => StatusCode::SERVICE_UNAVAILABLE,
        codes::TIMEOUT => StatusCode::GATEWAY_TIMEOUT,
        codes::DISCONNECTED => StatusCode::BAD_GATEWAY,
        codes::NOT_SUPPORTED | codes::STREAMED => StatusCode::NOT_IMPLEMENTED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = status_of(&self.0.code);
        let mut answer = (status, Json(self.0)).into_response();
        if matches!(
            status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            answer
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_has_the_status_a_client_expects() {
        assert_eq!(status_of(codes::UNKNOWN_PLUGIN), StatusCode::NOT_FOUND);
        assert_eq!(
            status_of(codes::NOT_RUNNING),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status_of(codes::TIMEOUT), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(status_of(codes::DENIED), StatusCode::FORBIDDEN);
        assert_eq!(status_of(codes::TOO_LARGE), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(status_of("no_such_user"), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
