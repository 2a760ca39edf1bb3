//! A lean HTTP/1.1 client for the readers of the reads benchmark: one connection of its own per
//! reader, hyper's client connection with no pool, no redirects and no body buffering.
//!
//! The harness shares this machine's two cores with the server it measures, so whatever CPU its
//! client spends on a read is taken from the server. reqwest spent ~22 µs of harness CPU on a
//! board read against the server's ~42 (BENCHMARKS.md, "Board reads: gzip, …"); the readers'
//! client is an instrument, and this one costs a fraction of that. The background commands and
//! the set-up keep using reqwest ([`crate::http_bench::Api`]).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION, HOST};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// How long one read may take before it counts as a `timeout` failure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One reader's connection to the server, opened on first use and again after it broke.
pub struct Conn {
    addr: SocketAddr,
    host: HeaderValue,
    bearer: HeaderValue,
    sender: Option<SendRequest<Empty<Bytes>>>,
}

/// What a read answered: the status, the headers and how many body bytes came.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body_len: usize,
}

impl Conn {
    pub fn new(addr: SocketAddr, token: &str) -> Result<Conn> {
        Ok(Conn {
            addr,
            host: HeaderValue::from_str(&addr.to_string()).context("the server's address")?,
            bearer: HeaderValue::from_str(&format!("Bearer {token}"))
                .context("the token as a header")?,
            sender: None,
        })
    }

    /// `GET path` with the token and `headers`. A status other than 2xx or 304 is `Err` with a
    /// failure label (`404 GET not_found`), as are transport errors (`transport: connect`).
    pub async fn get(
        &mut self,
        path: &str,
        headers: &[(HeaderName, &str)],
    ) -> std::result::Result<Answer, String> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(path, headers)).await {
            Ok(answer) => answer,
            Err(_) => {
                // The connection may still carry the late answer: start afresh.
                self.sender = None;
                Err("transport: timeout".to_owned())
            }
        }
    }

    async fn exchange(
        &mut self,
        path: &str,
        headers: &[(HeaderName, &str)],
    ) -> std::result::Result<Answer, String> {
        let mut request = Request::get(path)
            .header(HOST, self.host.clone())
            .header(AUTHORIZATION, self.bearer.clone());
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        let request = request
            .body(Empty::new())
            .map_err(|_| "request: invalid".to_owned())?;
        let sender = self.ready().await?;
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(_) => {
                self.sender = None;
                return Err("transport: request".to_owned());
            }
        };
        let (parts, mut body) = response.into_parts();
        let keep = !(parts.status.is_success() || parts.status == StatusCode::NOT_MODIFIED);
        let mut body_len = 0;
        let mut kept = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                self.sender = None;
                return Err("transport: body".to_owned());
            };
            if let Some(data) = frame.data_ref() {
                body_len += data.len();
                if keep {
                    kept.extend_from_slice(data);
                }
            }
        }
        if keep {
            let code = serde_json::from_slice::<Value>(&kept)
                .ok()
                .and_then(|problem| problem.get("code")?.as_str().map(str::to_owned))
                .unwrap_or_default();
            return Err(format!("{} GET {code}", parts.status.as_u16()));
        }
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body_len,
        })
    }

    /// The connection, opened if there is none, once it can take a request.
    async fn ready(&mut self) -> std::result::Result<&mut SendRequest<Empty<Bytes>>, String> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            let stream = tokio::net::TcpStream::connect(self.addr)
                .await
                .map_err(|_| "transport: connect".to_owned())?;
            // Requests are small and answered at once: no waiting to fill a segment.
            let _ = stream.set_nodelay(true);
            let (sender, connection) = http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|_| "transport: connect".to_owned())?;
            tokio::spawn(connection);
            self.sender = Some(sender);
        }
        let sender = self
            .sender
            .as_mut()
            .ok_or_else(|| "transport: connect".to_owned())?;
        if sender.ready().await.is_err() {
            self.sender = None;
            return Err("transport: closed".to_owned());
        }
        self.sender
            .as_mut()
            .ok_or_else(|| "transport: closed".to_owned())
    }
}
