//! Request and response heads from decoded field lines, with the
//! well-formedness rules of RFC 9114 §4.1.2, §4.2 and §4.3 enforced. Pure.
//!
//! A malformed message is refused, never repaired: a second `:authority`
//! does not replace the first, a `Host` does not stand in for a missing
//! `:authority`, and a CONNECT (§4.4) carries `:method` and `:authority`
//! only.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use super::qpack::Field;

/// Why a message is malformed (RFC 9114 §4.1.2: a stream error
/// H3_MESSAGE_ERROR).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("pseudo-header {0} appears twice")]
    DuplicatePseudo(&'static str),
    #[error("pseudo-header after a regular field")]
    PseudoAfterRegular,
    #[error("unknown pseudo-header {0:?}")]
    UnknownPseudo(String),
    #[error("request pseudo-header in a response, or the reverse")]
    WrongPseudo,
    #[error("no :method")]
    MissingMethod,
    #[error("CONNECT must not carry :scheme or :path (RFC 9114 §4.4)")]
    ConnectSchemeOrPath,
    #[error("CONNECT without :authority")]
    MissingAuthority,
    #[error("request without :scheme and :path")]
    MissingSchemeOrPath,
    #[error("host {host:?} differs from :authority {authority:?}")]
    HostMismatch { host: String, authority: String },
    #[error("field name {0:?} is not a lowercase token")]
    BadName(String),
    #[error("value of {0} is not a valid field value")]
    BadValue(String),
    #[error("connection-specific field {0} (RFC 9114 §4.2)")]
    ConnectionSpecific(String),
    #[error("no :status, or an invalid one")]
    BadStatus,
}

impl Malformed {
    /// Fixed word for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Malformed::DuplicatePseudo(_) => "duplicate_pseudo_header",
            Malformed::PseudoAfterRegular => "pseudo_header_after_field",
            Malformed::UnknownPseudo(_) | Malformed::WrongPseudo => "unknown_pseudo_header",
            Malformed::MissingMethod => "missing_method",
            Malformed::ConnectSchemeOrPath => "connect_scheme_or_path",
            Malformed::MissingAuthority => "missing_authority",
            Malformed::MissingSchemeOrPath => "missing_scheme_or_path",
            Malformed::HostMismatch { .. } => "host_mismatch",
            Malformed::BadName(_) | Malformed::BadValue(_) => "invalid_field",
            Malformed::ConnectionSpecific(_) => "connection_specific_field",
            Malformed::BadStatus => "bad_status",
        }
    }
}

/// A request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    pub authority: Option<String>,
    pub scheme: Option<String>,
    pub path: Option<String>,
    /// Extended CONNECT (RFC 9220).
    pub protocol: Option<String>,
    pub headers: HeaderMap,
}

/// A response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
}

const REQUEST_PSEUDO: [&str; 5] = [":method", ":scheme", ":authority", ":path", ":protocol"];

/// Pseudo-header values by position in the allowed list, and the regular
/// fields.
type Split<'a> = (Vec<Option<&'a [u8]>>, HeaderMap);

/// Splits pseudo-headers (each at most once, all before regular fields,
/// only the `allowed` ones) from regular fields (lowercase, valid, not
/// connection-specific).
fn split<'a>(fields: &'a [Field], allowed: &[&'static str]) -> Result<Split<'a>, Malformed> {
    let mut pseudo: Vec<Option<&[u8]>> = vec![None; allowed.len()];
    let mut headers = HeaderMap::new();
    for field in fields {
        if let Some(rest) = field.name.strip_prefix(b":") {
            if !headers.is_empty() {
                return Err(Malformed::PseudoAfterRegular);
            }
            let known = allowed.iter().position(|p| p.as_bytes()[1..] == *rest);
            let Some(i) = known else {
                let name = String::from_utf8_lossy(&field.name).into_owned();
                if REQUEST_PSEUDO.contains(&name.as_str()) || name == ":status" {
                    return Err(Malformed::WrongPseudo);
                }
                return Err(Malformed::UnknownPseudo(name));
            };
            if pseudo[i].replace(&field.value).is_some() {
                return Err(Malformed::DuplicatePseudo(allowed[i]));
            }
            continue;
        }
        let lossy = || String::from_utf8_lossy(&field.name).into_owned();
        if field.name.iter().any(u8::is_ascii_uppercase) {
            return Err(Malformed::BadName(lossy()));
        }
        let name = HeaderName::from_bytes(&field.name).map_err(|_| Malformed::BadName(lossy()))?;
        let value =
            HeaderValue::from_bytes(&field.value).map_err(|_| Malformed::BadValue(lossy()))?;
        let connection_specific = matches!(
            name.as_str(),
            "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade"
        ) || (name == http::header::TE && value != "trailers");
        if connection_specific {
            return Err(Malformed::ConnectionSpecific(name.to_string()));
        }
        headers.append(name, value);
    }
    Ok((pseudo, headers))
}

fn text(v: Option<&[u8]>, name: &str) -> Result<Option<String>, Malformed> {
    v.map(|v| {
        std::str::from_utf8(v)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_owned)
            .ok_or_else(|| Malformed::BadValue(name.into()))
    })
    .transpose()
}

