//! HTTP pieces every handler uses: the failure type (an error name and a
//! message; the status follows from the name), JSON and text responses,
//! and reading a JSON body under a size cap and a time limit.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};
use skytime_api::http::{names, status_of, ErrorBody};
use skytime_api::ApiError;
use std::time::Duration;

/// What every handler answers with.
pub type Reply = Response<Full<Bytes>>;

/// A failed request: the error name decides the status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub name: String,
    pub message: String,
    /// Seconds to wait (429 only).
    pub retry_after: Option<u64>,
}

impl Failure {
    pub fn new(name: &str, message: impl Into<String>) -> Self {
        Self {
            name: name.to_owned(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(status_of(&self.name)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// A failed D-Bus call: the API's error names are kept; a bus that
    /// cannot be reached or a skytimed that is not on it is
    /// [`names::UNAVAILABLE`].
    pub fn from_dbus(e: &zbus::Error) -> Self {
        if let Some(api) = ApiError::from_call(e) {
            return Self::new(api.name(), api.message());
        }
        match e {
            zbus::Error::MethodError(name, message, _) => {
                Self::new(name.as_str(), message.clone().unwrap_or_default())
            }
            zbus::Error::FDO(f) => {
                use zbus::DBusError;
                Self::new(f.name().as_str(), f.description().unwrap_or_default())
            }
            zbus::Error::Variant(_) => Self::new(
                "org.skytime.Error.BadReply",
                format!("unexpected reply from skytimed (version mismatch?): {e}"),
            ),
            other => Self::new(
                names::UNAVAILABLE,
                format!("cannot reach skytimed: {other}"),
            ),
        }
    }

    pub fn reply(&self) -> Reply {
        let body = ErrorBody {
            error: self.name.clone(),
            message: self.message.clone(),
        };
        let mut r = json(self.status(), &body);
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert(RETRY_AFTER, v);
            }
        }
        r
    }
}

/// A JSON response.
pub fn json<T: serde::Serialize + ?Sized>(status: StatusCode, value: &T) -> Reply {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    with_type(status, "application/json", body)
}

/// A response of `content_type`.
pub fn with_type(status: StatusCode, content_type: &str, body: Vec<u8>) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

/// The most of a refused body that is read and thrown away before the
/// refusal is sent (see [`discard`]).
const DISCARD_MAX: u64 = 8 << 20;

/// Reads and drops what the client is still sending of a body that is
/// refused (413) before it was read, at most [`DISCARD_MAX`] bytes and for
/// at most `within`, as nginx's lingering close does: closing a socket
/// with unread data makes the kernel reset the connection, and a client
/// still sending would then lose the refusal. Nothing read is kept.
pub async fn discard(body: Incoming, announced: Option<u64>, within: Duration) {
    if announced.is_some_and(|n| n > DISCARD_MAX) {
        return;
    }
    let drain = async {
        let mut body = body;
        let mut read = 0u64;
        while read <= DISCARD_MAX {
            match body.frame().await {
                Some(Ok(frame)) => {
                    read += frame.data_ref().map_or(0, |d| d.len() as u64);
                }
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(within, drain).await;
}

/// Reads a whole request body as JSON: at most `max` bytes (413 beyond,
/// told by Content-Length before anything is read), within `limit`.
/// An empty body reads as an empty object.
pub async fn read_json(
    body: Incoming,
    content_length: Option<u64>,
    max: u64,
    limit: Duration,
) -> Result<serde_json::Map<String, serde_json::Value>, Failure> {
    let too_large = || {
        Failure::new(
            names::TOO_LARGE,
            format!("the request body is larger than {max} bytes"),
        )
    };
    if content_length.is_some_and(|n| n > max) {
        discard(body, content_length, limit.min(Duration::from_secs(2))).await;
        return Err(too_large());
    }
    let collected = tokio::time::timeout(limit, Limited::new(body, max as usize).collect())
        .await
        .map_err(|_| {
            Failure::new(
                names::INVALID_ARGS,
                format!(
                    "the request body did not arrive within {} s",
                    limit.as_secs_f64()
                ),
            )
        })?;
    let bytes = match collected {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(e) => {
            return Err(Failure::new(
                names::INVALID_ARGS,
                format!("cannot read the request body: {e}"),
            ))
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice(&bytes) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(Failure::new(
            names::INVALID_ARGS,
            "the request body must be a JSON object of the method's arguments",
        )),
        Err(e) => Err(Failure::new(
            names::INVALID_ARGS,
            format!("the request body is not valid JSON: {e}"),
        )),
    }
}

/// The announced body length, if any.
pub fn content_length<B>(req: &hyper::Request<B>) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_names() {
        assert_eq!(
            Failure::new("org.skytime.Error.InvalidConfig", "line 3").status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let mut f = Failure::new(names::RATE_LIMITED, "slow down");
        f.retry_after = Some(6);
        let r = f.reply();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[RETRY_AFTER], "6");
        let e = zbus::Error::InputOutput(std::io::Error::other("gone").into());
        assert_eq!(
            Failure::from_dbus(&e).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
