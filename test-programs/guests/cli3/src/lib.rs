//! A WASI 0.3 command: it exports `wasi:cli/run@0.3.0` (no `main`; `wharf run` calls
//! `run`). It writes "hello from a WASI 0.3 command" and its arguments to stdout
//! through a 0.3 stream, and fails (exit code 1) when its first argument is `fail`.
use wasip3::wit_stream;

wasip3::cli::command::export!(Command);

struct Command;

impl wasip3::exports::cli::run::Guest for Command {
    async fn run() -> Result<(), ()> {
        let args = wasip3::cli::environment::get_arguments();
        let mut text = String::from("hello from a WASI 0.3 command\n");
        for a in args.iter().skip(1) {
            text.push_str(&format!("arg: {a}\n"));
        }
        let (mut tx, rx) = wit_stream::new();
        let write = wasip3::cli::stdout::write_via_stream(rx);
        let write = async move { write.await };
        let send = async move {
            let _ = tx.write_all(text.into_bytes()).await;
            drop(tx);
        };
        let (written, ()) = futures_join(write, send).await;
        if written.is_err() {
            return Err(());
        }
        if args.get(1).is_some_and(|a| a == "fail") {
            return Err(());
        }
        Ok(())
    }
}

/// Runs two futures to completion together (a tiny `join`, to need no `futures`).
async fn futures_join<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none()
            && let std::task::Poll::Ready(v) = a.as_mut().poll(cx)
        {
            ra = Some(v);
        }
        if rb.is_none()
            && let std::task::Poll::Ready(v) = b.as_mut().poll(cx)
        {
            rb = Some(v);
        }
        if ra.is_some() && rb.is_some() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    match (ra, rb) {
        (Some(a), Some(b)) => (a, b),
        _ => unreachable!("both futures finished"),
    }
}
