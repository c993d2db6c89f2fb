//! HTTP route patterns: parsing, matching request paths, overlap and specificity.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

/// A parsed route pattern such as `/`, `/api/users/:id` or `/static/...`.
///
/// See the crate documentation for the syntax. Two routes are equal when their
/// patterns are equal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pattern: String,
    segments: Vec<Segment>,
    prefix: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

impl Segment {
    /// Whether some single path segment is matched by both `self` and `other`.
    /// Literals are never empty, so a parameter is compatible with anything.
    fn compatible(&self, other: &Segment) -> bool {
        match (self, other) {
            (Segment::Literal(a), Segment::Literal(b)) => a == b,
            _ => true,
        }
    }
}

/// The result of matching a request path against a [`Route`].
///
/// `matched` followed by `rest` is always the request path with a single
/// trailing slash removed (the root path `/` keeps its slash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteMatch {
    /// Captured `:name` parameters, in pattern order, not percent-decoded.
    pub params: Vec<(String, String)>,
    /// The part of the path matched by the route's fixed (non-`...`) segments.
    pub matched: String,
    /// What a prefix route's `...` matched, starting with `/`; empty when nothing
    /// remains and always empty for exact routes.
    pub rest: String,
}

/// Why a route pattern was rejected. Every message names the pattern, says
/// what is wrong and shows a valid route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The pattern is the empty string.
    #[error("route is empty; write a path such as `/`, `/api/users/:id` or `/static/...`")]
    Empty,
    /// The pattern does not start with `/`.
    #[error("route `{pattern}` must start with `/`, e.g. `/{pattern}`")]
    MissingLeadingSlash {
        /// The rejected pattern.
        pattern: String,
    },
    /// The pattern contains `?`.
    #[error(
        "route `{pattern}` contains `?`; routes match the path only, never the query string, so remove it (e.g. `/search`)"
    )]
    QueryString {
        /// The rejected pattern.
        pattern: String,
    },
    /// The pattern contains `#`.
    #[error(
        "route `{pattern}` contains `#`; fragments are never sent to the server, so remove it (e.g. `/docs`)"
    )]
    Fragment {
        /// The rejected pattern.
        pattern: String,
    },
    /// The pattern contains `*`.
    #[error(
        "route `{pattern}` contains `*`; to match everything below a path end the route with `...` (e.g. `/static/...`)"
    )]
    Wildcard {
        /// The rejected pattern.
        pattern: String,
    },
    /// The pattern ends with `/` and is not the root.
    #[error(
        "route `{pattern}` ends with `/`; remove it (e.g. `{suggestion}`), or write `{suggestion}/...` to match everything below it"
    )]
    TrailingSlash {
        /// The rejected pattern.
        pattern: String,
        /// The pattern without its trailing slash.
        suggestion: String,
    },
    /// The pattern contains `//`.
    #[error(
        "route `{pattern}` contains an empty segment (`//`); separate segments with a single `/` (e.g. `/api/users`)"
    )]
    EmptySegment {
        /// The rejected pattern.
        pattern: String,
    },
    /// The pattern contains a `.` or `..` (or other all-dots) segment.
    #[error(
        "route `{pattern}` contains the segment `{segment}`; dot segments are not allowed, write the full path (e.g. `/api/users`)"
    )]
    DotSegment {
        /// The rejected pattern.
        pattern: String,
        /// The offending segment.
        segment: String,
    },
    /// `...` appears somewhere other than the last segment.
    #[error(
        "route `{pattern}` uses `...` before the last segment; `...` may only end a route (e.g. `/static/...`)"
    )]
    EllipsisNotLast {
        /// The rejected pattern.
        pattern: String,
    },
    /// A literal segment contains a character outside the allowed set.
    #[error(
        "route `{pattern}`: segment `{segment}` contains {ch:?}, which is not allowed; literal segments use ASCII letters, digits and -._~!$&'()*+,;=:@% (e.g. `/api/v1/users`)"
    )]
    InvalidChar {
        /// The rejected pattern.
        pattern: String,
        /// The offending segment.
        segment: String,
        /// The first disallowed character.
        ch: char,
    },
    /// A `%` is not followed by two hex digits.
    #[error(
        "route `{pattern}`: segment `{segment}` has a `%` not followed by two hex digits; write percent-escapes like `%20`"
    )]
    InvalidPercentEscape {
        /// The rejected pattern.
        pattern: String,
        /// The offending segment.
        segment: String,
    },
    /// A `:name` parameter has an empty or malformed name.
    #[error(
        "route `{pattern}`: parameter `{segment}` needs a name of letters, digits and `_` that does not start with a digit (e.g. `/users/:user_id`)"
    )]
    InvalidParamName {
        /// The rejected pattern.
        pattern: String,
        /// The offending segment, including its `:`.
        segment: String,
    },
    /// Two parameters share a name.
    #[error(
        "route `{pattern}` uses the parameter `:{name}` twice; give each parameter its own name (e.g. `/users/:user_id/posts/:post_id`)"
    )]
    DuplicateParam {
        /// The rejected pattern.
        pattern: String,
        /// The repeated name, without `:`.
        name: String,
    },
}

