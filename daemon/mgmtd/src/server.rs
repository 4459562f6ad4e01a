//! One request, from the TLS session's client to the reply: the status
//! page and the metrics, or a route of the JSON API, with the role
//! checked, writes rate limited, and every write and refusal audited.

use crate::appliance::{from_json, Bus};
use crate::audit::{Audit, Entry};
use crate::config::GatewayConfig;
use crate::http::{content_length, discard, json, read_json, with_type, Failure, Reply};
use crate::ratelimit::RateLimiter;
use crate::routes::{self, Access, Op, Route, UPDATE};
use crate::snapshot::Snapshot;
use crate::trust::Role;
use crate::upload::Uploads;
use crate::{metrics, status_page};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, ALLOW};
use hyper::{Method, Request, StatusCode};
use serde_json::Value as Json;
use skytime_api::http::names;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Who is asking: what the TLS handshake established.
#[derive(Clone, Debug)]
pub struct Client {
    pub peer: SocketAddr,
    /// SHA-256 of the client certificate, when one was presented.
    pub fingerprint: Option<String>,
    /// Its role; `None` without a certificate.
    pub role: Option<Role>,
}

impl Client {
    fn id(&self) -> &str {
        self.fingerprint.as_deref().unwrap_or("-")
    }
}

/// The gateway's shared state.
#[derive(Debug)]
pub struct Gateway {
    pub config: GatewayConfig,
    pub bus: Bus,
    pub audit: Arc<Audit>,
    limiter: Mutex<RateLimiter>,
    uploads: Uploads,
    started: Instant,
}

impl Gateway {
    pub fn new(config: GatewayConfig, audit: Arc<Audit>) -> Self {
        let l = &config.limits;
        Self {
            bus: Bus::new(&config.bus),
            limiter: Mutex::new(RateLimiter::new(l.write_burst, l.write_interval)),
            uploads: Uploads::new(&config.data_dir, l.max_upload, l.idle()),
            started: Instant::now(),
            audit,
            config,
        }
    }

    /// Answers one request (hyper's service function).
    pub async fn handle(
        self: Arc<Self>,
        client: Arc<Client>,
        req: Request<Incoming>,
    ) -> Result<Reply, Infallible> {
        let path = req.uri().path().to_owned();
        let reply = match path.as_str() {
            "/" | "/metrics" => self.page(&client, req, &path).await,
            p if p.starts_with("/api/") => self.api(&client, req).await,
            _ => Failure::new(
                names::NOT_FOUND,
                format!("nothing at {path}; the API is under /api/v1/"),
            )
            .reply(),
        };
        Ok(reply)
    }

    /// The status page or the metrics.
    async fn page(&self, client: &Client, req: Request<Incoming>, path: &str) -> Reply {
        if req.method() != Method::GET {
            return not_allowed(&Method::GET);
        }
        if client.role.is_none() && !self.config.anonymous_read {
            return self.refuse(
                client,
                &format!("GET {path}"),
                "a client certificate is needed (anonymous_read is off)",
            );
        }
        let with_history = path == "/";
        let snapshot = Snapshot::read(&self.bus, with_history).await;
        match (path, snapshot) {
            ("/", Ok(s)) => with_type(StatusCode::OK, "text/html; charset=utf-8", status_page::render(&s).into_bytes()),
            ("/", Err(f)) => with_type(
                f.status(),
                "text/html; charset=utf-8",
                format!(
                    "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"10\">\
                     <title>skytime: FAIL</title></head><body><p id=\"verdict\">FAIL: {}</p></body></html>\n",
                    crate::svg::escape(&f.message)
                )
                .into_bytes(),
            ),
            (_, Ok(s)) => {
                let text = metrics::openmetrics(&s);
                let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
                if metrics::wants_openmetrics(accept) {
                    with_type(StatusCode::OK, metrics::OPENMETRICS, text.into_bytes())
                } else {
                    with_type(StatusCode::OK, metrics::PROMETHEUS_TEXT, metrics::prometheus_text(&text).into_bytes())
                }
            }
            (_, Err(f)) => f.reply(),
        }
    }

