//! A plugin's HTTP routes behind the gateway (`http = { prefix, mount }`):
//! where they are mounted on the HTTP face and what path the plugin sees.
//! Paths are checked segment by segment (no `.`, `..`, empty segments or
//! escapes, so nothing can climb out of its mount), and mounts are checked
//! fleet-wide: none may overlap another plugin's or the face's own paths.

use serde::Serialize;

use super::error::Problem;
use super::layers::RoutesLayer;

/// Where the gateway serves a plugin's routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Routes {
    /// The path mounted on the face: `/plugins/NAME` + `prefix`, or `mount`.
    pub mount: String,
    /// The path the plugin's routes start with; a request for `mount` +
    /// REST reaches the plugin as `prefix` + REST.
    pub prefix: String,
}

impl Routes {
    /// The path the plugin sees for `path` on the face, if `path` is under
    /// this mount.
    pub fn inner(&self, path: &str) -> Option<String> {
        let rest = under(&self.mount, path)?;
        let prefix = self.prefix.trim_end_matches('/');
        Some(match (prefix, rest) {
            ("", "") => "/".to_string(),
            (p, r) => format!("{p}{r}"),
        })
    }
}

/// What follows `mount` in `path` (`""` or `/…`), if `path` is `mount` or
/// beneath it.
pub fn under<'p>(mount: &str, path: &'p str) -> Option<&'p str> {
    let mount = mount.trim_end_matches('/');
    let rest = path.strip_prefix(mount)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// The face's own paths, which no plugin may be mounted over.
pub const RESERVED: &[&str] = &[
    "/api",
    "/metrics",
    "/login",
    "/app.js",
    "/style.css",
    "/favicon.ico",
];

/// Why `path` cannot be a route path, if it cannot: it must start with `/`
/// and hold only plain segments.
pub fn path_problem(path: &str) -> Option<String> {
    if path == "/" {
        return None;
    }
    let Some(inner) = path.strip_prefix('/') else {
        return Some(format!("`{path}` must start with `/`"));
    };
    for segment in inner.trim_end_matches('/').split('/') {
        let plain = segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c));
        if segment.is_empty() || segment == "." || segment == ".." || !plain {
            return Some(format!(
                "`{path}` holds the segment `{segment}`: segments are letters, digits and `-._~`, never empty, `.` or `..`"
            ));
        }
    }
    None
}

