//! The policy, the per-store hooks and the vetted-address HTTP/1.1 client.

use std::future::{Future, poll_fn};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use http::header::{HOST, HeaderValue};
use http::uri::PathAndQuery;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::allowed::{AllowedHosts, Grant};
use crate::body::LimitedBody;
use crate::ip::is_non_public;
use crate::tls;

/// How many DNS lookups of the system resolver may run at once in the whole process.
///
/// Lookups (`getaddrinfo`) block a thread of tokio's blocking pool, which file,
/// key-value and deploy work of every app share; a permit is held until the lookup
/// really returns (not merely until the guest's request times out), so a slow
/// resolver can occupy at most this many blocking threads. A lookup waiting for a
/// permit counts against the request's connect timeout.
pub const MAX_CONCURRENT_LOOKUPS: usize = 8;

static LOOKUPS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_CONCURRENT_LOOKUPS);

/// A boxed future of the [`Network`] trait.
pub type NetFuture<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send>>;

/// How the client resolves names and opens TCP connections. [`SystemNetwork`] is the
/// real one; tests inject their own (e.g. a name that resolves to both public and
/// private addresses).
pub trait Network: Send + Sync + std::fmt::Debug + 'static {
    /// The addresses of `host` (a DNS name, never an IP literal), with `port`.
    fn resolve(&self, host: &str, port: u16) -> NetFuture<Vec<SocketAddr>>;
    /// A TCP connection to `addr`, which has been vetted.
    fn connect(&self, addr: SocketAddr) -> NetFuture<TcpStream> {
        Box::pin(TcpStream::connect(addr))
    }
}

/// The system resolver (bounded by [`MAX_CONCURRENT_LOOKUPS`]) and plain TCP.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemNetwork;

impl Network for SystemNetwork {
    fn resolve(&self, host: &str, port: u16) -> NetFuture<Vec<SocketAddr>> {
        let host = host.to_owned();
        Box::pin(async move {
            let permit = LOOKUPS
                .acquire()
                .await
                .map_err(|_| io::Error::other("the DNS lookup limiter is closed"))?;
            tokio::task::spawn_blocking(move || {
                // Held until getaddrinfo returns, even when the caller gave up.
                let _permit = permit;
                std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                    .map(Iterator::collect)
            })
            .await
            .map_err(io::Error::other)?
        })
    }
}

/// What a component may do with outbound HTTP, shared by all its stores.
#[derive(Clone, Debug)]
pub struct OutboundPolicy {
    /// The hosts the component may reach (its manifest's `allowed_outbound_hosts`).
    pub allowed: AllowedHosts,
    /// The most outbound requests per incoming request (per store). Default 10.
    pub max_requests: u32,
    /// The most bytes of one response body. Default 10 MiB.
    pub max_response_bytes: u64,
    /// The longest time to resolve the host, and the longest time to open the TCP
    /// connection and finish the TLS handshake. Default 10 s.
    pub connect_timeout: Duration,
    /// The longest time from the call until the response head has arrived (DNS,
    /// connect, TLS, sending the request, first byte), and also the longest pause between
    /// two frames of the response body. Default 30 s.
    pub total_timeout: Duration,
    /// Server-level: whether non-public destinations (loopback, private, link-local,
    /// ...; see [`is_non_public`]) may be reached at all. Even when true, only an IP
    /// literal listed exactly in `allowed_outbound_hosts` (e.g. `http://10.0.0.5:8080`)
    /// reaches one; a name (even `localhost`, even listed exactly) or a wildcard never
    /// does, whatever DNS says. Default false: every non-public address is refused with
    /// `destination-IP-prohibited`.
    pub allow_private: bool,
    /// How names are resolved and connections opened. Default [`SystemNetwork`].
    pub network: Arc<dyn Network>,
}

impl OutboundPolicy {
    /// A policy for `allowed` with the default limits (10 requests, 10 MiB, 10 s to
    /// connect, 30 s to the response head) and no private destinations.
    pub fn new(allowed: AllowedHosts) -> OutboundPolicy {
        OutboundPolicy {
            allowed,
            max_requests: 10,
            max_response_bytes: 10 * 1024 * 1024,
            connect_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(30),
            allow_private: false,
            network: Arc::new(SystemNetwork),
        }
    }
}

/// Per-store hooks (one per incoming request): counts requests, enforces the policy.
pub struct OutboundHooks {
    ctx: Ctx,
    made: u32,
}

/// What the request future needs to enforce the policy and to log.
#[derive(Clone)]
struct Ctx {
    policy: Arc<OutboundPolicy>,
    app: Arc<str>,
    component: Arc<str>,
}

