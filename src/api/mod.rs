//! The HTTP API: one module per resource, each exporting its routes with their OpenAPI spec.

pub mod admin;
pub mod audit;
pub mod backups;
pub mod body;
pub mod codegen;
pub mod console;
pub mod events;
pub mod headers;
pub mod health;
pub mod me;
pub mod members;
pub mod monitoring;
pub mod orgs;
pub mod pagination;
pub mod projects;
pub mod query;
pub mod responses;
pub mod secrets;
pub mod service_accounts;
pub mod spec;
pub mod teams;
pub mod webhooks;
pub mod workspaces;

use rocket::Route;
use rocket_okapi::okapi::merge::marge_spec_list;
use rocket_okapi::okapi::openapi3::{Components, Info, OpenApi, Server, Tag};
use rocket_okapi::settings::OpenApiSettings;

/// Every API route and the OpenAPI document describing them: one function for the server and
/// `gantry print-openapi`, so they cannot drift.
pub fn routes_and_spec() -> (Vec<Route>, serde_json::Value) {
    let settings = OpenApiSettings::default();
    let parts: Vec<(Vec<Route>, OpenApi)> = vec![
        health::routes(&settings),
        me::routes(&settings),
        orgs::routes(&settings),
        members::routes(&settings),
        teams::routes(&settings),
        service_accounts::routes(&settings),
        workspaces::routes(&settings),
        projects::routes(&settings),
        codegen::routes(&settings),
        backups::routes(&settings),
        events::routes(&settings),
        webhooks::routes(&settings),
        secrets::routes(&settings),
        monitoring::routes(&settings),
        admin::routes(&settings),
        audit::routes(&settings),
        console::routes(&settings),
    ];
    let mut routes = Vec::new();
    let mut specs = Vec::new();
    for (part_routes, spec) in parts {
        routes.extend(part_routes);
        specs.push(("/".to_owned(), spec));
    }
    let mut spec = match marge_spec_list(&specs) {
        Ok(spec) => spec,
        // Conflicting paths are a programming error caught by the OpenAPI test.
        Err(err) => panic!("OpenAPI specs conflict: {err}"),
    };
    spec.info = Info {
        title: "Gantry API".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        description: Some(
            "Control plane for multi-tenant Kubernetes platforms. Errors are \
             `application/problem+json` (RFC 9457)."
                .to_owned(),
        ),
        ..Info::default()
    };
    spec.servers = vec![Server {
        url: "/".to_owned(),
        ..Server::default()
    }];
    spec.tags = [
        "Health",
        "Me",
        "Organizations",
        "Members",
        "Workspaces",
        "Projects",
    ]
    .into_iter()
    .map(|name| Tag {
        name: name.to_owned(),
        ..Tag::default()
    })
    .collect();
    if spec.components.is_none() {
        spec.components = Some(Components::default());
    }
    // The refinements work on the JSON form (okapi's types cannot carry them all); a document
    // that does not serialize is a programming error, caught by the OpenAPI test.
    let mut doc = match serde_json::to_value(&spec) {
        Ok(doc) => doc,
        Err(err) => panic!("OpenAPI document does not serialize: {err}"),
    };
    spec::refine(&mut doc);
    (routes, doc)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    /// Every write route reads as a distinct audit action on a known kind of target.
    #[test]
    fn every_write_route_has_a_distinct_audit_action() {
        let (routes, _) = super::routes_and_spec();
        let mut actions: BTreeMap<String, String> = BTreeMap::new();
        for route in routes {
            let method = route.method.as_str();
            let template = route.uri.origin.path().as_str().to_owned();
            // The console's dev-token route is unauthenticated: no actor, so no audit row.
            if !matches!(method, "POST" | "PUT" | "PATCH" | "DELETE")
                || template.starts_with("/v1/console/")
            {
                continue;
            }
            let segments: Vec<String> = template
                .trim_matches('/')
                .split('/')
                .map(|s| s.trim_matches(|c| c == '<' || c == '>').to_owned())
                .collect();
            let described = crate::audit::describe(method, &template, &segments);
            let call = format!("{method} {template}");
            assert_ne!(described.target_type, "api", "{call}: no target kind");
            if let Some(other) = actions.insert(described.action.clone(), call.clone()) {
                panic!("{call} and {other} both read as {}", described.action);
            }
        }
        assert!(actions.contains_key("project.update"));
        assert!(actions.contains_key("team.member.add"));
        assert!(actions.contains_key("service_account.rotate"));
    }
}
