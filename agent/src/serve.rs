//! `agent serve`: a small HTTP target for demos and tests (in the spirit of
//! fortio's server). It speaks HTTP/1.1 and HTTP/2 over cleartext (h2c with
//! prior knowledge). Every request gets `200` and a fixed body, after an
//! optional delay; an optional stall freezes the server for FOR out of every
//! EVERY, the way a GC pause or a lock convoy would. It counts the requests it
//! served, in total, over HTTP/2, and by method and first path segment:
//! `GET /__fleetbench/stats` answers `{"served": N, "h2": N, "grpc": N,
//! "routes": {"GET /kv": N, ...}, "echoed": N}` (not counted), and the total is
//! printed on exit. With `--echo-listen` it also answers each line sent to
//! a TCP port with the same line. It answers gRPC (unary) too: the health
//! check's `Check` says SERVING, any other method echoes its message.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full, StreamBody};
use hyper::body::Frame;
use std::collections::BTreeMap;
use std::sync::Mutex;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The stats path; requests to it are not counted.
pub(crate) const STATS_PATH: &str = "/__fleetbench/stats";

#[derive(Debug, Clone, Copy)]
pub(crate) struct Stall {
    pub every: Duration,
    pub length: Duration,
}

impl std::str::FromStr for Stall {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (every, length) = s
            .split_once(':')
            .ok_or_else(|| format!("--stall {s:?}: expected EVERY:FOR, like 3s:1s"))?;
        let every = fleetbench::clock::parse_duration(every)?;
        let length = fleetbench::clock::parse_duration(length)?;
        if every.is_zero() || length >= every {
            return Err(format!("--stall {s:?}: FOR must be shorter than EVERY"));
        }
        Ok(Stall { every, length })
    }
}

/// `agent serve`'s options (the command line is parsed in `main`).
#[derive(clap::Args)]
pub(crate) struct ServeConfig {
    /// Address to listen on, like 127.0.0.1:18080 (port 0 picks one).
    #[arg(long)]
    pub listen: SocketAddr,
    /// Delay every response by this long.
    #[arg(long, default_value = "0s", value_parser = fleetbench::clock::parse_duration)]
    pub delay: Duration,
    /// Freeze for FOR out of every EVERY, like 3s:1s.
    #[arg(long)]
    pub stall: Option<Stall>,
    /// Serve at most N requests at once, however many connections come (a
    /// server with N workers); the rest queue. With --delay D it tops out
    /// near N / D requests a second: a knee. Default: no limit.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub capacity: Option<u32>,
    /// Size of the response body in bytes.
    #[arg(long, default_value_t = 100)]
    pub body_size: usize,
    /// Also serve a line echo over TCP on this address (each line sent
    /// is answered with itself; counted in the stats as `echoed`).
    #[arg(long)]
    pub echo_listen: Option<SocketAddr>,
    /// Write every request's method and path (in arrival order) to this
    /// file on exit (for tests; keeps them all in memory).
    #[arg(long)]
    pub record: Option<std::path::PathBuf>,
}

struct State {
    served: AtomicU64,
    h2: AtomicU64,
    /// gRPC calls among those served.
    grpc: AtomicU64,
    echoed: AtomicU64,
    routes: Mutex<BTreeMap<String, u64>>,
    /// `METHOD path?query` of every request, when recording.
    recorded: Option<Mutex<Vec<String>>>,
    epoch: Instant,
    delay: Duration,
    stall: Option<Stall>,
    /// `--capacity`: a permit per request being served.
    workers: Option<tokio::sync::Semaphore>,
    body: Bytes,
}

impl State {
    /// How long a request arriving now must wait for a stall to end.
    fn stall_wait(&self) -> Duration {
        let Some(stall) = self.stall else {
            return Duration::ZERO;
        };
        let every = stall.every.as_micros();
        let into = self.epoch.elapsed().as_micros() % every;
        let stall_from = every - stall.length.as_micros();
        if into >= stall_from {
            Duration::from_micros((every - into) as u64)
        } else {
            Duration::ZERO
        }
    }
}

/// Writes one line to `out`. A reader that went away (the test or script
/// that read the port and closed the pipe) is no reason to stop serving.
fn say(mut out: impl std::io::Write, line: std::fmt::Arguments<'_>) {
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Serves until `stop`; returns the number of requests served.
pub(crate) async fn serve(cfg: ServeConfig, stop: CancellationToken) -> Result<u64> {
    let listener = TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let local = listener.local_addr()?;
    // Tests and scripts read this line to learn the port.
    say(std::io::stdout(), format_args!("listening on {local}"));
    let state = Arc::new(State {
        served: AtomicU64::new(0),
        h2: AtomicU64::new(0),
        grpc: AtomicU64::new(0),
        echoed: AtomicU64::new(0),
        routes: Mutex::new(BTreeMap::new()),
        recorded: cfg.record.as_ref().map(|_| Mutex::new(Vec::new())),
        epoch: Instant::now(),
        delay: cfg.delay,
        stall: cfg.stall,
        workers: cfg
            .capacity
            .map(|n| tokio::sync::Semaphore::new(n as usize)),
        body: filler(cfg.body_size),
    });
    let conns = tokio_util::task::TaskTracker::new();
    if let Some(addr) = cfg.echo_listen {
        let echo = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let echo_at = echo.local_addr()?;
        say(
            std::io::stdout(),
            format_args!("echo listening on {echo_at}"),
        );
        conns.spawn(echo_loop(echo, state.clone(), stop.clone()));
    }
    loop {
        let (stream, _) = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let stop = stop.clone();
        conns.spawn(async move {
            let service = service_fn(move |req| handle(state.clone(), req));
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
                }
            }
        });
    }
    conns.close();
    let _ = tokio::time::timeout(Duration::from_secs(3), conns.wait()).await;
    let served = state.served.load(Ordering::SeqCst);
    let plural = if served == 1 { "" } else { "s" };
    say(
        std::io::stderr(),
        format_args!("served {served} request{plural}"),
    );
    // The target's own log of what it served, for tests and for runs whose
    // service output is logged: one line, `stats {JSON}`.
    say(
        std::io::stderr(),
        format_args!("stats {}", stats_json(&state)),
    );
    if let (Some(path), Some(recorded)) = (&cfg.record, &state.recorded) {
        let mut text = recorded.lock().expect("never poisoned").join("\n");
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(served)
}

