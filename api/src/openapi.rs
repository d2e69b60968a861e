//! The OpenAPI document: its info here; its paths and schemas are collected from the handlers'
//! `#[utoipa::path]` as each route module registers them (`routes()`, utoipa-axum), so an endpoint
//! is registered in one place.

use utoipa::OpenApi;

/// The OpenAPI document's info; [`crate::router`] adds every endpoint's path.
#[derive(OpenApi)]
#[openapi(info(
    title = "keymarket API",
    description = "friend.tech-style key market analytics: exact ETH amounts as {eth, wei} strings."
))]
pub struct ApiDoc;
