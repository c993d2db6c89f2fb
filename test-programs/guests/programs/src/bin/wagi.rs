//! A WAGI (CGI-style) handler: answers with CGI headers on stdout. `?status=N` sets the
//! status; `?file=PATH` answers with that (mounted) file; otherwise the body lists the
//! CGI variables it got and echoes the request body. `?spin` loops forever.
use std::io::Read;

fn main() {
    let query = std::env::var("QUERY_STRING").unwrap_or_default();
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=').map(str::to_string))
    };
    if query.split('&').any(|kv| kv == "spin") {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
    if let Some(path) = param("file") {
        match std::fs::read_to_string(&path) {
            Ok(text) => print!("Content-Type: text/plain\n\n{text}"),
            Err(e) => print!("Status: 404 Not Found\nContent-Type: text/plain\n\n{e}"),
        }
        return;
    }
    let mut body = String::new();
    std::io::stdin().read_to_string(&mut body).expect("stdin");
    let status = param("status").unwrap_or_else(|| "200".into());
    println!("Status: {status} Whatever");
    println!("Content-Type: text/plain");
    println!("X-Wagi: yes");
    println!();
    for key in ["REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "SCRIPT_NAME", "X_MATCHED_ROUTE", "CONTENT_LENGTH", "HTTP_X_CUSTOM", "HTTP_AUTHORIZATION", "GREETING"] {
        println!("{key}={}", std::env::var(key).unwrap_or_default());
    }
    print!("body={body}");
}