impl OutboundHooks {
    /// Hooks for one store of `component` of `app`, enforcing `policy`.
    pub fn new(policy: Arc<OutboundPolicy>, app: Arc<str>, component: Arc<str>) -> OutboundHooks {
        OutboundHooks {
            ctx: Ctx {
                policy,
                app,
                component,
            },
            made: 0,
        }
    }

    /// How many requests passed the allow list and the cap (whether or not they then
    /// succeeded).
    pub fn requests_made(&self) -> u32 {
        self.made
    }

    fn check(&mut self, uri: &http::Uri) -> Result<(Target, Grant), Error> {
        let target = Target::from_uri(uri).map_err(|(err, url, reason)| {
            self.ctx.refuse(&url, &reason);
            err
        })?;
        let scheme = if target.https { "https" } else { "http" };
        let Some(grant) = self
            .ctx
            .policy
            .allowed
            .allows(scheme, &target.host, target.port)
        else {
            self.ctx.refuse(
                &target.log_url,
                &format!(
                    "{scheme}://{}:{} is not in allowed_outbound_hosts",
                    target.host_header_host, target.port
                ),
            );
            return Err(Error::HttpRequestDenied);
        };
        let cap = self.ctx.policy.max_requests;
        if self.made >= cap {
            self.ctx.refuse(
                &target.log_url,
                &format!("over the cap of {cap} outbound requests per incoming request"),
            );
            return Err(Error::HttpRequestDenied);
        }
        self.made += 1;
        Ok((target, grant))
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type Sent = (http::Response<WasiBody>, IoFuture);

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Result<Sent, Error>> + Send> {
        // Like the default implementation, this client reports request-body errors
        // through hyper, not through `fut`.
        drop(fut);
        match self.check(request.uri()) {
            Err(err) => Box::new(std::future::ready(Err(err))),
            Ok((target, grant)) => Box::new(send(
                self.ctx.clone(),
                request,
                target,
                grant,
                options.unwrap_or_default(),
            )),
        }
    }
}

/// A guest can cause these lines at will: at most 10 a second per app.
static OUTBOUND_LOG_RATE: std::sync::LazyLock<wharf_host_logging::LogRate> =
    std::sync::LazyLock::new(|| wharf_host_logging::LogRate::new(10));

impl Ctx {
    fn refuse(&self, url: &str, reason: &str) {
        let Some(suppressed) = OUTBOUND_LOG_RATE.allow(&self.app) else {
            return;
        };
        tracing::warn!(
            app = %self.app,
            component = %self.component,
            url,
            reason,
            suppressed,
            "outbound HTTP request refused"
        );
    }

    fn failed(&self, url: &str, err: &Error) {
        let Some(suppressed) = OUTBOUND_LOG_RATE.allow(&self.app) else {
            return;
        };
        tracing::info!(
            app = %self.app,
            component = %self.component,
            url,
            error = %err,
            suppressed,
            "outbound HTTP request failed"
        );
    }
}

/// The destination of a request, taken from its URI.
struct Target {
    https: bool,
    /// The host as written, without IPv6 brackets: what DNS resolves and the allow list
    /// matches.
    host: String,
    /// The host as written in the authority (IPv6 in brackets).
    host_header_host: String,
    /// `host` if it is an IP literal.
    ip: Option<IpAddr>,
    port: u16,
    /// `Host` header value: the authority without user info.
    host_header: String,
    origin_form: PathAndQuery,
    /// scheme://authority/path, without user info and query (which may carry secrets).
    log_url: String,
}

impl Target {
    fn from_uri(uri: &http::Uri) -> Result<Target, (Error, String, String)> {
        let shown = || {
            let mut s = uri.to_string();
            if let Some(q) = s.find('?') {
                s.truncate(q);
            }
            s
        };
        let https = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            Some(s) => {
                return Err((
                    Error::HttpRequestDenied,
                    shown(),
                    format!("scheme `{s}` is not http or https"),
                ));
            }
            None => {
                return Err((
                    Error::HttpRequestUriInvalid,
                    shown(),
                    "the URI has no scheme".into(),
                ));
            }
        };
        let Some(authority) = uri.authority() else {
            return Err((
                Error::HttpRequestUriInvalid,
                shown(),
                "the URI has no host".into(),
            ));
        };
        let host_header_host = authority.host().to_string();
        let host = host_header_host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&host_header_host)
            .to_string();
        if host.is_empty() {
            return Err((
                Error::HttpRequestUriInvalid,
                shown(),
                "the URI has no host".into(),
            ));
        }
        let ip = host.parse::<IpAddr>().ok();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host_header = match authority.port() {
            Some(p) => format!("{host_header_host}:{p}"),
            None => host_header_host.clone(),
        };
        let origin_form = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let log_url = format!(
            "{}://{host_header}{}",
            if https { "https" } else { "http" },
            uri.path()
        );
        Ok(Target {
            https,
            host,
            host_header_host,
            ip,
            port,
            host_header,
            origin_form,
            log_url,
        })
    }

    /// The name for SNI and certificate checks (no trailing dot).
    fn tls_name(&self) -> &str {
        self.host.strip_suffix('.').unwrap_or(&self.host)
    }
}

