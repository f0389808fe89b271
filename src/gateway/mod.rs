//! The context-aware gateway: a reverse proxy at `/gateway` whose routes
//! pick their upstream per request by evaluating a flag for the caller and
//! the request itself, with the same compiled snapshot the API serves.
//!
//! Routes are stored (audited, numbered, published on the change feed like
//! every other change) and managed by admins; the proxy reads an immutable
//! `RouteTable` swapped after each committed change, inside the same unit
//! of work as the commit, so a change takes effect on the next request and
//! a client hanging up cannot leave the table disagreeing with the store.
//!
//! This module and `http` are the two that know HTTP: the proxy has to
//! rewrite headers and stream bodies. It still never picks a status code
//! or writes an error body: it returns `ProxyError`, which `http/error.rs`
//! maps like every other kind.

mod context;
mod h1;
mod h1_pool;
pub mod net;
mod outgoing;
mod pool;
mod proxy;
mod route;
mod simulate;

use std::collections::HashSet;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::config::GatewayConfig;
use crate::error::{Error, Result};
use crate::events::{ChangeEvent, ChangeFeed, Subject};
use crate::flags::Flags;
use crate::functions::Functions;
use crate::iam::Caller;
use crate::metrics::Recorder;
use crate::model::Role;
use crate::storage::gateway::{GatewayStore, RouteRecord};
use crate::unit_of_work::run_to_completion;
pub use h1::{field, status_line, Answered, Prepared, Reply};
pub use proxy::{Proxy, ProxyError};
pub use route::{Route, RouteSpec, RouteTable, Target, Upstream, MOUNT};
pub use simulate::Simulation;

/// Fields the server keeps; accepted in a body (a GET result can be sent
/// back as a PUT) but never taken from it.
const SERVER_FIELDS: [&str; 4] = ["version", "created_at", "updated_at", "updated_by"];

/// Who changes routes declared in the config file, in the audit log.
const CONFIG_ACTOR: &str = "config";

pub struct Gateway {
    routes: Arc<Routes>,
    flags: Arc<Flags>,
    /// Exposures and errors of flag-gated routes, for the detector.
    metrics: Arc<Recorder>,
    pub proxy: Proxy,
    /// For `function:<name>` targets, and the body limit `/functions` has.
    functions: Arc<Functions>,
    function_body_limit: usize,
}

/// Rejects a `gateway` section that parses but cannot work.
pub fn validate_config(config: &GatewayConfig) -> std::result::Result<(), (&'static str, String)> {
    if !context::valid_cookie_name(&config.cookie_name) {
        return Err((
            "gateway.cookie_name",
            "must be 1-64 letters, digits, '-' or '_'".into(),
        ));
    }
    for block in &config.trusted_proxies {
        net::Cidr::parse(block).map_err(|e| ("gateway.trusted_proxies", e))?;
    }
    if config.max_body_bytes == 0 {
        return Err(("gateway.max_body_bytes", "must be at least 1".into()));
    }
    let mut ids = HashSet::new();
    for (i, spec) in config.routes.iter().enumerate() {
        let Some(id) = &spec.id else {
            return Err((
                "gateway.routes",
                format!("routes[{i}]: id is required for routes declared in the config file"),
            ));
        };
        if !ids.insert(id.clone()) {
            return Err((
                "gateway.routes",
                format!("routes[{i}]: id {id} is declared twice"),
            ));
        }
        route::compile(id, &mut spec.clone())
            .map_err(|e| ("gateway.routes", format!("routes[{i}].{e}")))?;
    }
    Ok(())
}

