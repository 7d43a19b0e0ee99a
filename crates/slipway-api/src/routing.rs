//! The route table: every route group registers its paths through
//! [`Routes`], which keeps the path templates beside the axum router, so the
//! server can say which paths it serves ([`crate::route_paths`]) and a test
//! can check each against the OpenAPI document.

use axum::routing::MethodRouter;
use axum::Router;

use crate::AppState;

/// An axum router plus the path templates registered on it (axum does not
/// list its routes).
#[derive(Debug, Default)]
pub struct Routes {
    router: Router<AppState>,
    paths: Vec<String>,
}

impl Routes {
    /// No routes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `path` (an axum template, `{name}` per parameter) served by `methods`.
    pub fn route(mut self, path: &str, methods: MethodRouter<AppState>) -> Self {
        self.router = self.router.route(path, methods);
        self.paths.push(path.to_string());
        self
    }

    /// Adds every route of `other`.
    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.paths.extend(other.paths);
        self
    }

    /// Changes the router (e.g. adds a layer) keeping the paths.
    pub fn map_router(mut self, f: impl FnOnce(Router<AppState>) -> Router<AppState>) -> Self {
        self.router = f(self.router);
        self
    }

    /// The router and the path templates, in registration order.
    pub fn into_parts(self) -> (Router<AppState>, Vec<String>) {
        (self.router, self.paths)
    }
}
