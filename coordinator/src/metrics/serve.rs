//! `GET /metrics` over plain HTTP/1.1: the live fold's metric families in
//! Prometheus text, or OpenMetrics when the scraper's `Accept` asks for it.
//! Each scrape reads the fold under its lock for as long as
//! `Fold::series` takes (the counters are kept up to date as windows land,
//! so that does not grow with the run's length).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use bytes::Bytes;
use fleetbench_fold::Fold;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Binds `addr` for `/metrics`, before anything of the run starts: a port
/// already taken is the user's to change.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("binding --metrics-listen {addr} (is another process listening there?)")
    })
}

/// What the server and the run share.
#[derive(Default)]
pub(crate) struct Scrapes {
    /// Scrapes answered.
    pub count: AtomicU64,
    /// Set once the fold holds the run's end: scrapes after it see the
    /// final numbers.
    pub final_state: AtomicBool,
    /// A scrape of the final state was answered.
    pub final_scraped: Notify,
    /// Whether one was (for a waiter that comes after the notify).
    pub final_seen: AtomicBool,
}

/// The `/metrics` server; stops when dropped.
pub(crate) struct Server {
    pub addr: SocketAddr,
    pub scrapes: Arc<Scrapes>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `fold` on `listener` until the server is dropped.
pub(crate) fn start(listener: TcpListener, fold: Arc<Mutex<Fold>>) -> Result<Server> {
    let addr = listener.local_addr()?;
    let scrapes = Arc::new(Scrapes::default());
    let shared = scrapes.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (fold, scrapes) = (fold.clone(), shared.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let answer = answer(&req, &fold, &scrapes);
                    async move { Ok::<_, Infallible>(answer) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Server {
        addr,
        scrapes,
        task,
    })
}

fn answer(req: &Request<Incoming>, fold: &Mutex<Fold>, scrapes: &Scrapes) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        let body = "fleetbench coordinator: the run's metrics are at /metrics\n";
        return response(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            body.into(),
        );
    }
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        return response(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "GET /metrics\n".into(),
        );
    }
    let openmetrics = req
        .headers()
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let is_final = scrapes.final_state.load(Ordering::SeqCst);
    let families = fold.lock().expect("never poisoned").series();
    let body = fleetbench_views::metrics::text(&families, openmetrics);
    scrapes.count.fetch_add(1, Ordering::SeqCst);
    if is_final {
        scrapes.final_seen.store(true, Ordering::SeqCst);
        scrapes.final_scraped.notify_waiters();
    }
    let kind = if openmetrics {
        fleetbench_views::metrics::OPENMETRICS_TEXT
    } else {
        fleetbench_views::metrics::PROMETHEUS_TEXT
    };
    response(StatusCode::OK, kind, body)
}

fn response(status: StatusCode, kind: &str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(kind) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}