/// A request head from its field lines (RFC 9114 §4.3.1, §4.4).
pub fn request(fields: &[Field]) -> Result<RequestHead, Malformed> {
    let (p, headers) = split(fields, &REQUEST_PSEUDO)?;
    let method = p[0].ok_or(Malformed::MissingMethod)?;
    let method = Method::from_bytes(method).map_err(|_| Malformed::BadValue(":method".into()))?;
    let scheme = text(p[1], ":scheme")?;
    let authority = text(p[2], ":authority")?;
    let path = text(p[3], ":path")?;
    let protocol = text(p[4], ":protocol")?;
    if method == Method::CONNECT && protocol.is_none() {
        if scheme.is_some() || path.is_some() {
            return Err(Malformed::ConnectSchemeOrPath);
        }
        if authority.is_none() {
            return Err(Malformed::MissingAuthority);
        }
    } else if scheme.is_none() || path.is_none() {
        return Err(Malformed::MissingSchemeOrPath);
    }
    // §4.3.1: a Host must agree with :authority.
    if let (Some(a), Some(h)) = (&authority, headers.get(http::header::HOST)) {
        if h.as_bytes() != a.as_bytes() {
            return Err(Malformed::HostMismatch {
                host: String::from_utf8_lossy(h.as_bytes()).into_owned(),
                authority: a.clone(),
            });
        }
    }
    Ok(RequestHead {
        method,
        authority,
        scheme,
        path,
        protocol,
        headers,
    })
}

/// A response head from its field lines (RFC 9114 §4.3.2).
pub fn response(fields: &[Field]) -> Result<ResponseHead, Malformed> {
    let (p, headers) = split(fields, &[":status"])?;
    let status = p[0]
        .filter(|s| s.len() == 3)
        .and_then(|s| StatusCode::from_bytes(s).ok())
        .ok_or(Malformed::BadStatus)?;
    Ok(ResponseHead { status, headers })
}

/// The field lines of a CONNECT request to `authority` (RFC 9114 §4.4: no
/// `:scheme`, no `:path`) with `headers` after the pseudo-headers.
pub fn connect_fields<'a>(
    authority: &'a str,
    headers: &'a HeaderMap,
) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
    [
        (&b":method"[..], &b"CONNECT"[..]),
        (b":authority", authority.as_bytes()),
    ]
    .into_iter()
    .chain(
        headers
            .iter()
            .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())),
    )
}

