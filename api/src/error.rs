//! The API's errors and their JSON bodies: every 4xx and 5xx is `{"error": {"code", "message"}}`.

use axum::{
    Json,
    http::StatusCode,
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
    /// The client went over its rate limit.
    #[error("{0}")]
    TooManyRequests(String),
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
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(detail) => {
                error!(target: "api", %detail, "internal error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (
            status,
            Json(ErrorBody {
                error: ErrorDetail {
                    status: status.as_u16(),
                    message: self.to_string(),
                },
            }),
        )
            .into_response()
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
            e @ E::TimedOut(_) => Self::Unprocessable(e.to_string()),
            e @ (E::Setup(_) | E::Database(_)) => Self::Internal(e.to_string()),
        }
    }
}

pub(crate) type ApiResult<T> = Result<Json<T>, ApiError>;