/// A response body of `size` bytes: `fleetbench\n` over and over.
fn filler(size: usize) -> Bytes {
    Bytes::from("fleetbench\n".repeat(size / 11 + 1)[..size].to_string())
}

/// A response's body: whole, or a gRPC reply (a message, then trailers).
type Reply = Either<
    Full<Bytes>,
    StreamBody<tokio_stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>,
>;

async fn handle(
    state: Arc<State>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Reply>, Infallible> {
    if req.uri().path() == STATS_PATH {
        let body = stats_json(&state);
        return Ok(hyper::Response::builder()
            .header("content-type", "application/json")
            .body(Either::Left(Full::new(Bytes::from(body))))
            .expect("static response parts are valid"));
    }
    // Queue for a worker (never closed, so a permit always comes).
    let _worker = match &state.workers {
        Some(workers) => workers.acquire().await.ok(),
        None => None,
    };
    let wait = state.stall_wait() + state.delay;
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    state.served.fetch_add(1, Ordering::SeqCst);
    if req.version() == http::Version::HTTP_2 {
        state.h2.fetch_add(1, Ordering::SeqCst);
    }
    if let Some(recorded) = &state.recorded {
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        recorded
            .lock()
            .expect("never poisoned")
            .push(format!("{} {path}", req.method()));
    }
    let segment = req.uri().path().split('/').nth(1).unwrap_or("");
    let route = format!("{} /{segment}", req.method());
    *state
        .routes
        .lock()
        .expect("never poisoned")
        .entry(route)
        .or_default() += 1;
    let grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        state.grpc.fetch_add(1, Ordering::SeqCst);
        return Ok(grpc_reply(req).await);
    }
    Ok(hyper::Response::new(Either::Left(Full::new(
        state.body.clone(),
    ))))
}

/// gRPC, unary: `/grpc.health.v1.Health/Check` answers SERVING; any other
/// method echoes the request's message back (whatever its type: the bytes
/// are the same). A call whose metadata holds `x-fleetbench-status: N`
/// ends with status N instead (and no message), for tests of error codes.
async fn grpc_reply(req: hyper::Request<hyper::body::Incoming>) -> hyper::Response<Reply> {
    let forced = req
        .headers()
        .get("x-fleetbench-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    let health = req.uri().path() == "/grpc.health.v1.Health/Check";
    let message = match req.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let mut frames = Vec::new();
    let status = match forced {
        Some(code) => code,
        None => {
            // HealthCheckResponse { status: SERVING (1) }, framed.
            let reply = if health {
                Bytes::from_static(&[0, 0, 0, 0, 2, 0x08, 0x01])
            } else {
                message
            };
            frames.push(Ok(Frame::data(reply)));
            0
        }
    };
    let mut trailers = http::HeaderMap::new();
    trailers.insert(
        "grpc-status",
        http::HeaderValue::from_str(&status.to_string()).expect("digits are a header value"),
    );
    frames.push(Ok(Frame::trailers(trailers)));
    hyper::Response::builder()
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .body(Either::Right(StreamBody::new(tokio_stream::iter(frames))))
        .expect("static response parts are valid")
}

fn stats_json(state: &State) -> String {
    let routes = state.routes.lock().expect("never poisoned").clone();
    serde_json::json!({
        "served": state.served.load(Ordering::SeqCst),
        "h2": state.h2.load(Ordering::SeqCst),
        "grpc": state.grpc.load(Ordering::SeqCst),
        "echoed": state.echoed.load(Ordering::SeqCst),
        "routes": routes,
    })
    .to_string()
}

/// The line echo: every line read is written back, until the peer closes.
async fn echo_loop(listener: TcpListener, state: Arc<State>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        let state = state.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let (read, mut write) = stream.into_split();
            let mut lines = tokio::io::BufReader::new(read);
            let mut line = Vec::new();
            loop {
                line.clear();
                let n = tokio::select! {
                    () = stop.cancelled() => return,
                    n = lines.read_until(b'\n', &mut line) => n,
                };
                match n {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if write.write_all(&line).await.is_err() {
                            return;
                        }
                        state.echoed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_parses_and_rejects() {
        let s: Stall = "3s:1s".parse().unwrap();
        assert_eq!(s.every, Duration::from_secs(3));
        assert_eq!(s.length, Duration::from_secs(1));
        assert!("1s:3s".parse::<Stall>().is_err());
        assert!("3s".parse::<Stall>().is_err());
    }
}
