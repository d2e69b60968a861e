//! The API's errors and their JSON bodies: every 4xx and 5xx is `{"error": {"code", "message"}}`.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use tracing::error;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// An error's status and message.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The HTTP status.
    pub status: u16,
    /// The problem, in words.
    pub message: String,
}

/// An API error: a status and a JSON body naming the problem. Database errors are logged and
/// answered with a generic 500 body; their text never reaches clients.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request asks for something that is not allowed (a SQL query that would write).
    #[error("{0}")]
    Forbidden(String),
    /// The request is well-formed but could not be carried out (a SQL query past its time
    /// limit).
    #[error("{0}")]
    Unprocessable(String),
    /// The client went over a limit of its own (its rate, its queries running at once); the
    /// answer says when to retry (`Retry-After`, seconds).
    #[error("{message}")]
    TooManyRequests {
        /// Which limit, in words.
        message: String,
        /// Seconds to wait before retrying.
        retry_after: u64,
    },
    /// The request body is bigger than the endpoint takes.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The path exists, the method does not (the allowed ones in `Allow`).
    #[error("{message}")]
    MethodNotAllowed {
        /// What the path takes, in words.
        message: String,
        /// The `Allow` header's value.
        allow: &'static str,
    },
    /// The server is busy with heavy work right now; retry after `retry_after` seconds.
    #[error("{message}")]
    Unavailable {
        /// Why, in words.
        message: String,
        /// Seconds to wait before retrying.
        retry_after: u64,
    },
    /// Something failed on our side.
    #[error("internal error")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(detail) => {
                error!(target: "api", %detail, "internal error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error: ErrorDetail {
                    status: status.as_u16(),
                    message: self.to_string(),
                },
            }),
        )
            .into_response();
        let headers = response.headers_mut();
        match &self {
            Self::TooManyRequests { retry_after, .. } | Self::Unavailable { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            Self::MethodNotAllowed { allow, .. } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            _ => {}
        }
        response
    }
}

impl From<keymarket_store::Error> for ApiError {
    fn from(e: keymarket_store::Error) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<keymarket_store::SqlError> for ApiError {
    fn from(e: keymarket_store::SqlError) -> Self {
        use keymarket_store::SqlError as E;
        match e {
            // The analyst's own query: the database's message is the useful answer.
            E::Invalid(m) => Self::BadRequest(m),
            E::Forbidden(m) => Self::Forbidden(m),
            e @ (E::TimedOut(_) | E::TooLarge(_)) => Self::Unprocessable(e.to_string()),
            e @ (E::Setup(_) | E::Database(_)) => Self::Internal(e.to_string()),
        }
    }
}

pub(crate) type ApiResult<T> = Result<Json<T>, ApiError>;