/// `now + d`, saturating far in the future instead of overflowing.
pub(crate) fn deadline_after(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(60 * 60 * 24 * 365 * 30))
}

/// The policy's bound, shortened (never lengthened) by the guest's request option.
fn bounded(policy: Duration, guest: Option<Duration>) -> Duration {
    guest.map_or(policy, |g| g.min(policy))
}

/// Steps (3) to (6): resolve and vet, connect to a vetted address, send, wrap the body.
async fn send(
    ctx: Ctx,
    request: http::Request<WasiBody>,
    target: Target,
    grant: Grant,
    options: RequestOptions,
) -> Result<Sent, Error> {
    let result = send_vetted(&ctx, request, &target, grant, options).await;
    if let Err(err) = &result
        && !matches!(err, Error::DestinationIpProhibited)
    {
        ctx.failed(&target.log_url, err);
    }
    result
}

async fn send_vetted(
    ctx: &Ctx,
    mut request: http::Request<WasiBody>,
    target: &Target,
    grant: Grant,
    options: RequestOptions,
) -> Result<Sent, Error> {
    let policy = &ctx.policy;
    let deadline = deadline_after(policy.total_timeout);
    let connect_timeout = bounded(policy.connect_timeout, options.connect_timeout);

    // (3) Resolve (IP literals need no lookup) and keep only the vetted addresses.
    let resolved: Vec<SocketAddr> = match target.ip {
        Some(ip) => vec![SocketAddr::new(ip, target.port)],
        None => {
            let until = deadline_after(connect_timeout).min(deadline);
            let lookup = policy.network.resolve(&target.host, target.port);
            match tokio::time::timeout_at(until, lookup).await {
                Err(_) => return Err(Error::DnsTimeout),
                Ok(Err(e)) => {
                    return Err(Error::DnsError {
                        rcode: Some(e.to_string()),
                        info_code: None,
                    });
                }
                Ok(Ok(addrs)) => addrs,
            }
        }
    };
    if resolved.is_empty() {
        return Err(Error::DnsError {
            rcode: Some("no addresses".into()),
            info_code: None,
        });
    }
    let literal_listed = target.ip.is_some() && grant.explicit;
    let (vetted, dropped) = vet(resolved, literal_listed, policy.allow_private);
    if vetted.is_empty() {
        let dropped: Vec<String> = dropped.iter().map(|a| a.ip().to_string()).collect();
        let why = if target.ip.is_none() {
            format!(
                "`{}` resolves only to non-public addresses ({}); a name never reaches one",
                target.host,
                dropped.join(", ")
            )
        } else if !grant.explicit {
            format!(
                "`{}` is a non-public address reached through a wildcard entry",
                target.host
            )
        } else {
            format!(
                "`{}` is a non-public address and this server does not allow private \
                 destinations",
                target.host
            )
        };
        ctx.refuse(&target.log_url, &why);
        return Err(Error::DestinationIpProhibited);
    }
    // (4) Connect to a vetted address (never resolving again), then TLS.
    let until = deadline_after(connect_timeout).min(deadline);
    let stream =
        match tokio::time::timeout_at(until, connect(&*policy.network, target, &vetted)).await {
            Err(_) => return Err(Error::ConnectionTimeout),
            Ok(stream) => stream?,
        };

    // (5) HTTP/1.1: origin-form request target, `Host` from the checked URI.
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, WasiBody>(TokioIo::new(stream)).await?;
    *request.uri_mut() = http::Uri::from(target.origin_form.clone());
    let host =
        HeaderValue::from_str(&target.host_header).map_err(|_| Error::HttpRequestUriInvalid)?;
    request.headers_mut().remove(HOST);
    request.headers_mut().insert(HOST, host);

    let head_deadline = match options.first_byte_timeout {
        Some(d) => deadline_after(d).min(deadline),
        None => deadline,
    };
    let mut response = pin!(sender.send_request(request));
    let mut conn = Some(conn);
    // Wait for the response head while driving the connection's I/O.
    let head = poll_fn(|cx| match response.as_mut().poll(cx) {
        Poll::Ready(res) => Poll::Ready(res.map_err(Error::from)),
        Poll::Pending => {
            let Some(io) = conn.as_mut() else {
                return Poll::Pending;
            };
            let Poll::Ready(done) = Pin::new(io).poll(cx) else {
                return Poll::Pending;
            };
            conn = None;
            match done {
                Ok(()) => response.as_mut().poll(cx).map_err(Error::from),
                Err(err) => Poll::Ready(Err(Error::from(err))),
            }
        }
    });
    let response = match tokio::time::timeout_at(head_deadline, head).await {
        Err(_) => return Err(Error::ConnectionReadTimeout),
        Ok(response) => response?,
    };
    drop(sender);

    // (6) Bound the body.
    let idle = bounded(policy.total_timeout, options.between_bytes_timeout);
    let limit = policy.max_response_bytes;
    let response = response.map(|incoming| LimitedBody::new(incoming, limit, idle).boxed_unsync());
    let io: IoFuture = Box::new(async move {
        match conn {
            None => Ok(()),
            Some(conn) => conn.await.map_err(|err| {
                if err.is_timeout() {
                    Error::HttpResponseTimeout
                } else {
                    Error::Hyper(err)
                }
            }),
        }
    });
    Ok((response, io))
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// Splits `resolved` into the addresses the request may connect to and the rest: a
/// public address always passes; a non-public one only when it was listed exactly as
/// an IP literal (`literal_listed`) and the server allows private destinations.
fn vet(
    resolved: Vec<SocketAddr>,
    literal_listed: bool,
    allow_private: bool,
) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
    resolved
        .into_iter()
        .partition(|addr| !is_non_public(addr.ip()) || (literal_listed && allow_private))
}

