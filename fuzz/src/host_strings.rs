//! The `host_strings` target: the host's handling of strings and sizes a guest (or a
//! client) controls. The first input byte picks the code under test, the next bytes
//! its arguments:
//!
//! - `0`: `wharf_host_logging::truncate_utf8` (any string, any `max`);
//! - `1`: a guest's stdout through `wharf_host_logging::LogStream` into `AppLogs`
//!   (line splitting, the line cut, the buffer bounds), and the escaping the server's
//!   log applies to every line;
//! - `2`: `wharf_http::wagi::parse_cgi_output` on a WAGI module's stdout;
//! - `3`: `wharf_http::wagi::cgi_env` for a request with fuzzed method, URI, headers
//!   and `Host`;
//! - `4`: `wharf_host_outbound::AllowedHosts`: `parse` on fuzzed entries, `allows` on
//!   a fuzzed scheme, host and port.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use wharf_engine::wasmtime_wasi::p2::OutputStream;
use wharf_host_logging::{AppLogs, LogStream, MAX_BYTES, MAX_LINE, MAX_LINES, truncate_utf8};
use wharf_host_outbound::AllowedHosts;
use wharf_http::wagi::{cgi_env, parse_cgi_output};
use wharf_manifest::Route;

/// Most bytes one `LogStream` input writes (a repeated unit makes long lines cheap).
const MAX_STREAM: usize = 48 << 10;

/// The guest-facing string handling of the host on arbitrary input: no panic, and each
/// function keeps its promises (see the module documentation for the input layout).
pub fn host_strings(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match sel % 5 {
        0 => truncate(rest),
        1 => log_stream(rest),
        2 => cgi_output(rest),
        3 => cgi_vars(rest),
        _ => outbound(rest),
    }
}

/// `max` from two bytes (or near `usize::MAX`, or `0`, by a flag byte), then the string
/// (lossy UTF-8, so that multi-byte characters and U+FFFD appear at every position).
fn truncate(data: &[u8]) {
    let (max, text) = match data {
        [a, b, flag, text @ ..] => {
            let small = usize::from(u16::from_le_bytes([*a, *b]));
            let max = match flag % 4 {
                0 => usize::MAX - small,
                1 => small % 8,
                _ => small,
            };
            (max, text)
        }
        _ => (0, data),
    };
    let original = String::from_utf8_lossy(text).into_owned();
    let mut s = original.clone();
    truncate_utf8(&mut s, max);
    assert!(s.len() <= max, "{} bytes kept for max {max}", s.len());
    assert!(original.starts_with(s.as_str()), "not a prefix");
    if original.len() <= max {
        assert_eq!(s, original, "a string within max was changed");
    } else if let Some(next) = original[s.len()..].chars().next() {
        // The longest prefix that fits: the next character would not.
        assert!(
            s.len() + next.len_utf8() > max,
            "cut at {} for max {max} though `{next}` fits",
            s.len()
        );
    }
    assert!(std::str::from_utf8(s.as_bytes()).is_ok());
}

/// What the server's log prints for a guest line (`{}` of `escape_debug`, as in
/// `LogStream::emit` and `wasi:logging`): no control character (no newline to forge a
/// line, no ESC to drive a terminal) survives.
fn check_escaped(line: &str) {
    let escaped = line.escape_debug().to_string();
    assert!(
        !escaped.chars().any(char::is_control),
        "a control character survives escaping: {escaped:?}"
    );
}

