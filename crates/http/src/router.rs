//! The route table: every HTTP-routed component of the live apps, most specific first,
//! rebuilt whole when the runtime's apps change; and the deploy-time check that no two
//! apps' routes overlap.

use std::sync::Arc;

use wharf_manifest::{Manifest, Route, RouteMatch};
use wharf_runtime::{Apps, LoadedApp};

/// The routing table: every component's route, most specific first.
#[derive(Default)]
pub struct RouteTable {
    entries: Vec<(Arc<LoadedApp>, usize, Route)>,
}

impl RouteTable {
    /// The table for `apps`.
    pub fn build(apps: &Apps) -> RouteTable {
        let mut entries: Vec<(Arc<LoadedApp>, usize, Route)> = apps
            .iter()
            .flat_map(|a| {
                a.components
                    .iter()
                    .enumerate()
                    .filter_map(move |(i, c)| c.route.clone().map(|r| (a.clone(), i, r)))
            })
            .collect();
        entries.sort_by(|a, b| {
            b.2.specificity()
                .cmp(&a.2.specificity())
                .then_with(|| a.2.as_str().cmp(b.2.as_str()))
        });
        RouteTable { entries }
    }

    /// The most specific route matching `path`.
    pub fn lookup(&self, path: &str) -> Option<(Arc<LoadedApp>, usize, RouteMatch)> {
        self.entries
            .iter()
            .find_map(|(app, i, route)| route.matches(path).map(|m| (app.clone(), *i, m)))
    }
}

/// Refuses routes of `manifest` that overlap another live app's, naming both.
pub fn check_routes(manifest: &Manifest, live: &Apps) -> Result<(), String> {
    for other in live.iter() {
        if *other.name == *manifest.app.name {
            continue;
        }
        for spec in &manifest.components {
            for oc in &other.components {
                let (Some(route), Some(other_route)) = (&spec.route, &oc.route) else {
                    continue;
                };
                if route.overlaps(other_route) {
                    return Err(format!(
                        "route `{}` of component `{}` overlaps route `{}` of component `{}` \
                         in app `{}`; choose a route no other app serves",
                        route, spec.id, other_route, oc.id, other.name
                    ));
                }
            }
        }
    }
    Ok(())
}