/// The field lines of a response with `status` and no other fields.
pub fn status_fields(status: &StatusCode) -> [(&[u8], &[u8]); 1] {
    [(b":status", status.as_str().as_bytes())]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(list: &[(&str, &str)]) -> Vec<Field> {
        list.iter()
            .map(|(n, v)| Field {
                name: n.as_bytes().to_vec(),
                value: v.as_bytes().to_vec(),
            })
            .collect()
    }

    fn req(list: &[(&str, &str)]) -> Result<RequestHead, Malformed> {
        request(&fields(list))
    }

    #[test]
    fn compliant_connect() {
        let r = req(&[
            (":method", "CONNECT"),
            (":authority", "10.0.0.1:80"),
            ("traceparent", "00-ab-cd-01"),
        ])
        .unwrap();
        assert_eq!(r.method, Method::CONNECT);
        assert_eq!(r.authority.as_deref(), Some("10.0.0.1:80"));
        assert_eq!(r.headers["traceparent"], "00-ab-cd-01");
        // A Host equal to :authority is allowed.
        assert!(req(&[
            (":method", "CONNECT"),
            (":authority", "10.0.0.1:80"),
            ("host", "10.0.0.1:80"),
        ])
        .is_ok());
    }

    /// Each row: the fields, and the refusal's metric label.
    #[test]
    fn malformed_requests() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[
                    (":method", "CONNECT"),
                    (":authority", "10.0.0.1:80"),
                    (":authority", "10.0.0.2:80"),
                ],
                "duplicate_pseudo_header",
            ),
            (
                &[
                    (":method", "CONNECT"),
                    (":method", "CONNECT"),
                    (":authority", "10.0.0.1:80"),
                ],
                "duplicate_pseudo_header",
            ),
            (
                &[
                    (":method", "CONNECT"),
                    (":scheme", "https"),
                    (":authority", "10.0.0.1:80"),
                    (":path", "/"),
                ],
                "connect_scheme_or_path",
            ),
            (
                &[
                    (":method", "CONNECT"),
                    (":authority", "10.0.0.1:80"),
                    (":path", "/"),
                ],
                "connect_scheme_or_path",
            ),
            (
                &[(":method", "CONNECT"), ("host", "10.0.0.1:80")],
                "missing_authority",
            ),
            (&[(":method", "CONNECT")], "missing_authority"),
            (&[(":authority", "10.0.0.1:80")], "missing_method"),
            (
                &[
                    (":method", "CONNECT"),
                    ("x", "y"),
                    (":authority", "10.0.0.1:80"),
                ],
                "pseudo_header_after_field",
            ),
            (
                &[
                    (":method", "CONNECT"),
                    (":authority", "10.0.0.1:80"),
                    (":foo", "x"),
                ],
                "unknown_pseudo_header",
            ),
            (
                &[
                    (":method", "CONNECT"),
                    (":authority", "10.0.0.1:80"),
                    (":status", "200"),
                ],
                "unknown_pseudo_header",
            ),
            (
                &[
                    (":method", "CONNECT"),
                    (":authority", "10.0.0.1:80"),
                    ("X-Up", "1"),
                ],
                "invalid_field",
            ),
            (
                &[
                    (":method", "CONNECT"),
                    (":authority", "10.0.0.1:80"),
                    ("bad name", "1"),
                ],
                "invalid_field",
            ),
            (
                &[
                    (":method", "CONNECT"),
                    (":authority", "10.0.0.1:80"),
                    ("x", "a\nb"),
                ],
                "invalid_field",
            ),
            (
                &[(":method", "CONNECT"), (":authority", "")],
                "invalid_field",
            ),
            (
                &[
                    (":method", "CONNECT"),
                    (":authority", "10.0.0.1:80"),
                    ("connection", "close"),
                ],
                "connection_specific_field",
            ),
            (
                &[
                    (":method", "CONNECT"),
                    (":authority", "10.0.0.1:80"),
                    ("te", "gzip"),
                ],
                "connection_specific_field",
            ),
            (
                &[
                    (":method", "CONNECT"),
                    (":authority", "10.0.0.1:80"),
                    ("host", "10.0.0.9:80"),
                ],
                "host_mismatch",
            ),
            (
                &[(":method", "GET"), (":authority", "a")],
                "missing_scheme_or_path",
            ),
        ];
        for (list, label) in cases {
            match req(list) {
                Ok(r) => panic!("{list:?} accepted as {r:?}"),
                Err(e) => assert_eq!(e.label(), *label, "{list:?}: {e}"),
            }
        }
    }

    #[test]
    fn other_requests_are_well_formed_or_not() {
        let get = req(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/"),
            (":authority", "a"),
        ])
        .unwrap();
        assert_eq!(get.method, Method::GET);
        // Extended CONNECT carries :protocol, :scheme and :path.
        let ext = req(&[
            (":method", "CONNECT"),
            (":protocol", "connect-udp"),
            (":scheme", "https"),
            (":path", "/x"),
            (":authority", "a"),
        ])
        .unwrap();
        assert_eq!(ext.protocol.as_deref(), Some("connect-udp"));
        assert!(req(&[
            (":method", "CONNECT"),
            (":protocol", "x"),
            (":authority", "a")
        ])
        .is_err());
        assert!(req(&[(":method", "G ET"), (":scheme", "https"), (":path", "/")]).is_err());
    }

    #[test]
    fn responses() {
        let r = response(&fields(&[(":status", "200"), ("server", "x")])).unwrap();
        assert_eq!(r.status, StatusCode::OK);
        for bad in [
            &[][..],
            &[(":status", "20")][..],
            &[(":status", "abc")][..],
            &[(":status", "200"), (":status", "200")][..],
            &[(":status", "200"), (":method", "GET")][..],
            &[("server", "x"), (":status", "200")][..],
        ] {
            assert!(response(&fields(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn our_connect_is_compliant() {
        let mut h = HeaderMap::new();
        h.insert("forwarded", HeaderValue::from_static("for=10.0.0.3"));
        let encoded: Vec<Field> = connect_fields("10.0.0.1:80", &h)
            .map(|(n, v)| Field {
                name: n.to_vec(),
                value: v.to_vec(),
            })
            .collect();
        let r = request(&encoded).unwrap();
        assert_eq!((r.scheme, r.path), (None, None));
        assert_eq!(r.headers, h);
    }
}
