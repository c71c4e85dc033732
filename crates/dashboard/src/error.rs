//! Everything that can go wrong in a request, and the page each one becomes: never a stack
//! trace, always a sentence a person can act on.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::api::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum DashError {
    #[error("you need to log in")]
    LoginRequired,
    #[error("your session has expired")]
    SessionExpired,
    #[error("the form's security token is missing or wrong")]
    Csrf,
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("{0}")]
    NotFound(String),
    /// An admin page asked for by a session whose token has no admin role.
    #[error("this page is for administrators")]
    NotAdmin,
    /// A request no form of the dashboard sends (a malformed upload, ...).
    #[error("{0}")]
    BadRequest(String),
    #[error("the page could not be rendered: {0}")]
    Render(#[from] askama::Error),
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub status: u16,
    pub title: String,
    pub message: String,
}

pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let page = ErrorPage {
        status: status.as_u16(),
        title: title.to_string(),
        message: message.to_string(),
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, message.to_string()).into_response(),
    }
}

/// "The compute service refused this: ..." for an API error.
pub fn api_message(e: &ApiError) -> String {
    match e {
        ApiError::Status {
            service,
            status,
            message,
        } => {
            let what = match status {
                403 => "refused this",
                404 => "could not find it",
                409 => "cannot do this now",
                413 => "says a quota is exceeded",
                501 => "does not support this",
                s if *s >= 500 => "failed",
                _ => "did not accept this",
            };
            format!("The {service} service {what}: {message}")
        }
        other => other.to_string(),
    }
}

impl IntoResponse for DashError {
    fn into_response(self) -> Response {
        match self {
            DashError::LoginRequired => Redirect::to("/dashboard/login").into_response(),
            DashError::SessionExpired => Redirect::to("/dashboard/login?expired=1").into_response(),
            DashError::Csrf => error_page(
                StatusCode::FORBIDDEN,
                "Form not accepted",
                "This form was sent without the security token of your session (or with a wrong \
                 one), so it was not acted on. Go back, reload the page and try again.",
            ),
            DashError::Api(e) => {
                let status = match &e {
                    ApiError::Status { status, .. } => {
                        StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
                    }
                    _ => StatusCode::BAD_GATEWAY,
                };
                let title = match status.as_u16() {
                    403 => "Not allowed",
                    404 => "Not found",
                    _ => "The cloud answered with an error",
                };
                error_page(status, title, &api_message(&e))
            }
            DashError::NotFound(m) => error_page(StatusCode::NOT_FOUND, "Not found", &m),
            DashError::NotAdmin => error_page(
                StatusCode::FORBIDDEN,
                "Not allowed",
                "The admin pages are for users with the admin role in the current project.",
            ),
            DashError::BadRequest(m) => error_page(StatusCode::BAD_REQUEST, "Not accepted", &m),
            DashError::Render(e) => {
                tracing::error!(error = %e, "dashboard template failed");
                error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal error",
                    "This page could not be shown; the error is in kumo's log.",
                )
            }
        }
    }
}
