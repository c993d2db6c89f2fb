//! A WAGI (CGI-style) handler: answers with CGI headers on stdout. `?status=N` sets the
//! status; `?file=PATH` answers with that (mounted) file; otherwise the body lists the
//! CGI variables it got and echoes the request body. `?spin` loops forever.
//! `?smuggle` prints `Content-Length: 0`, a blank line and a whole fake HTTP response
//! as its body; `?flood` writes 1 GiB to stdout in 64 KiB chunks; `?getenv=A,B` answers
//! `A=<value>` lines (`<unset>` when unset) and how often each name is in the
//! environment (`#A=<count>`).
use std::io::{Read, Write};

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
    if query.split('&').any(|kv| kv == "smuggle") {
        print!("Content-Length: 0\n\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!");
        return;
    }
    if query.split('&').any(|kv| kv == "flood") {
        let chunk = vec![b'x'; 64 << 10];
        let mut out = std::io::stdout().lock();
        out.write_all(b"Content-Type: text/plain\n\n")
            .expect("stdout");
        for _ in 0..(1 << 30) / chunk.len() {
            out.write_all(&chunk).expect("stdout");
        }
        return;
    }
    if let Some(names) = param("getenv") {
        print!("Content-Type: text/plain\n\n");
        for name in names.split(',') {
            let value = std::env::var(name).unwrap_or_else(|_| "<unset>".into());
            let count = std::env::vars_os().filter(|(k, _)| k == name).count();
            println!("{name}={value}");
            println!("#{name}={count}");
        }
        return;
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