/// Layout: chunk size, unit length, repeat count (2 bytes), then the unit and the tail.
/// The stream is the unit repeated, then the tail, written in chunks.
fn log_stream(data: &[u8]) {
    let (chunk, unit_len, count, rest) = match data {
        [c, u, n0, n1, rest @ ..] => (
            usize::from(*c),
            usize::from(*u % 16),
            usize::from(u16::from_le_bytes([*n0, *n1])),
            rest,
        ),
        _ => (0, 0, 0, data),
    };
    let unit_len = unit_len.min(rest.len());
    let (unit, tail) = rest.split_at(unit_len);
    let count = MAX_STREAM
        .checked_div(unit_len)
        .map_or(0, |most| count.min(most));
    let mut stream = Vec::with_capacity(unit_len * count + tail.len());
    for _ in 0..count {
        stream.extend_from_slice(unit);
    }
    stream.extend_from_slice(tail);

    let logs = Arc::new(AppLogs::default());
    let mut out = LogStream::new(logs.clone(), "app".into(), "comp".into(), "stdout");
    let chunk = if chunk == 0 {
        stream.len().max(1)
    } else {
        chunk
    };
    for piece in stream.chunks(chunk) {
        if let Err(e) = out.write(Bytes::copy_from_slice(piece)) {
            panic!("LogStream::write failed: {e:?}");
        }
    }
    // The last clone flushes a final line without a newline.
    drop(out);

    // What the stream promises: split at '\n'; each line cut to its first MAX_LINE
    // bytes, then made text (lossy UTF-8); a final line without '\n' kept too.
    let mut expected: Vec<String> = Vec::new();
    let mut parts: Vec<&[u8]> = stream.split(|b| *b == b'\n').collect();
    let last = parts.pop().unwrap_or_default();
    for part in parts.into_iter().chain((!last.is_empty()).then_some(last)) {
        let cut = &part[..part.len().min(MAX_LINE)];
        expected.push(String::from_utf8_lossy(cut).into_owned());
    }

    let (lines, dropped) = logs.tail(usize::MAX);
    let got: Vec<&str> = lines.iter().map(|l| l.line.as_str()).collect();
    assert!(got.len() <= MAX_LINES, "{} lines kept", got.len());
    let bytes: usize = got.iter().map(|l| l.len()).sum();
    assert!(bytes <= MAX_BYTES, "{bytes} bytes kept");
    assert_eq!(
        got.len() as u64 + dropped,
        expected.len() as u64,
        "lines kept + dropped"
    );
    let want: Vec<&str> = expected[expected.len() - got.len()..]
        .iter()
        .map(String::as_str)
        .collect();
    assert!(got == want, "lines differ from what was written");
    for line in &got {
        assert!(!line.contains('\n'));
        // The cut is at a byte, not at a character boundary: a character split by the
        // cut, or any byte that is not UTF-8, becomes U+FFFD (3 bytes), so a line may
        // be longer than MAX_LINE (up to 3 x MAX_LINE for bytes that are all invalid).
        // See the fuzz report: MAX_LINE's doc says "Longest line kept".
        assert!(line.len() <= 3 * MAX_LINE, "{} bytes in a line", line.len());
        check_escaped(line);
    }
}

/// Finds `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn cgi_output(data: &[u8]) {
    let out = Bytes::copy_from_slice(data);
    // The header block ends at the first blank line, "\n\n" or "\r\n\r\n".
    let end = match (find(data, b"\n\n"), find(data, b"\r\n\r\n")) {
        (Some(a), Some(b)) if b < a => Some((b, 4)),
        (Some(a), _) => Some((a, 2)),
        (None, Some(b)) => Some((b, 4)),
        (None, None) => None,
    };
    match parse_cgi_output(out) {
        Ok((status, headers, body)) => {
            assert!((200..=599).contains(&status), "status {status}");
            let Some((head_end, sep)) = end else {
                panic!("accepted output without a blank line");
            };
            // The body is a suffix of the output: everything after the blank line.
            assert!(data.ends_with(&body[..]), "the body is not a suffix");
            assert_eq!(
                &body[..],
                &data[head_end + sep..],
                "the body is not what follows the first blank line"
            );
            let head = std::str::from_utf8(&data[..head_end]).unwrap_or_else(|_| {
                panic!("accepted a header block that is not UTF-8");
            });
            let mut has_status = false;
            for line in head.lines() {
                if let Some((k, _)) = line.split_once(':') {
                    has_status |= k.trim().eq_ignore_ascii_case("status");
                }
            }
            for (k, v) in &headers {
                assert_eq!(k.trim(), k, "untrimmed header name");
                assert_eq!(v.trim(), v, "untrimmed header value");
                assert!(!k.contains(':') && !k.contains('\n') && !v.contains('\n'));
                assert!(!k.eq_ignore_ascii_case("status"), "Status kept as a header");
            }
            if !has_status {
                let location = headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("location"));
                assert_eq!(status, if location { 302 } else { 200 });
            }
        }
        Err(why) => assert!(!why.is_empty(), "an empty error"),
    }
}

