//! "Try a request as...": which target a request would reach, decided by
//! the proxy's own route lookup and target choice (`proxy::choose`) on the
//! live table and snapshot, without sending anything anywhere or counting
//! an exposure.

use std::sync::Arc;

use flagbase_engine::{Context, Reason};

use super::proxy::{choose, label};
use super::{Gateway, Route, Target, MOUNT};
use crate::error::{Error, Result};
use crate::iam::Caller;
use crate::model::Role;

/// What the gateway would do with one request.
pub struct Simulation {
    /// The request path as looked up (below the mount).
    pub path: String,
    pub route: Option<Arc<Route>>,
    /// The gating flag, its state and what it served.
    pub flag: Option<String>,
    pub flag_enabled: Option<bool>,
    pub variant: Option<String>,
    /// The target reached: an upstream URL or `function:<name>`; `None` when
    /// the request would be refused.
    pub target: Option<String>,
    /// In words, why.
    pub reason: String,
}

impl Target {
    /// The target as a route definition writes it.
    pub fn display(&self) -> String {
        match self {
            Target::Upstream(u) => format!("{}://{}{}", u.scheme, u.authority, u.base_path),
            Target::Function(name) => format!("function:{name}"),
        }
    }
}

impl Gateway {
    /// Simulates `method path` for the evaluation context `ctx` (to which
    /// `method` and `path` are added, as the proxy adds them).
    pub fn simulate(
        &self,
        caller: &Caller,
        method: &str,
        path: &str,
        mut ctx: Context,
    ) -> Result<Simulation> {
        caller.require(Role::Developer)?;
        let method = method.trim().to_ascii_uppercase();
        if method.is_empty()
            || method.len() > 16
            || !method.bytes().all(|b| b.is_ascii_alphabetic())
        {
            return Err(Error::invalid(
                "method",
                "expected an HTTP method such as GET",
            ));
        }
        if !path.starts_with('/') || path.len() > 2048 {
            return Err(Error::invalid(
                "path",
                "expected a path starting with / (at most 2048 characters)",
            ));
        }
        // Paths below the mount may be given with or without it.
        let path = if path == MOUNT || path.starts_with(&format!("{MOUNT}/")) {
            path.to_string()
        } else {
            format!("{MOUNT}{path}")
        };
        let mut sim = Simulation {
            path: path.clone(),
            route: None,
            flag: None,
            flag_enabled: None,
            variant: None,
            target: None,
            reason: String::new(),
        };
        if super::route::check_segments(&path).is_err() {
            sim.reason = "the path has . or .. segments: the gateway refuses it (400)".into();
            return Ok(sim);
        }
        let table = self.table();
        let Some(route) = table.find(&path).cloned() else {
            sim.reason = "no route serves this path (404)".into();
            return Ok(sim);
        };
        sim.route = Some(route.clone());
        if !route.allows(&method) {
            sim.reason = format!("the route does not allow {method} (405)");
            return Ok(sim);
        }
        let role_note = route
            .require_role
            .map(|r| format!("; the route needs the {r} role"))
            .unwrap_or_default();
        let Some(key) = &route.flag_key else {
            sim.target = Some(route.target.display());
            sim.reason = format!("the route has no flag: its target{role_note}");
            return Ok(sim);
        };
        if ctx.attribute("method").is_none() {
            ctx.insert("method", method.as_str());
        }
        if ctx.attribute("path").is_none() {
            ctx.insert("path", path.as_str());
        }
        let live = self.flags.live();
        sim.flag = Some(key.clone());
        sim.flag_enabled = live.snapshot.get(key).map(|f| f.spec().enabled);
        let eval = live.snapshot.evaluate(key, &ctx);
        let variant = label(&eval);
        let chosen = choose(&route, &eval, &variant);
        sim.target = chosen.map(Target::display);
        sim.reason = match (chosen, eval.reason) {
            (None, Reason::Error) => {
                format!("flag {key} does not exist, so the route is off (404)")
            }
            (None, Reason::Disabled) => {
                format!("flag {key} is disabled and the route has no fallback (404)")
            }
            (None, _) => format!("flag {key} served false and the route has no fallback (404)"),
            (Some(_), Reason::Error) => format!("flag {key} does not exist: the fallback target"),
            (Some(_), Reason::Disabled) => format!("flag {key} is disabled: the fallback target"),
            (Some(t), _) if route.variants.get(&variant) == Some(t) => {
                format!(
                    "flag {key} served {variant} ({}): that variant's target",
                    eval.reason
                )
            }
            (Some(t), _) if route.fallback.as_ref() == Some(t) && route.target != *t => {
                format!(
                    "flag {key} served false ({}): the fallback target",
                    eval.reason
                )
            }
            (Some(_), _) => format!(
                "flag {key} served {variant} ({}): the route's target",
                eval.reason
            ),
        } + &role_note;
        sim.variant = (eval.error_code.is_none()).then_some(variant);
        Ok(sim)
    }
}