impl Route {
    /// Parses a route pattern.
    pub fn parse(pattern: &str) -> Result<Route, RouteError> {
        let owned = || pattern.to_owned();
        if pattern.is_empty() {
            return Err(RouteError::Empty);
        }
        let Some(body) = pattern.strip_prefix('/') else {
            return Err(RouteError::MissingLeadingSlash { pattern: owned() });
        };
        // These three get their own messages because each is a common habit
        // from another routing syntax (query strings, anchors, globs).
        if pattern.contains('?') {
            return Err(RouteError::QueryString { pattern: owned() });
        }
        if pattern.contains('#') {
            return Err(RouteError::Fragment { pattern: owned() });
        }
        if pattern.contains('*') {
            return Err(RouteError::Wildcard { pattern: owned() });
        }
        if body.is_empty() {
            return Ok(Route {
                pattern: owned(),
                segments: Vec::new(),
                prefix: false,
            });
        }
        if body.ends_with('/') {
            let suggestion = pattern.trim_end_matches('/');
            // A pattern of only slashes has no sensible "without the slash" form.
            if suggestion.is_empty() {
                return Err(RouteError::EmptySegment { pattern: owned() });
            }
            return Err(RouteError::TrailingSlash {
                pattern: owned(),
                suggestion: suggestion.to_owned(),
            });
        }

        let parts: Vec<&str> = body.split('/').collect();
        let last = parts.len() - 1;
        let mut segments = Vec::with_capacity(parts.len());
        let mut prefix = false;
        let mut names = HashSet::new();
        for (i, part) in parts.into_iter().enumerate() {
            if part.is_empty() {
                return Err(RouteError::EmptySegment { pattern: owned() });
            } else if part == "..." {
                if i != last {
                    return Err(RouteError::EllipsisNotLast { pattern: owned() });
                }
                prefix = true;
            } else if part.bytes().all(|b| b == b'.') {
                // `.` and `..` would be resolved away by clients, so a route
                // containing them could never match; longer runs are just confusing.
                return Err(RouteError::DotSegment {
                    pattern: owned(),
                    segment: part.to_owned(),
                });
            } else if let Some(name) = part.strip_prefix(':') {
                if !is_param_name(name) {
                    return Err(RouteError::InvalidParamName {
                        pattern: owned(),
                        segment: part.to_owned(),
                    });
                }
                if !names.insert(name) {
                    return Err(RouteError::DuplicateParam {
                        pattern: owned(),
                        name: name.to_owned(),
                    });
                }
                segments.push(Segment::Param(name.to_owned()));
            } else {
                check_literal(pattern, part)?;
                segments.push(Segment::Literal(part.to_owned()));
            }
        }
        Ok(Route {
            pattern: owned(),
            segments,
            prefix,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the route ends in `...` and so matches everything below its fixed part.
    pub fn is_prefix(&self) -> bool {
        self.prefix
    }

    /// Matches a request path (without query string). Returns `None` when the
    /// route does not match. A single trailing slash on `path` is ignored.
    pub fn matches(&self, path: &str) -> Option<RouteMatch> {
        if !path.starts_with('/') {
            return None;
        }
        let path = if path.len() > 1 {
            path.strip_suffix('/').unwrap_or(path)
        } else {
            path
        };

        // `consumed` is a byte offset into `path`; what follows it is either
        // empty or starts with '/', so slicing at it keeps `rest` well-formed.
        let mut consumed = 0;
        let mut params = Vec::new();
        for segment in &self.segments {
            let after = path[consumed..].strip_prefix('/')?;
            let len = after.find('/').unwrap_or(after.len());
            let value = &after[..len];
            if value.is_empty() {
                return None;
            }
            match segment {
                Segment::Literal(literal) if literal != value => return None,
                Segment::Literal(_) => {}
                Segment::Param(name) => params.push((name.clone(), value.to_owned())),
            }
            consumed += 1 + len;
        }

        let (matched, rest) = path.split_at(consumed);
        if self.prefix {
            return Some(RouteMatch {
                params,
                matched: matched.to_owned(),
                rest: rest.to_owned(),
            });
        }
        // The exact root route has no segments, so the path's lone '/' is left
        // over; it belongs to `matched`, not to a remainder.
        let whole = if self.segments.is_empty() {
            rest == "/"
        } else {
            rest.is_empty()
        };
        whole.then(|| RouteMatch {
            params,
            matched: path.to_owned(),
            rest: String::new(),
        })
    }

    /// Whether at least one request path is matched by both routes.
    pub fn overlaps(&self, other: &Route) -> bool {
        let (a, b) = (&self.segments, &other.segments);
        let common_compatible = || a.iter().zip(b).all(|(x, y)| x.compatible(y));
        match (self.prefix, other.prefix) {
            // Paths of the longer fixed part lie below both prefixes.
            (true, true) => common_compatible(),
            // The exact route must reach at least as deep as the prefix's fixed
            // part; anything beyond it is covered by `...`.
            (true, false) => b.len() >= a.len() && common_compatible(),
            (false, true) => a.len() >= b.len() && common_compatible(),
            (false, false) => a.len() == b.len() && common_compatible(),
        }
    }

    /// `(literal segments, fixed segments, !is_prefix)`. Among routes matching
    /// a path, the router picks the greatest: `/api/users` > `/api/:id` >
    /// `/api/...` > `/...`.
    pub fn specificity(&self) -> (usize, usize, bool) {
        let literals = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count();
        (literals, self.segments.len(), !self.prefix)
    }
}

fn is_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_literal(pattern: &str, segment: &str) -> Result<(), RouteError> {
    const PUNCTUATION: &str = "-._~!$&'()*+,;=:@%";
    if let Some(ch) = segment
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || PUNCTUATION.contains(c)))
    {
        return Err(RouteError::InvalidChar {
            pattern: pattern.to_owned(),
            segment: segment.to_owned(),
            ch,
        });
    }
    // Requests arrive percent-encoded and are compared without decoding, so a
    // malformed escape in a pattern could never match anything.
    let bytes = segment.as_bytes();
    for (i, _) in segment.match_indices('%') {
        let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
        if !(hex(i + 1) && hex(i + 2)) {
            return Err(RouteError::InvalidPercentEscape {
                pattern: pattern.to_owned(),
                segment: segment.to_owned(),
            });
        }
    }
    Ok(())
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

impl FromStr for Route {
    type Err = RouteError;

    fn from_str(pattern: &str) -> Result<Route, RouteError> {
        Route::parse(pattern)
    }
}

impl serde::Serialize for Route {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(pattern: &str) -> Route {
        Route::parse(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"))
    }

    fn err(pattern: &str) -> RouteError {
        match Route::parse(pattern) {
            Ok(r) => panic!("{pattern} parsed as {r:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn parses_valid_patterns() {
        for pattern in [
            "/",
            "/...",
            "/a",
            "/api/users",
            "/api/users/:id",
            "/api/:_v2/...",
            "/v1:batch",
            "/a-b.c_d~e!$&'()+,;=@",
            "/caf%C3%A9",
        ] {
            assert_eq!(route(pattern).as_str(), pattern);
        }
        assert!(!route("/").is_prefix());
        assert!(route("/...").is_prefix());
        assert!(route("/a/...").is_prefix());
        assert!(!route("/a/:b").is_prefix());
    }

    #[test]
    fn rejects_each_rule() {
        assert_eq!(err(""), RouteError::Empty);
        assert!(matches!(err("api"), RouteError::MissingLeadingSlash { .. }));
        assert!(matches!(err("/search?q"), RouteError::QueryString { .. }));
        assert!(matches!(err("/docs#top"), RouteError::Fragment { .. }));
        assert!(matches!(err("/static/*"), RouteError::Wildcard { .. }));
        assert!(matches!(err("/api/"), RouteError::TrailingSlash { .. }));
        assert!(matches!(err("/a//"), RouteError::TrailingSlash { .. }));
        assert!(matches!(err("//"), RouteError::EmptySegment { .. }));
        assert!(matches!(err("/a//b"), RouteError::EmptySegment { .. }));
        assert!(matches!(err("//a"), RouteError::EmptySegment { .. }));
        assert!(matches!(err("/a/../b"), RouteError::DotSegment { .. }));
        assert!(matches!(err("/a/."), RouteError::DotSegment { .. }));
        assert!(matches!(err("/a/...."), RouteError::DotSegment { .. }));
        assert!(matches!(err("/.../a"), RouteError::EllipsisNotLast { .. }));
        assert!(matches!(
            err("/a/.../..."),
            RouteError::EllipsisNotLast { .. }
        ));
        assert!(matches!(
            err("/a b"),
            RouteError::InvalidChar { ch: ' ', .. }
        ));
        assert!(matches!(err("/caf\u{e9}"), RouteError::InvalidChar { .. }));
        assert!(matches!(err("/a\\b"), RouteError::InvalidChar { .. }));
        assert!(matches!(
            err("/a%2"),
            RouteError::InvalidPercentEscape { .. }
        ));
        assert!(matches!(
            err("/a%zz"),
            RouteError::InvalidPercentEscape { .. }
        ));
        assert!(matches!(err("/:"), RouteError::InvalidParamName { .. }));
        assert!(matches!(err("/:1a"), RouteError::InvalidParamName { .. }));
        assert!(matches!(err("/:a-b"), RouteError::InvalidParamName { .. }));
        assert!(matches!(
            err("/files/:name.txt"),
            RouteError::InvalidParamName { .. }
        ));
        assert!(matches!(err("/:a/:a"), RouteError::DuplicateParam { .. }));
    }

    #[test]
    fn error_messages_explain_and_give_an_example() {
        let trailing = err("/api/").to_string();
        assert!(trailing.contains("`/api/`"), "{trailing}");
        assert!(trailing.contains("`/api`"), "{trailing}");
        assert!(trailing.contains("`/api/...`"), "{trailing}");
        assert_eq!(
            err("api").to_string(),
            "route `api` must start with `/`, e.g. `/api`"
        );
        assert!(err("/static/*").to_string().contains("`/static/...`"));
        assert!(err("/:a/:a").to_string().contains("`:a` twice"));
    }

    fn matched(pattern: &str, path: &str) -> Option<RouteMatch> {
        route(pattern).matches(path)
    }

    fn m(params: &[(&str, &str)], matched: &str, rest: &str) -> Option<RouteMatch> {
        Some(RouteMatch {
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            matched: matched.to_owned(),
            rest: rest.to_owned(),
        })
    }

    #[test]
    fn matches_exact_routes_and_params() {
        assert_eq!(matched("/a/b", "/a/b"), m(&[], "/a/b", ""));
        assert_eq!(matched("/a/b", "/a/B"), None, "literals are case-sensitive");
        assert_eq!(matched("/a/b", "/a"), None);
        assert_eq!(matched("/a/b", "/a/b/c"), None);
        assert_eq!(matched("/a", "a"), None, "paths must start with /");
        assert_eq!(
            matched("/users/:id/posts/:post", "/users/42/posts/x%20y"),
            m(
                &[("id", "42"), ("post", "x%20y")],
                "/users/42/posts/x%20y",
                ""
            )
        );
        assert_eq!(
            matched("/users/:id", "/users/"),
            None,
            "params are non-empty"
        );
        assert_eq!(matched("/users/:id/x", "/users//x"), None);
        assert_eq!(matched("/users/:id", "/users/1/2"), None);
    }

    #[test]
    fn matches_root() {
        assert_eq!(matched("/", "/"), m(&[], "/", ""));
        assert_eq!(matched("/", "/a"), None);
        assert_eq!(matched("/", ""), None);
    }

    #[test]
    fn matches_prefix_routes() {
        assert_eq!(matched("/a/...", "/a"), m(&[], "/a", ""));
        assert_eq!(matched("/a/...", "/a/"), m(&[], "/a", ""));
        assert_eq!(matched("/a/...", "/a/b/c"), m(&[], "/a", "/b/c"));
        assert_eq!(matched("/a/...", "/a/b/c/"), m(&[], "/a", "/b/c"));
        assert_eq!(matched("/a/...", "/ab"), None);
        assert_eq!(matched("/a/...", "/"), None);
        assert_eq!(
            matched("/u/:id/...", "/u/7/files/x"),
            m(&[("id", "7")], "/u/7", "/files/x")
        );
        assert_eq!(matched("/u/:id/...", "/u"), None);
    }

    #[test]
    fn catch_all_matches_everything() {
        assert_eq!(matched("/...", "/"), m(&[], "", "/"));
        assert_eq!(matched("/...", "/a/b"), m(&[], "", "/a/b"));
        assert_eq!(matched("/...", "/a/b/"), m(&[], "", "/a/b"));
        assert_eq!(matched("/...", "x"), None);
    }

    #[test]
    fn ignores_only_one_trailing_slash() {
        assert_eq!(matched("/a", "/a/"), m(&[], "/a", ""));
        assert_eq!(matched("/a", "/a//"), None);
        assert_eq!(matched("/:x", "/a/"), m(&[("x", "a")], "/a", ""));
    }

    #[test]
    fn overlap_table() {
        let table = [
            ("/a/...", "/a/b", true),
            ("/a/...", "/a", true),
            ("/a/:x", "/a/b", true),
            ("/a/:x", "/a/b/c", false),
            ("/a", "/b", false),
            ("/a", "/a", true),
            ("/a/...", "/ab", false),
            ("/a/...", "/ab/...", false),
            ("/a/...", "/", false),
            ("/...", "/", true),
            ("/...", "/a/b/c", true),
            ("/...", "/x/:y/...", true),
            ("/", "/", true),
            ("/", "/a", false),
            ("/:x", "/", false),
            ("/:x", "/:y", true),
            ("/:x/b", "/a/:y", true),
            ("/:x/b", "/a/c", false),
            ("/a/b/...", "/a/...", true),
            ("/a/b/...", "/a/c/...", false),
            ("/a/b/c/...", "/a/:x", false),
            ("/a/:x/...", "/a/b/c", true),
            ("/api/users", "/api/:id", true),
            ("/api/users", "/web/...", false),
        ];
        for (a, b, expected) in table {
            let (ra, rb) = (route(a), route(b));
            assert_eq!(ra.overlaps(&rb), expected, "{a} vs {b}");
            assert_eq!(rb.overlaps(&ra), expected, "{b} vs {a} (symmetry)");
        }
    }

    #[test]
    fn overlap_agrees_with_matching_on_sample_paths() {
        // Cross-checks the segment-wise reasoning against actual matching: if a
        // sample path matches both routes, they must be reported as overlapping.
        let patterns = [
            "/", "/...", "/a", "/b", "/a/b", "/a/:x", "/:x", "/:x/b", "/a/...", "/a/b/...", "/ab",
            "/a/b/c",
        ];
        let paths = [
            "/", "/a", "/b", "/ab", "/a/b", "/a/c", "/c/b", "/a/b/c", "/a/b/c/d",
        ];
        for a in patterns {
            for b in patterns {
                let both = paths
                    .iter()
                    .any(|p| route(a).matches(p).is_some() && route(b).matches(p).is_some());
                if both {
                    assert!(route(a).overlaps(&route(b)), "{a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn specificity_orders_routes() {
        let ordered = ["/...", "/api/...", "/api/:id", "/api/users"];
        for pair in ordered.windows(2) {
            assert!(
                route(pair[0]).specificity() < route(pair[1]).specificity(),
                "{} should be less specific than {}",
                pair[0],
                pair[1]
            );
        }
        assert_eq!(route("/api/users").specificity(), (2, 2, true));
        assert_eq!(route("/api/:id").specificity(), (1, 2, true));
        assert_eq!(route("/api/...").specificity(), (1, 1, false));
        assert_eq!(route("/...").specificity(), (0, 0, false));
        assert_eq!(route("/").specificity(), (0, 0, true));
        assert!(route("/").specificity() > route("/...").specificity());
    }

    #[test]
    fn displays_and_serializes_as_the_pattern() {
        let r: Route = "/api/:id".parse().unwrap();
        assert_eq!(r.to_string(), "/api/:id");
        assert_eq!(serde_json::to_string(&r).unwrap(), r#""/api/:id""#);
    }
}