/// Route patterns a WAGI component may have (valid, fixed), and the fallback. Not here:
/// parameters whose names differ only in case (`/c/:Id/:id`, which `Route::parse`
/// accepts): `cgi_env` sets `HTTP_WHARF_PARAM_ID` twice for them (see the fuzz report).
const ROUTES: [&str; 6] = [
    "/...",
    "/",
    "/users/:id",
    "/users/:id/...",
    "/a/:first_part/b/:Second/...",
    "/static/...",
];

fn routes() -> &'static Vec<Route> {
    static ROUTES_PARSED: OnceLock<Vec<Route>> = OnceLock::new();
    ROUTES_PARSED.get_or_init(|| {
        ROUTES
            .iter()
            .map(|p| Route::parse(p).expect("the fuzz routes are valid"))
            .collect()
    })
}

/// Layout: route index, body length, then lines: method, URI, then `name:value`
/// headers.
fn cgi_vars(data: &[u8]) {
    let (route_ix, body_len, rest) = match data {
        [r, l, rest @ ..] => (usize::from(*r) % ROUTES.len(), usize::from(*l) << 8, rest),
        _ => (0, 0, data),
    };
    let mut lines = rest.split(|b| *b == b'\n');
    let method = lines
        .next()
        .and_then(|m| http::Method::from_bytes(m).ok())
        .unwrap_or(http::Method::GET);
    let uri = lines
        .next()
        .and_then(|u| http::Uri::try_from(u).ok())
        .unwrap_or_else(|| http::Uri::from_static("/"));
    let mut builder = http::Request::builder().method(method.clone()).uri(uri);
    let mut client: Vec<(http::HeaderName, http::HeaderValue)> = Vec::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&line[..colon]),
            http::HeaderValue::from_bytes(&line[colon + 1..]),
        ) else {
            continue;
        };
        builder = builder.header(name.clone(), value.clone());
        client.push((name, value));
    }
    let Ok(req) = builder.body(()) else {
        return;
    };
    let (parts, ()) = req.into_parts();
    let path = parts.uri.path().to_string();
    let (pattern, matched) = match routes()[route_ix].matches(&path) {
        Some(m) => (ROUTES[route_ix], m),
        None => match routes()[0].matches(&path) {
            Some(m) => (ROUTES[0], m),
            // The server routes only paths; a path-less URI (`*`) reaches no module.
            None => return,
        },
    };
    // As the WAGI executor does: the Host header, or "localhost".
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let env = cgi_env(&parts, body_len, pattern, &matched, &host);

    // Each variable once.
    let mut names = HashSet::new();
    for (k, v) in &env {
        assert!(names.insert(k.as_str()), "{k} set twice: {env:?}");
        // What an environment can carry: `NAME=value` strings, NUL-terminated, one per
        // variable.
        assert!(
            !k.is_empty() && !k.contains(['=', '\0']) && !k.chars().any(|c| c.is_ascii_lowercase()),
            "variable name {k:?}"
        );
        assert!(!v.contains(['\0', '\r', '\n']), "{k} = {v:?}");
    }
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());

    // The host's variables, with the host's values (they win over any client header).
    let (server_name, server_port) = host.rsplit_once(':').unwrap_or((host.as_str(), "80"));
    let query = parts.uri.query().unwrap_or("");
    let body_len_text = body_len.to_string();
    let method_text = method.to_string();
    let mut host_vars: Vec<(String, &str)> = vec![
        ("GATEWAY_INTERFACE".into(), "CGI/1.1"),
        ("REQUEST_METHOD".into(), method_text.as_str()),
        ("SCRIPT_NAME".into(), matched.matched.as_str()),
        ("PATH_INFO".into(), matched.rest.as_str()),
        ("PATH_TRANSLATED".into(), matched.rest.as_str()),
        ("QUERY_STRING".into(), query),
        ("CONTENT_LENGTH".into(), body_len_text.as_str()),
        ("X_MATCHED_ROUTE".into(), pattern),
        ("HTTP_WHARF_MATCHED_ROUTE".into(), pattern),
        ("HTTP_WHARF_PATH_INFO".into(), matched.rest.as_str()),
        ("SERVER_NAME".into(), server_name),
        ("SERVER_PORT".into(), server_port),
    ];
    for (k, v) in &matched.params {
        host_vars.push((
            format!(
                "HTTP_WHARF_PARAM_{}",
                k.to_ascii_uppercase().replace('-', "_")
            ),
            v.as_str(),
        ));
    }
    for (k, v) in &host_vars {
        assert_eq!(get(k), Some(*v), "host variable {k}");
    }

    // Client headers: `HTTP_*` for names without `_`, never Proxy, Authorization or
    // wharf-*, never one the host sets; repeated headers joined with ", ".
    let host_set: HashSet<&str> = env
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !k.starts_with("HTTP_") || k.starts_with("HTTP_WHARF_"))
        .collect();
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &client {
        let n = name.as_str();
        if n.contains('_') || n == "proxy" || n == "authorization" || n.starts_with("wharf-") {
            continue;
        }
        let key = format!("HTTP_{}", n.to_ascii_uppercase().replace('-', "_"));
        if host_set.contains(key.as_str()) {
            continue;
        }
        let Ok(v) = value.to_str() else { continue };
        expected
            .entry(key)
            .and_modify(|prev| {
                prev.push_str(", ");
                prev.push_str(v);
            })
            .or_insert_with(|| v.to_string());
    }
    let got: BTreeMap<String, String> = env
        .iter()
        .filter(|(k, _)| !host_set.contains(k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(got, expected, "client-derived variables");
    assert_eq!(get("HTTP_PROXY"), None);
    assert_eq!(get("HTTP_AUTHORIZATION"), None);
    for (k, _) in &env {
        if k.starts_with("HTTP_WHARF_") {
            assert!(
                host_vars.iter().any(|(h, _)| h == k),
                "{k} is not the host's"
            );
        }
    }
}

/// The list every `allows` call is checked against.
const ALLOWED: [&str; 6] = [
    "https://api.example.com",
    "https://*.example.com",
    "http://192.0.2.10:8080",
    "http://[2001:db8::1]:8080",
    "*://localhost:*",
    "https://Mixed.Case.Example.org.",
];

fn allowed() -> &'static AllowedHosts {
    static PARSED: OnceLock<AllowedHosts> = OnceLock::new();
    PARSED.get_or_init(|| {
        let entries: Vec<String> = ALLOWED.iter().map(|s| s.to_string()).collect();
        AllowedHosts::parse(&entries).expect("the fuzz allow list is valid")
    })
}

