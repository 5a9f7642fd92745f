//! Header handling of a reverse proxy (RFC 9110 §7.6): hop-by-hop headers stay on their
//! hop, and the actor learns who asked, for which host, over which scheme.

use std::net::IpAddr;

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1, plus the
/// long-standing `keep-alive` and `proxy-connection`).
const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];
const KEEP_ALIVE: &str = "keep-alive";
const PROXY_CONNECTION: &str = "proxy-connection";

pub(crate) const X_FORWARDED_FOR: &str = "x-forwarded-for";
pub(crate) const X_FORWARDED_HOST: &str = "x-forwarded-host";
pub(crate) const X_FORWARDED_PROTO: &str = "x-forwarded-proto";

/// Removes hop-by-hop headers, including every header the `Connection` header names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP) {
        headers.remove(name);
    }
    headers.remove(KEEP_ALIVE);
    headers.remove(PROXY_CONNECTION);
}

/// Sets `X-Forwarded-For` (the client appended to what earlier proxies sent),
/// `X-Forwarded-Host` and `X-Forwarded-Proto` (this hop's, replacing any sent: the router
/// is the edge).
pub(crate) fn set_forwarded(
    headers: &mut HeaderMap,
    client: IpAddr,
    host: Option<&str>,
    proto: &'static str,
) {
    let prior: Vec<&str> = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let chain = if prior.is_empty() {
        client.to_string()
    } else {
        format!("{}, {client}", prior.join(", "))
    };
    if let Ok(v) = HeaderValue::from_str(&chain) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    match host.and_then(|h| HeaderValue::from_str(h).ok()) {
        Some(v) => {
            headers.insert(X_FORWARDED_HOST, v);
        }
        None => {
            headers.remove(X_FORWARDED_HOST);
        }
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "basic x"),
            ("content-type", "text/plain"),
            ("x-kept", "yes"),
        ]);
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["content-type", "x-kept"]);
    }

    #[test]
    fn forwarded_headers_append_the_client_and_replace_host_and_proto() {
        let mut h = map(&[
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "spoofed"),
        ]);
        set_forwarded(
            &mut h,
            "192.0.2.7".parse().unwrap(),
            Some("c.t.actors.d"),
            "http",
        );
        assert_eq!(h[X_FORWARDED_FOR], "10.0.0.1, 192.0.2.7");
        assert_eq!(h[X_FORWARDED_HOST], "c.t.actors.d");
        assert_eq!(h[X_FORWARDED_PROTO], "http");
        let mut h = HeaderMap::new();
        set_forwarded(&mut h, "::1".parse().unwrap(), None, "http");
        assert_eq!(h[X_FORWARDED_FOR], "::1");
        assert!(h.get(X_FORWARDED_HOST).is_none());
    }
}