impl Gateway {
    /// Loads the stored routes, then brings the routes of `config` to their
    /// declared definition (actor `config`).
    pub async fn load(
        store: Arc<dyn GatewayStore>,
        feed: Arc<ChangeFeed>,
        flags: Arc<Flags>,
        metrics: Arc<Recorder>,
        functions: Arc<Functions>,
        function_body_limit: usize,
        config: &GatewayConfig,
    ) -> Result<Gateway> {
        let mut routes = Vec::new();
        for record in store.gateway_routes().await? {
            match compile_record(&record) {
                Ok(route) => routes.push(Arc::new(route)),
                Err(e) => {
                    tracing::error!(route = %record.id, error = %e, "stored gateway route does not compile; it is not served")
                }
            }
        }
        let gateway = Gateway {
            routes: Arc::new(Routes {
                store,
                feed,
                table: ArcSwap::from_pointee(RouteTable::new(routes)),
                writer: Mutex::new(()),
            }),
            flags,
            metrics,
            proxy: Proxy::new(config)?,
            functions,
            function_body_limit,
        };
        for spec in &config.routes {
            gateway.declare(spec.clone()).await?;
        }
        Ok(gateway)
    }

    /// Creates or updates one config-file route unless it is stored as
    /// declared. A missing flag is only a warning here: the flag may be
    /// created after the first start, and until then the route answers as
    /// if the flag were off.
    async fn declare(&self, mut spec: RouteSpec) -> Result<()> {
        let id = spec.id.take().expect("validated: config routes have ids");
        let route = route::compile(&id, &mut spec)?;
        if let Some(key) = &route.flag_key {
            if self.flags.live().snapshot.get(key).is_none() {
                tracing::warn!(route = %id, flag = %key, "gateway route names a flag that does not exist yet; it answers as if the flag were off");
            }
        }
        let json = serde_json::to_value(&spec).map_err(Error::internal)?;
        let existing = self.routes.store.gateway_route(&id).await?;
        if existing.as_ref().is_some_and(|r| r.spec == json) {
            return Ok(());
        }
        self.routes
            .commit(
                Arc::new(route),
                json,
                existing.is_some(),
                CONFIG_ACTOR.into(),
            )
            .await
            .map(|_| ())
    }

    /// The live routes; one atomic load.
    pub fn table(&self) -> Arc<RouteTable> {
        self.routes.table.load_full()
    }

    pub fn flags(&self) -> &Arc<Flags> {
        &self.flags
    }

    pub async fn list(&self, caller: &Caller) -> Result<Vec<RouteRecord>> {
        caller.require(Role::Admin)?;
        self.routes.store.gateway_routes().await
    }

    pub async fn get(&self, caller: &Caller, id: &str) -> Result<RouteRecord> {
        caller.require(Role::Admin)?;
        self.routes
            .store
            .gateway_route(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("gateway route {id}")))
    }

    pub async fn create(&self, caller: &Caller, body: Value) -> Result<RouteRecord> {
        caller.require(Role::Admin)?;
        let mut spec = parse(body)?;
        let id = spec
            .id
            .take()
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let (route, json) = self.validate(&id, spec)?;
        self.routes
            .commit(route, json, false, caller.user.id.clone())
            .await
    }

    /// PUT: replaces the whole definition; an id in the body must be the
    /// one in the path.
    pub async fn replace(&self, caller: &Caller, id: &str, body: Value) -> Result<RouteRecord> {
        caller.require(Role::Admin)?;
        let mut spec = parse(body)?;
        if spec.id.take().is_some_and(|given| given != id) {
            return Err(Error::invalid(
                "id",
                "is immutable; it must equal the id in the URL",
            ));
        }
        let (route, json) = self.validate(id, spec)?;
        self.routes
            .commit(route, json, true, caller.user.id.clone())
            .await
    }

    pub async fn delete(&self, caller: &Caller, id: &str) -> Result<()> {
        caller.require(Role::Admin)?;
        self.routes
            .remove(id.to_string(), caller.user.id.clone())
            .await
    }

    /// Compiles a definition from the API: the flag must exist now.
    fn validate(&self, id: &str, mut spec: RouteSpec) -> Result<(Arc<Route>, Value)> {
        let route = route::compile(id, &mut spec)?;
        if let Some(key) = &route.flag_key {
            if self.flags.live().snapshot.get(key).is_none() {
                return Err(Error::invalid("flag_key", format!("no flag has key {key}")));
            }
        }
        let json = serde_json::to_value(&spec).map_err(Error::internal)?;
        Ok((Arc::new(route), json))
    }
}