    /// A route of the JSON API.
    async fn api(&self, client: &Client, req: Request<Incoming>) -> Reply {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let action = format!("{method} {path}");
        let Some((route, method_ok)) = routes::find(&method, &path) else {
            let reply = Failure::new(names::NOT_FOUND, format!("no route {path}")).reply();
            return self.after_discarding(req, reply).await;
        };
        if !method_ok {
            return self.after_discarding(req, not_allowed(&route.method)).await;
        }
        let Some(role) = client.role else {
            let reply = self.refuse(
                client,
                &action,
                "the API needs a client certificate enrolled with skytime-mgmtd",
            );
            return self.after_discarding(req, reply).await;
        };
        if route.access == Access::Read {
            return match self.dispatch(route, req).await {
                Ok(v) => json(StatusCode::OK, &v),
                Err(f) => f.reply(),
            };
        }
        if role != Role::Admin {
            let reply = self.refuse(
                client,
                &action,
                "the read role may not change the appliance; an admin certificate is needed",
            );
            return self.after_discarding(req, reply).await;
        }
        let now = self.started.elapsed().as_secs_f64();
        let limited = self
            .limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check(client.id(), now);
        if let Err(wait) = limited {
            let mut f = Failure::new(
                names::RATE_LIMITED,
                format!(
                    "too many changes from this client; the next one is allowed in {wait:.0} s"
                ),
            );
            f.retry_after = Some(wait.ceil() as u64);
            self.log(client, &action, names::RATE_LIMITED, None);
            return self.after_discarding(req, f.reply()).await;
        }
        let (result, detail) = if route.op == Op::UploadInstall {
            self.upload_install(req).await
        } else {
            (self.dispatch(route, req).await, None)
        };
        match result {
            Ok(v) => {
                self.log(client, &action, "200", detail.as_deref());
                json(StatusCode::OK, &v)
            }
            Err(f) => {
                self.log(client, &action, &f.name, detail.as_deref());
                f.reply()
            }
        }
    }

    /// Reads the arguments (query string for GET, JSON body for POST) and
    /// calls the route.
    async fn dispatch(&self, route: &Route, req: Request<Incoming>) -> Result<Json, Failure> {
        let args = if route.method == Method::GET {
            routes::query_args(req.uri().query())
        } else {
            let len = content_length(&req);
            let l = &self.config.limits;
            read_json(req.into_body(), len, l.max_body, l.request()).await?
        };
        routes::call(route, &self.bus, args).await
    }

    /// Stores the uploaded bundle and hands it to `Update.Install`; the
    /// audit detail names its size and hash.
    async fn upload_install(
        &self,
        req: Request<Incoming>,
    ) -> (Result<Json, Failure>, Option<String>) {
        let mut query = routes::query_args(req.uri().query());
        query.remove("sha256");
        // The hash as written: hex digits may read as a number.
        let sha = req
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .find_map(|p| p.strip_prefix("sha256="))
            .map(routes::percent_decode);
        let len = content_length(&req);
        let stored = match self
            .uploads
            .store(req.into_body(), len, sha.as_deref())
            .await
        {
            Ok(s) => s,
            Err(f) => return (Err(f), None),
        };
        let detail = Some(format!(
            "bundle {} bytes sha256 {}",
            stored.size, stored.sha256
        ));
        let args = from_json("options", "a{sv}", &Json::Object(query))
            .map(|options| vec![stored.path.display().to_string().into(), options]);
        let result = match args {
            Ok(a) => self.bus.call_json(UPDATE, "Install", a).await,
            Err(f) => Err(f),
        };
        if result.is_err() {
            self.uploads.discard(&stored);
        }
        (result, detail)
    }

    /// `reply` to a request refused before its body was read, sent once
    /// what the client is still sending of that body has been read and
    /// dropped ([`discard`]): otherwise closing the connection resets it,
    /// and a client still uploading loses the refusal (it sees a broken
    /// pipe instead of the 403).
    async fn after_discarding(&self, req: Request<Incoming>, reply: Reply) -> Reply {
        let len = content_length(&req);
        let within = self.config.limits.request().min(Duration::from_secs(2));
        discard(req.into_body(), len, within).await;
        reply
    }

    /// A refusal: audited, 403.
    fn refuse(&self, client: &Client, action: &str, why: &str) -> Reply {
        self.log(client, action, names::ACCESS_DENIED, Some(why));
        Failure::new(names::ACCESS_DENIED, why).reply()
    }

    fn log(&self, client: &Client, action: &str, result: &str, detail: Option<&str>) {
        self.audit.record(&Entry {
            client: client.id(),
            role: client.role,
            peer: Some(client.peer),
            action,
            result,
            detail,
        });
    }

    pub fn uploads(&self) -> &Uploads {
        &self.uploads
    }
}

fn not_allowed(allowed: &Method) -> Reply {
    let mut r = Failure::new(
        names::METHOD_NOT_ALLOWED,
        format!("this route takes {allowed}"),
    )
    .reply();
    if let Ok(v) = HeaderValue::from_str(allowed.as_str()) {
        r.headers_mut().insert(ALLOW, v);
    }
    r
}
