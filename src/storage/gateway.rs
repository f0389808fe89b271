//! The gateway's storage port: routes of the `/gateway` proxy. Like every
//! other change, each write is audited with its actor and takes a number
//! in the change sequence inside its own transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::model::Committed;

/// A stored route: its validated definition (JSON, without the id) and
/// what the server keeps.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteRecord {
    pub id: String,
    /// Kept in its own column so that two routes cannot share a path.
    pub path: String,
    pub spec: serde_json::Value,
    /// Starts at 1; every change adds one.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

impl RouteRecord {
    /// The route as the API shows it: the definition plus the id and the
    /// server-kept fields.
    pub fn api_json(&self) -> serde_json::Value {
        let mut body = self.spec.clone();
        if let serde_json::Value::Object(map) = &mut body {
            map.insert("id".into(), self.id.clone().into());
            map.insert("version".into(), self.version.into());
            map.insert("created_at".into(), serde_json::json!(self.created_at));
            map.insert("updated_at".into(), serde_json::json!(self.updated_at));
            map.insert("updated_by".into(), self.updated_by.clone().into());
        }
        body
    }
}

#[async_trait]
pub trait GatewayStore: Send + Sync {
    /// Every route, ordered by path.
    async fn gateway_routes(&self) -> Result<Vec<RouteRecord>>;
    async fn gateway_route(&self, id: &str) -> Result<Option<RouteRecord>>;
    /// `Conflict` naming the field when the id or the path is taken.
    async fn create_gateway_route(
        &self,
        id: &str,
        path: &str,
        spec: serde_json::Value,
        actor: &str,
    ) -> Result<Committed<RouteRecord>>;
    /// Replaces a route's definition. `NotFound`, or `Conflict` when
    /// another route has the path.
    async fn update_gateway_route(
        &self,
        id: &str,
        path: &str,
        spec: serde_json::Value,
        actor: &str,
    ) -> Result<Committed<RouteRecord>>;
    /// `NotFound` when there is no such route.
    async fn delete_gateway_route(&self, id: &str, actor: &str) -> Result<Committed<RouteRecord>>;
}