/// Layout: port (2 bytes), scheme selector, then the host. The same bytes are also a
/// list of entries (one per line) for `AllowedHosts::parse`.
fn outbound(data: &[u8]) {
    let entries: Vec<String> = String::from_utf8_lossy(data)
        .split('\n')
        .map(str::to_string)
        .collect();
    match AllowedHosts::parse(&entries) {
        Ok(list) => {
            if let Some(host) = entries.first() {
                let _ = list.allows("https", host, 443);
            }
        }
        Err(why) => assert!(why.contains("allowed_outbound_hosts"), "{why}"),
    }

    let (port, scheme, host) = match data {
        [p0, p1, s, host @ ..] => {
            let scheme = ["http", "https", "HTTPS", "ftp", "*", ""][usize::from(*s) % 6];
            (u16::from_le_bytes([*p0, *p1]), scheme, host)
        }
        _ => (443, "https", data),
    };
    let host = String::from_utf8_lossy(host);
    let grant = allowed().allows(scheme, &host, port);
    let Some(grant) = grant else { return };
    // Only http and https are ever allowed.
    assert!(
        scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"),
        "scheme {scheme:?} allowed"
    );
    let lower = host.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    let bare = name
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(name);
    let ip: Option<std::net::IpAddr> = bare.parse().ok();
    let https = scheme.eq_ignore_ascii_case("https");
    if grant.explicit {
        let exact = (https
            && port == 443
            && (name == "api.example.com" || name == "mixed.case.example.org"))
            || (!https && port == 8080 && ip == "192.0.2.10".parse().ok())
            || (!https && port == 8080 && ip == "2001:db8::1".parse().ok())
            || name == "localhost";
        assert!(exact, "explicit grant for {scheme}://{host}:{port}");
    } else {
        let below = https
            && port == 443
            && name
                .strip_suffix(".example.com")
                .is_some_and(|label| !label.is_empty());
        assert!(below, "wildcard grant for {scheme}://{host}:{port}");
    }
}