/// The stored routes and the live table, changed together.
struct Routes {
    store: Arc<dyn GatewayStore>,
    feed: Arc<ChangeFeed>,
    table: ArcSwap<RouteTable>,
    /// Serialises "commit, then swap the table", so the table always
    /// equals the store in commit order.
    writer: Mutex<()>,
}

impl Routes {
    /// Stores a route and swaps it into the table as one unit of work.
    async fn commit(
        self: &Arc<Self>,
        route: Arc<Route>,
        json: Value,
        update: bool,
        actor: String,
    ) -> Result<RouteRecord> {
        let this = self.clone();
        run_to_completion(async move {
            let _writer = this.writer.lock().await;
            let turn = this.feed.begin().await;
            let (change, subject) = if update {
                let c = this
                    .store
                    .update_gateway_route(&route.id, &route.path, json, &actor)
                    .await?;
                (c, Subject::GatewayRouteUpdated)
            } else {
                let c = this
                    .store
                    .create_gateway_route(&route.id, &route.path, json, &actor)
                    .await?;
                (c, Subject::GatewayRouteCreated)
            };
            let table = this.table.load().with(route);
            this.table.store(Arc::new(table));
            turn.publish(ChangeEvent::gateway_route(subject, &actor, &change));
            Ok(change.value)
        })
        .await
    }

    async fn remove(self: &Arc<Self>, id: String, actor: String) -> Result<()> {
        let this = self.clone();
        run_to_completion(async move {
            let _writer = this.writer.lock().await;
            let turn = this.feed.begin().await;
            let change = this.store.delete_gateway_route(&id, &actor).await?;
            let table = this.table.load().without(&id);
            this.table.store(Arc::new(table));
            turn.publish(ChangeEvent::gateway_route(
                Subject::GatewayRouteDeleted,
                &actor,
                &change,
            ));
            Ok(())
        })
        .await
    }
}

/// A request body as a route definition: an object, server fields dropped,
/// errors naming the field.
fn parse(body: Value) -> Result<RouteSpec> {
    let Value::Object(mut map) = body else {
        return Err(Error::invalid("body", "expected a JSON object"));
    };
    for field in SERVER_FIELDS {
        map.remove(field);
    }
    serde_path_to_error::deserialize(Value::Object(map)).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            "body".to_string()
        } else {
            path
        };
        Error::invalid(field, e.into_inner())
    })
}

/// A stored record back into a route.
fn compile_record(record: &RouteRecord) -> Result<Route> {
    let mut spec: RouteSpec = serde_json::from_value(record.spec.clone())
        .map_err(|e| Error::internal(format!("stored route {}: {e}", record.id)))?;
    route::compile(&record.id, &mut spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(routes: serde_json::Value) -> GatewayConfig {
        let mut config = crate::config::Config::default().gateway;
        config.routes = serde_json::from_value(routes).unwrap();
        config
    }

    #[test]
    fn config_routes_need_ids_and_valid_definitions() {
        let ok =
            config(serde_json::json!([{"id": "a", "path": "/gateway/a", "target": "http://h"}]));
        assert_eq!(validate_config(&ok), Ok(()));
        let (key, message) = validate_config(&config(
            serde_json::json!([{"path": "/gateway/a", "target": "http://h"}]),
        ))
        .unwrap_err();
        assert_eq!(key, "gateway.routes");
        assert!(message.contains("routes[0]: id is required"), "{message}");
        let (_, message) = validate_config(&config(
            serde_json::json!([{"id": "a", "path": "/gateway/a", "target": "ftp://h"}]),
        ))
        .unwrap_err();
        assert!(message.starts_with("routes[0].target:"), "{message}");
        let mut bad = crate::config::Config::default().gateway;
        bad.trusted_proxies = vec!["10.0.0.0/99".into()];
        assert_eq!(
            validate_config(&bad).unwrap_err().0,
            "gateway.trusted_proxies"
        );
    }
}
