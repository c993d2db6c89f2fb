//! The `allowed_outbound_hosts` list: parsing and matching.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const EXAMPLE_NAME: &str = "https://api.example.com";
const EXAMPLE_WILDCARD: &str = "https://*.example.com";
const EXAMPLE_PORT: &str = "https://api.example.com:8443";
const EXAMPLE_V4: &str = "http://192.0.2.10:8080";
const EXAMPLE_V6: &str = "http://[2001:db8::1]:8080";

/// The parsed `allowed_outbound_hosts` list of a component.
#[derive(Clone, Debug, Default)]
pub struct AllowedHosts {
    entries: Vec<Entry>,
}

/// How a request was allowed: whether the matching entry named this host exactly (an IP
/// literal, or an exact name like `localhost` or `api.example.com`) rather than through a
/// wildcard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// True when the entry named the host exactly; false for `*` and `*.suffix` entries.
    pub explicit: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    scheme: SchemeRule,
    host: HostRule,
    /// `None` allows any port.
    port: Option<u16>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SchemeRule {
    Http,
    Https,
    Any,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostRule {
    /// `*`: any host.
    Any,
    /// `*.suffix`: any name strictly below `suffix` (stored lowercase, without `*.`).
    Suffix(String),
    /// An exact DNS name (lowercase, no trailing dot).
    Name(String),
    /// An IP literal.
    Ip(IpAddr),
}

/// A request host, normalized for matching.
enum RequestHost {
    Name(String),
    Ip(IpAddr),
}

impl AllowedHosts {
    /// Parses entries of the form `scheme://host[:port]`: scheme `http`, `https` or `*`;
    /// host a DNS name, `*.suffix` wildcard, `*` (any host), an IPv4 literal, or a bracketed
    /// IPv6 literal; port a number or `*` (default: 80 for http, 443 for https, any for
    /// `*://`). Errors name the bad entry and show a valid example (e.g. "`ftp://x` in
    /// allowed_outbound_hosts: scheme must be http, https or *; e.g.
    /// https://api.example.com").
    pub fn parse(entries: &[String]) -> Result<AllowedHosts, String> {
        let entries = entries
            .iter()
            .map(|raw| {
                parse_entry(raw).map_err(|(reason, example)| {
                    format!("`{raw}` in allowed_outbound_hosts: {reason}; e.g. {example}")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AllowedHosts { entries })
    }

    /// Whether the list allows (scheme, host, port); host compared case-insensitively, no
    /// trailing dot. `host` may be a DNS name, an IPv4 literal or an IPv6 literal (with or
    /// without brackets). When several entries match, an explicit one wins.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> Option<Grant> {
        let scheme = if scheme.eq_ignore_ascii_case("http") {
            SchemeRule::Http
        } else if scheme.eq_ignore_ascii_case("https") {
            SchemeRule::Https
        } else {
            return None;
        };
        let host = normalize_request_host(host)?;
        let mut found = None;
        for entry in &self.entries {
            if entry.scheme != SchemeRule::Any && entry.scheme != scheme {
                continue;
            }
            if entry.port.is_some_and(|p| p != port) {
                continue;
            }
            match entry.host.matches(&host) {
                Some(true) => return Some(Grant { explicit: true }),
                Some(false) => found = Some(Grant { explicit: false }),
                None => {}
            }
        }
        found
    }

    /// Whether the list has no entries (no outbound HTTP at all).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl HostRule {
    /// `None`: no match; `Some(explicit)`: a match.
    fn matches(&self, host: &RequestHost) -> Option<bool> {
        match (self, host) {
            (HostRule::Any, _) => Some(false),
            (HostRule::Ip(a), RequestHost::Ip(b)) => (a == b).then_some(true),
            (HostRule::Name(a), RequestHost::Name(b)) => (a == b).then_some(true),
            (HostRule::Suffix(suffix), RequestHost::Name(name)) => name
                .strip_suffix(suffix.as_str())
                .and_then(|head| head.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty())
                .then_some(false),
            _ => None,
        }
    }
}

fn normalize_request_host(host: &str) -> Option<RequestHost> {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner
            .parse::<Ipv6Addr>()
            .ok()
            .map(|ip| RequestHost::Ip(IpAddr::V6(ip)));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(RequestHost::Ip(ip));
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() {
        return None;
    }
    Some(RequestHost::Name(name.to_ascii_lowercase()))
}

type ParseError = (String, &'static str);

fn parse_entry(raw: &str) -> Result<Entry, ParseError> {
    let entry = raw.trim();
    if entry.is_empty() {
        return Err(("the entry is empty".into(), EXAMPLE_NAME));
    }
    let Some((scheme, rest)) = entry.split_once("://") else {
        return Err((
            "must have the form scheme://host[:port]".into(),
            EXAMPLE_NAME,
        ));
    };
    let scheme = if scheme.eq_ignore_ascii_case("http") {
        SchemeRule::Http
    } else if scheme.eq_ignore_ascii_case("https") {
        SchemeRule::Https
    } else if scheme == "*" {
        SchemeRule::Any
    } else {
        return Err(("scheme must be http, https or *".into(), EXAMPLE_NAME));
    };
    // A single trailing slash is harmless (`https://api.example.com/`); anything else
    // after the authority is not something this list can express.
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#']) {
        return Err((
            "must not contain a path, query or fragment".into(),
            EXAMPLE_NAME,
        ));
    }
    if rest.contains('@') {
        return Err(("must not contain user info (`user@`)".into(), EXAMPLE_NAME));
    }
    let (host, port) = split_host_port(rest)?;
    let host = parse_host(host)?;
    let port = match port {
        None => match scheme {
            SchemeRule::Http => Some(80),
            SchemeRule::Https => Some(443),
            SchemeRule::Any => None,
        },
        Some("*") => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => {
                return Err((
                    format!("port `{p}` must be a number from 1 to 65535 or *"),
                    EXAMPLE_PORT,
                ));
            }
        },
    };
    Ok(Entry { scheme, host, port })
}

/// Splits `host[:port]`, where an IPv6 host is bracketed; the host keeps its brackets.
fn split_host_port(rest: &str) -> Result<(&str, Option<&str>), ParseError> {
    if rest.starts_with('[') {
        let Some(close) = rest.find(']') else {
            return Err(("`[` without a closing `]`".into(), EXAMPLE_V6));
        };
        let (host, after) = rest.split_at(close + 1);
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err((
                    format!("unexpected `{after}` after the IPv6 address"),
                    EXAMPLE_V6,
                )),
            },
        };
    }
    match rest.matches(':').count() {
        0 => Ok((rest, None)),
        1 => {
            let (host, port) = rest.split_once(':').unwrap_or((rest, ""));
            Ok((host, Some(port)))
        }
        _ => Err(("IPv6 addresses must be in brackets".into(), EXAMPLE_V6)),
    }
}