/// Seeds for `host_strings`: for each function, typical input, edge sizes (a
/// multi-byte character at the cut, lines at and past `MAX_LINE`), hostile CGI output
/// and headers.
pub fn host_strings_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let mut with = |sel: u8, parts: &[&[u8]]| {
        let mut v = vec![sel];
        for p in parts {
            v.extend_from_slice(p);
        }
        seeds.push(v);
    };
    // truncate_utf8
    with(0, &[&[2, 0, 2], "aé".as_bytes()]);
    with(0, &[&[5, 0, 2], "€€€".as_bytes()]);
    with(0, &[&[0, 0, 0], "🦀🦀".as_bytes()]);
    with(0, &[&[3, 0, 1], b"\xff\xfe\xe2\x82"]);
    with(0, &[&[0, 0x10, 2], "x".repeat(5000).as_bytes()]);
    // LogStream: unit "x" 4095 times, then a 2- and a 3-byte character at the cut.
    let n = (MAX_LINE as u16 - 1).to_le_bytes();
    with(1, &[&[0, 1, n[0], n[1]], b"x", "é tail\n".as_bytes()]);
    with(
        1,
        &[
            &[7, 1, n[0], n[1]],
            b"x",
            "€\nnext\x1b[31m red\r\n\0".as_bytes(),
        ],
    );
    let n = (MAX_LINE as u16 + 1).to_le_bytes();
    with(1, &[&[0, 1, n[0], n[1]], b"\xff", b"\n\xf0\x9f\xa6\x80"]);
    let n = 3000u16.to_le_bytes();
    with(1, &[&[200, 3, n[0], n[1]], b"ab\n", b"last"]);
    with(1, &[&[1, 0, 0, 0], b"one\ntwo\n\nthree"]);
    // parse_cgi_output
    for out in [
        &b"Content-Type: text/plain\nStatus: 404 Not Found\n\nnope"[..],
        b"Location: /x\r\n\r\n",
        b"Content-Type: a/b\r\n\r\nbody\n\nmore",
        b"Status: 101\n\n",
        b"Status: 599 x\r\nX: y\r\n\r\n\r\n",
        b"status:200\n\n",
        b"X: a\rb\n\r\n\nbody",
        b"\n\n",
        b"\r\n\r\n",
        b"no colon\n\n",
        b"Content-Length: 0\nTransfer-Encoding: chunked\n\nbody",
        b"X: \xff\n\n",
    ] {
        with(2, &[out]);
    }
    // cgi_env: route, body length, method, URI, headers.
    with(
        3,
        &[
            &[3, 1],
            b"POST\n/users/42/rest/of?q=1&r=%00\nHost: example.com:8080\nproxy: http://evil\nwharf-param-id: forged\nwharf_param_id: forged\nx-custom: a\nx-custom: b\nscript-name: forged\nauthorization: secret\ncontent-type: text/plain\nx.dot: 1\nx~tilde: 2\nx-high: \xe9",
        ],
    );
    with(
        3,
        &[
            &[4, 0],
            b"GET\n/a/1/b/2/c\nhost: [::1]:80\nHTTP-WHARF-PATH-INFO: x",
        ],
    );
    with(3, &[&[1, 0], b"OPTIONS\n*\n"]);
    with(3, &[&[5, 0], b"GET\n/c/1/2\nhost: [::1]"]);
    // AllowedHosts
    let p443 = 443u16.to_le_bytes();
    let p8080 = 8080u16.to_le_bytes();
    with(4, &[&[p443[0], p443[1], 1], b"API.example.com."]);
    with(4, &[&[p443[0], p443[1], 2], b"a.b.example.com"]);
    with(4, &[&[p443[0], p443[1], 1], b".example.com"]);
    with(4, &[&[p8080[0], p8080[1], 0], b"[2001:db8:0::1]"]);
    with(4, &[&[p8080[0], p8080[1], 0], b"192.0.2.10"]);
    with(4, &[&[0, 0, 3], b"localhost"]);
    with(
        4,
        &[
            &[1, 0, 1],
            b"https://*.example.com\n*://*:*\nhttp://[::1]\nftp://x",
        ],
    );
    seeds
}