/// Opens a TCP connection to the first vetted address that accepts, then TLS for https.
async fn connect(
    network: &dyn Network,
    target: &Target,
    vetted: &[SocketAddr],
) -> Result<Box<dyn Stream>, Error> {
    let mut last = None;
    let mut tcp = None;
    for &addr in vetted {
        match network.connect(addr).await {
            Ok(stream) => {
                tcp = Some(stream);
                break;
            }
            Err(err) => {
                tracing::debug!(%addr, error = %err, "outbound HTTP: connect failed");
                last = Some(err);
            }
        }
    }
    let Some(tcp) = tcp else {
        return Err(connect_error(last));
    };
    // Only a latency optimization; failing to set it changes nothing else.
    let _ = tcp.set_nodelay(true);
    if !target.https {
        return Ok(Box::new(tcp));
    }
    let config = tls::client_config()?;
    let name = tls::server_name(target.tls_name(), target.ip)?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(tls::handshake_error)?;
    Ok(Box::new(stream))
}

fn connect_error(err: Option<io::Error>) -> Error {
    let Some(err) = err else {
        return Error::InternalError(Some("no address to connect to".into()));
    };
    match err.kind() {
        io::ErrorKind::ConnectionRefused => Error::ConnectionRefused,
        io::ErrorKind::TimedOut => Error::ConnectionTimeout,
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
            Error::ConnectionTerminated
        }
        io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable
        | io::ErrorKind::AddrNotAvailable => Error::DestinationUnavailable,
        _ => Error::Connect(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter()
            .map(|a| a.parse().expect("socket address"))
            .collect()
    }

    #[test]
    fn vetting_keeps_only_public_addresses_unless_a_literal_is_allowed() {
        let mixed = addrs(&[
            "127.0.0.1:80",
            "93.184.216.34:80",
            "[::1]:80",
            "169.254.169.254:80",
        ]);
        for (literal, allow) in [(false, false), (false, true), (true, false)] {
            let (vetted, dropped) = vet(mixed.clone(), literal, allow);
            assert_eq!(vetted, addrs(&["93.184.216.34:80"]), "{literal} {allow}");
            assert_eq!(dropped.len(), 3);
        }
        let (vetted, dropped) = vet(mixed.clone(), true, true);
        assert_eq!(vetted, mixed);
        assert!(dropped.is_empty());
    }

    #[tokio::test]
    async fn lookups_wait_for_a_permit_within_the_connect_timeout() {
        // Every permit taken, as by lookups stuck in a slow resolver: a new lookup must
        // not start another blocking thread, and times out as a DNS timeout.
        let held = LOOKUPS
            .acquire_many(MAX_CONCURRENT_LOOKUPS as u32)
            .await
            .expect("semaphore open");
        let lookup = SystemNetwork.resolve("localhost", 80);
        let r = tokio::time::timeout(Duration::from_millis(200), lookup).await;
        assert!(r.is_err(), "the lookup ran without a permit: {r:?}");
        drop(held);
        let addrs = SystemNetwork
            .resolve("localhost", 80)
            .await
            .expect("localhost resolves");
        assert!(!addrs.is_empty());
    }
}