fn parse_host(host: &str) -> Result<HostRule, ParseError> {
    if host.is_empty() {
        return Err(("the host is missing".into(), EXAMPLE_NAME));
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').unwrap_or(inner);
        return match inner.parse::<Ipv6Addr>() {
            Ok(ip) => Ok(HostRule::Ip(IpAddr::V6(ip))),
            Err(_) => Err((format!("`{host}` is not a valid IPv6 address"), EXAMPLE_V6)),
        };
    }
    if host == "*" {
        return Ok(HostRule::Any);
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(HostRule::Ip(IpAddr::V4(ip)));
    }
    if let Some(suffix) = host.strip_prefix("*.") {
        if suffix.contains('*') {
            return Err((
                "a wildcard host must be `*` or start with a single `*.`".into(),
                EXAMPLE_WILDCARD,
            ));
        }
        return parse_name(suffix).map(HostRule::Suffix);
    }
    if host.contains('*') {
        return Err((
            "a wildcard host must be `*` or start with `*.`".into(),
            EXAMPLE_WILDCARD,
        ));
    }
    parse_name(host).map(HostRule::Name)
}

/// Validates a DNS name (letters, digits, `-` and `_` in labels of 1 to 63 characters,
/// at most 253 in all); returns it lowercase without a trailing dot.
fn parse_name(name: &str) -> Result<String, ParseError> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let invalid = || (format!("`{name}` is not a valid host name"), EXAMPLE_NAME);
    if trimmed.is_empty() || trimmed.len() > 253 {
        return Err(invalid());
    }
    for label in trimmed.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(invalid());
        }
    }
    // A name whose last label is a number (`127.1`, `2130706433`, `10.0.0.0x1`) is what
    // resolvers and URL parsers treat as an IPv4 address in a legacy notation.
    let last = trimmed.rsplit('.').next().unwrap_or(trimmed);
    let numeric = last.bytes().all(|b| b.is_ascii_digit())
        || last
            .strip_prefix("0x")
            .or_else(|| last.strip_prefix("0X"))
            .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if numeric {
        return Err((
            format!("`{name}` is not a valid IPv4 address (use dotted decimal a.b.c.d)"),
            EXAMPLE_V4,
        ));
    }
    Ok(trimmed.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> AllowedHosts {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        match AllowedHosts::parse(&entries) {
            Ok(list) => list,
            Err(e) => panic!("{entries:?} should parse: {e}"),
        }
    }

    fn err(entry: &str) -> String {
        match AllowedHosts::parse(&[entry.to_string()]) {
            Ok(list) => panic!("`{entry}` should not parse, got {list:?}"),
            Err(e) => e,
        }
    }

    fn one(entry: &str) -> Entry {
        let parsed = list(&[entry]);
        assert_eq!(parsed.entries.len(), 1);
        parsed.entries[0].clone()
    }

    #[test]
    fn parses_valid_forms() {
        let e = one("https://api.example.com");
        assert_eq!(e.scheme, SchemeRule::Https);
        assert_eq!(e.host, HostRule::Name("api.example.com".into()));
        assert_eq!(e.port, Some(443));

        let e = one("http://API.Example.COM.");
        assert_eq!(e.scheme, SchemeRule::Http);
        assert_eq!(e.host, HostRule::Name("api.example.com".into()));
        assert_eq!(e.port, Some(80));

        let e = one("HTTPS://localhost:8443/");
        assert_eq!(e.scheme, SchemeRule::Https);
        assert_eq!(e.host, HostRule::Name("localhost".into()));
        assert_eq!(e.port, Some(8443));

        let e = one("*://*.example.com");
        assert_eq!(e.scheme, SchemeRule::Any);
        assert_eq!(e.host, HostRule::Suffix("example.com".into()));
        assert_eq!(e.port, None);

        let e = one("http://*:*");
        assert_eq!(e.host, HostRule::Any);
        assert_eq!(e.port, None);

        let e = one("https://*:8443");
        assert_eq!(e.host, HostRule::Any);
        assert_eq!(e.port, Some(8443));

        let e = one("http://10.1.2.3:8080");
        assert_eq!(e.host, HostRule::Ip("10.1.2.3".parse().unwrap()));
        assert_eq!(e.port, Some(8080));

        let e = one("https://[2001:DB8::1]");
        assert_eq!(e.host, HostRule::Ip("2001:db8::1".parse().unwrap()));
        assert_eq!(e.port, Some(443));

        let e = one("*://[::1]:9000");
        assert_eq!(e.host, HostRule::Ip("::1".parse().unwrap()));
        assert_eq!(e.port, Some(9000));

        let e = one("  http://svc_name.internal  ");
        assert_eq!(e.host, HostRule::Name("svc_name.internal".into()));

        assert!(list(&[]).is_empty());
        assert!(AllowedHosts::default().is_empty());
        assert!(!list(&["http://a", "https://b"]).is_empty());
        assert_eq!(list(&["http://a", "https://b"]).entries.len(), 2);
    }

    #[test]
    fn rejects_every_bad_form_with_entry_and_example() {
        assert_eq!(
            err("ftp://x"),
            "`ftp://x` in allowed_outbound_hosts: scheme must be http, https or *; \
             e.g. https://api.example.com"
        );
        let cases: &[(&str, &str, &str)] = &[
            ("", "empty", EXAMPLE_NAME),
            ("api.example.com", "scheme://host[:port]", EXAMPLE_NAME),
            (
                "https:/api.example.com",
                "scheme://host[:port]",
                EXAMPLE_NAME,
            ),
            ("://api.example.com", "scheme must be", EXAMPLE_NAME),
            ("https://", "host is missing", EXAMPLE_NAME),
            ("https://:443", "host is missing", EXAMPLE_NAME),
            ("https://api.example.com/v1", "path", EXAMPLE_NAME),
            ("https://api.example.com?x=1", "query", EXAMPLE_NAME),
            ("https://api.example.com#f", "fragment", EXAMPLE_NAME),
            ("https://user@api.example.com", "user info", EXAMPLE_NAME),
            ("https://api.example.com:", "port ``", EXAMPLE_PORT),
            ("https://api.example.com:0", "port `0`", EXAMPLE_PORT),
            (
                "https://api.example.com:65536",
                "port `65536`",
                EXAMPLE_PORT,
            ),
            ("https://api.example.com:+80", "port `+80`", EXAMPLE_PORT),
            ("https://api.example.com:http", "port `http`", EXAMPLE_PORT),
            ("https://a*.example.com", "wildcard", EXAMPLE_WILDCARD),
            ("https://api.*.com", "wildcard", EXAMPLE_WILDCARD),
            ("https://*.*.example.com", "wildcard", EXAMPLE_WILDCARD),
            ("https://**", "wildcard", EXAMPLE_WILDCARD),
            ("https://*.", "not a valid host name", EXAMPLE_NAME),
            (
                "https://exa mple.com",
                "not a valid host name",
                EXAMPLE_NAME,
            ),
            (
                "https://-bad.example.com",
                "not a valid host name",
                EXAMPLE_NAME,
            ),
            (
                "https://bad-.example.com",
                "not a valid host name",
                EXAMPLE_NAME,
            ),
            (
                "https://a..example.com",
                "not a valid host name",
                EXAMPLE_NAME,
            ),
            (
                "https://ex!ample.com",
                "not a valid host name",
                EXAMPLE_NAME,
            ),
            ("http://127.1", "not a valid IPv4 address", EXAMPLE_V4),
            ("http://2130706433", "not a valid IPv4 address", EXAMPLE_V4),
            ("http://10.0.0.0x1", "not a valid IPv4 address", EXAMPLE_V4),
            ("http://999.1.1.1", "not a valid IPv4 address", EXAMPLE_V4),
            ("http://*.1.2", "not a valid IPv4 address", EXAMPLE_V4),
            ("http://::1", "must be in brackets", EXAMPLE_V6),
            ("http://2001:db8::1:80", "must be in brackets", EXAMPLE_V6),
            ("http://[::1", "closing", EXAMPLE_V6),
            ("http://[::1]80", "after the IPv6 address", EXAMPLE_V6),
            ("http://[nope]", "not a valid IPv6 address", EXAMPLE_V6),
            ("http://[127.0.0.1]", "not a valid IPv6 address", EXAMPLE_V6),
            ("http://[::1]:x", "port `x`", EXAMPLE_PORT),
        ];
        for (entry, needle, example) in cases {
            let e = err(entry);
            assert!(
                e.starts_with(&format!("`{entry}` in allowed_outbound_hosts: ")),
                "{e}"
            );
            assert!(
                e.contains(needle),
                "`{entry}`: {e:?} should mention {needle:?}"
            );
            assert!(e.ends_with(&format!("; e.g. {example}")), "{e}");
            // The example itself must be a valid entry.
            list(&[example]);
        }
        let long = format!("https://{}.com", "a".repeat(64));
        assert!(err(&long).contains("not a valid host name"));
        let too_long = format!("https://{}com", "abcdefghi.".repeat(26));
        assert!(err(&too_long).contains("not a valid host name"));
        // The first bad entry is reported even after good ones.
        let e = match AllowedHosts::parse(&["https://ok.example.com".into(), "gopher://x".into()]) {
            Ok(_) => panic!("should fail"),
            Err(e) => e,
        };
        assert!(e.starts_with("`gopher://x`"), "{e}");
    }

    #[test]
    fn matching_table() {
        let explicit = Some(Grant { explicit: true });
        let wildcard = Some(Grant { explicit: false });
        type Case<'a> = (&'a [&'a str], &'a str, &'a str, u16, Option<Grant>);
        #[rustfmt::skip]
        let cases: &[Case] = &[
            // Exact host, default ports.
            (&["https://api.example.com"], "https", "api.example.com", 443, explicit),
            (&["https://api.example.com"], "https", "api.example.com", 8443, None),
            (&["https://api.example.com"], "http", "api.example.com", 443, None),
            (&["https://api.example.com"], "http", "api.example.com", 80, None),
            (&["https://api.example.com"], "https", "other.example.com", 443, None),
            (&["https://api.example.com"], "https", "example.com", 443, None),
            (&["https://api.example.com"], "https", "x.api.example.com", 443, None),
            (&["http://api.example.com"], "http", "api.example.com", 80, explicit),
            (&["http://api.example.com"], "https", "api.example.com", 80, None),
            // Case-insensitive, trailing dot.
            (&["https://API.example.com"], "HTTPS", "Api.EXAMPLE.com", 443, explicit),
            (&["https://api.example.com"], "https", "api.example.com.", 443, explicit),
            (&["https://api.example.com."], "https", "api.example.com", 443, explicit),
            // Wildcard suffix.
            (&["https://*.example.com"], "https", "a.example.com", 443, wildcard),
            (&["https://*.example.com"], "https", "a.b.example.com", 443, wildcard),
            (&["https://*.example.com"], "https", "A.Example.Com", 443, wildcard),
            (&["https://*.example.com"], "https", "example.com", 443, None),
            (&["https://*.example.com"], "https", "badexample.com", 443, None),
            (&["https://*.example.com"], "https", ".example.com", 443, None),
            (&["https://*.example.com"], "https", "example.com.evil.net", 443, None),
            (&["https://*.example.com"], "https", "a.example.com", 444, None),
            (&["https://*.example.com"], "https", "10.0.0.1", 443, None),
            // Any host.
            (&["http://*"], "http", "anything.test", 80, wildcard),
            (&["http://*"], "http", "localhost", 80, wildcard),
            (&["http://*"], "http", "127.0.0.1", 80, wildcard),
            (&["http://*"], "http", "[::1]", 80, wildcard),
            (&["http://*"], "http", "anything.test", 8080, None),
            (&["http://*"], "https", "anything.test", 80, None),
            (&["http://*:8080"], "http", "a.test", 8080, wildcard),
            (&["http://*:8080"], "http", "a.test", 80, None),
            // Port `*`.
            (&["https://api.example.com:*"], "https", "api.example.com", 1, explicit),
            (&["https://api.example.com:*"], "https", "api.example.com", 65535, explicit),
            (&["https://api.example.com:*"], "http", "api.example.com", 80, None),
            (&["http://*:*"], "http", "x.test", 12345, wildcard),
            // Scheme `*`: both schemes, any port unless given.
            (&["*://api.example.com"], "http", "api.example.com", 80, explicit),
            (&["*://api.example.com"], "https", "api.example.com", 443, explicit),
            (&["*://api.example.com"], "https", "api.example.com", 9999, explicit),
            (&["*://api.example.com:8080"], "http", "api.example.com", 8080, explicit),
            (&["*://api.example.com:8080"], "https", "api.example.com", 8080, explicit),
            (&["*://api.example.com:8080"], "https", "api.example.com", 443, None),
            (&["*://api.example.com"], "ftp", "api.example.com", 21, None),
            (&["*://*"], "ws", "api.example.com", 80, None),
            // IPv4 literal.
            (&["http://127.0.0.1:8080"], "http", "127.0.0.1", 8080, explicit),
            (&["http://127.0.0.1:8080"], "http", "127.0.0.2", 8080, None),
            (&["http://127.0.0.1:8080"], "http", "localhost", 8080, None),
            (&["http://127.0.0.1:8080"], "http", "::ffff:127.0.0.1", 8080, None),
            (&["http://127.0.0.1:8080"], "http", "127.1", 8080, None),
            // IPv6 literal, with or without brackets in the request host.
            (&["http://[::1]:8080"], "http", "[::1]", 8080, explicit),
            (&["http://[::1]:8080"], "http", "::1", 8080, explicit),
            (&["http://[::1]:8080"], "http", "[0:0::1]", 8080, explicit),
            (&["http://[::1]:8080"], "http", "[::2]", 8080, None),
            (&["https://[2001:db8::1]"], "https", "[2001:DB8::1]", 443, explicit),
            (&["https://[2001:db8::1]"], "https", "[2001:db8::1]", 80, None),
            // Exact names.
            (&["http://localhost:3000"], "http", "LOCALHOST", 3000, explicit),
            (&["http://localhost:3000"], "http", "localhost", 3001, None),
            // An explicit entry wins over a wildcard, whatever the order.
            (&["http://*", "http://localhost"], "http", "localhost", 80, explicit),
            (&["http://localhost", "http://*"], "http", "localhost", 80, explicit),
            (&["http://*", "http://localhost"], "http", "other", 80, wildcard),
            (&["https://*.example.com", "https://a.example.com"], "https", "a.example.com", 443, explicit),
            // Nothing listed, nothing allowed; empty hosts never match.
            (&[], "https", "api.example.com", 443, None),
            (&["http://*"], "http", "", 80, None),
            (&["http://*"], "http", ".", 80, None),
            (&["http://*"], "http", "[]", 80, None),
        ];
        for (entries, scheme, host, port, want) in cases {
            let got = list(entries).allows(scheme, host, *port);
            assert_eq!(
                got, *want,
                "{entries:?} allows({scheme:?}, {host:?}, {port}) = {got:?}, want {want:?}"
            );
        }
    }
}