/// The routes of plugin `name` from its `http` table, and the problems
/// (key, why) found in it; a program (`plain`, `protocol = "none"`) is
/// reached through its port, so it needs one (`has_port`).
pub(super) fn of(
    layer: Option<RoutesLayer>,
    name: &str,
    (has_port, plain): (bool, bool),
) -> (Option<Routes>, Vec<(&'static str, String)>) {
    let Some(layer) = layer else {
        return (None, Vec::new());
    };
    let mut problems = Vec::new();
    if plain && !has_port {
        problems.push((
            "http",
            "a program with `protocol = \"none\"` is reached through its `port`: give it one"
                .into(),
        ));
    }
    let prefix = layer.prefix.unwrap_or_else(|| "/".into());
    if let Some(why) = path_problem(&prefix) {
        problems.push(("http.prefix", why));
    }
    let mount = match layer.mount {
        Some(mount) => {
            if let Some(why) = path_problem(&mount) {
                problems.push(("http.mount", why));
            }
            mount
        }
        None => format!("/plugins/{name}{}", prefix.trim_end_matches('/')),
    };
    let mount = match mount.trim_end_matches('/') {
        "" => "/".to_string(),
        trimmed => trimmed.to_string(),
    };
    let routes = Routes { mount, prefix };
    (Some(routes), problems)
}

/// Whether two mounts overlap: one is the other or lies beneath it.
fn overlap(a: &str, b: &str) -> bool {
    a == "/" || b == "/" || under(a, b).is_some() || under(b, a).is_some()
}

/// Every mount that overlaps the face's own paths or another plugin's,
/// as problems of `file`.
pub(super) fn collisions<'a>(
    mounts: impl IntoIterator<Item = (&'a str, &'a Routes)>,
    file: &str,
) -> Vec<Problem> {
    let mounts: Vec<(&str, &Routes)> = mounts.into_iter().collect();
    let mut problems = Vec::new();
    for (i, (name, routes)) in mounts.iter().enumerate() {
        let problem = |message| Problem {
            file: file.to_string(),
            key: format!("plugins.{name}.http"),
            message,
        };
        if let Some(own) = RESERVED.iter().find(|r| overlap(r, &routes.mount)) {
            problems.push(problem(format!(
                "mounted at `{}`, over the HTTP face's own `{own}`",
                routes.mount
            )));
        } else if routes.mount == "/" {
            problems.push(problem(
                "mounted at `/`, over the HTTP face's dashboard".into(),
            ));
        }
        for (other, theirs) in &mounts[..i] {
            if overlap(&routes.mount, &theirs.mount) {
                problems.push(problem(format!(
                    "mounted at `{}`, which overlaps `{other}`'s `{}`",
                    routes.mount, theirs.mount
                )));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(prefix: Option<&str>, mount: Option<&str>) -> Option<RoutesLayer> {
        Some(RoutesLayer {
            prefix: prefix.map(str::to_string),
            mount: mount.map(str::to_string),
        })
    }

    #[test]
    fn a_prefix_is_mounted_under_the_plugins_name_and_kept_for_the_plugin() {
        let (routes, problems) = of(layer(Some("/items"), None), "shop", (false, false));
        assert!(problems.is_empty());
        let routes = routes.expect("routes");
        assert_eq!(routes.mount, "/plugins/shop/items");
        assert_eq!(
            routes.inner("/plugins/shop/items/7").as_deref(),
            Some("/items/7")
        );
        assert_eq!(
            routes.inner("/plugins/shop/items").as_deref(),
            Some("/items")
        );
        assert_eq!(routes.inner("/plugins/shop/itemsx"), None);
        assert_eq!(routes.inner("/plugins/shop"), None);

        let (routes, _) = of(layer(None, Some("/shop")), "shop", (false, false));
        let routes = routes.expect("routes");
        assert_eq!(routes.inner("/shop/a?b").as_deref(), Some("/a?b"));
        assert_eq!(routes.inner("/shop").as_deref(), Some("/"));
        let (routes, _) = of(layer(None, None), "p", (false, false));
        assert_eq!(routes.expect("routes").mount, "/plugins/p");
    }

    #[test]
    fn paths_hold_only_plain_segments() {
        for bad in [
            "items", "/a/../b", "/a//b", "/./a", "/a%2e%2e", "/a b", "/..",
        ] {
            assert!(path_problem(bad).is_some(), "{bad}");
        }
        for good in ["/", "/items", "/a/b-c/d.e_f~g", "/items/"] {
            assert_eq!(path_problem(good), None, "{good}");
        }
        let (_, problems) = of(layer(Some("/../api"), None), "p", (true, true));
        assert_eq!(problems[0].0, "http.prefix");
        let (_, problems) = of(layer(None, None), "p", (false, true));
        assert_eq!(problems[0].0, "http", "a program needs a port");
    }

    #[test]
    fn mounts_may_not_overlap_each_other_or_the_faces_own_paths() {
        let r = |mount: &str| Routes {
            mount: mount.into(),
            prefix: "/".into(),
        };
        let (a, b, c, api, root, own) = (
            r("/plugins/a"),
            r("/plugins/a/x"),
            r("/plugins/ab"),
            r("/api/x"),
            r("/"),
            r("/metrics"),
        );
        let problems = collisions(
            [
                ("a", &a),
                ("b", &b),
                ("c", &c),
                ("d", &api),
                ("e", &root),
                ("f", &own),
            ],
            "fleet.toml",
        );
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"plugins.b.http"), "{problems:?}");
        assert!(
            !keys.contains(&"plugins.c.http"),
            "/plugins/ab is not under /plugins/a"
        );
        assert!(keys.contains(&"plugins.d.http"));
        assert!(keys.contains(&"plugins.e.http"));
        assert!(keys.contains(&"plugins.f.http"));
        assert!(problems.iter().all(|p| p.file == "fleet.toml"));
    }
}
