//! Request paths made canonical before they are matched, so that a route
//! (and, later, an L7 policy) sees the path the backend will act on:
//! `/a/../admin`, `//admin` and `/%61dmin` are all `/admin`.
//!
//! - percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are
//!   decoded; other escapes are kept, upper-cased;
//! - an escaped `/` or `\` (`%2F`, `%5C`), a raw `\`, a malformed escape,
//!   or a control character makes the path ambiguous: it is refused;
//! - dot segments are removed (RFC 3986 §5.2.4) and repeated slashes
//!   merged; a trailing slash is kept.

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with '/'")]
    NotAbsolute,
    #[error("malformed percent-escape")]
    BadEscape,
    #[error("an escaped or raw slash or backslash makes the path ambiguous")]
    AmbiguousSeparator,
    #[error("control character in the path")]
    Control,
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The canonical form of `path` (without its query).
pub fn normalize(path: &str) -> Result<String, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    // Escapes first: decoding may produce dots that form dot segments.
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (h, l) = match (
                    bytes.get(i + 1).and_then(|b| hex(*b)),
                    bytes.get(i + 2).and_then(|b| hex(*b)),
                ) {
                    (Some(h), Some(l)) => (h, l),
                    _ => return Err(PathError::BadEscape),
                };
                let c = h * 16 + l;
                if c == b'/' || c == b'\\' {
                    return Err(PathError::AmbiguousSeparator);
                }
                if c < 0x20 || c == 0x7f {
                    return Err(PathError::Control);
                }
                if unreserved(c) {
                    decoded.push(c as char);
                } else {
                    decoded.push_str(&format!("%{c:02X}"));
                }
                i += 3;
            }
            b'\\' => return Err(PathError::AmbiguousSeparator),
            _ if b < 0x20 || b == 0x7f => return Err(PathError::Control),
            _ => {
                // Safe: `path` is a str and only ASCII bytes were consumed
                // one at a time; copy the whole UTF-8 character.
                let ch = path[i..].chars().next().expect("in bounds");
                decoded.push(ch);
                i += ch.len_utf8();
                continue;
            }
        }
    }
    // Dot segments and empty segments.
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut trailing = false;
    for (k, seg) in segments.iter().enumerate() {
        match *seg {
            "." => trailing = k == last,
            ".." => {
                out.pop();
                trailing = k == last;
            }
            "" => trailing = k == last && k > 0,
            s => {
                out.push(s);
                trailing = false;
            }
        }
    }
    let mut p = String::with_capacity(decoded.len());
    p.push('/');
    p.push_str(&out.join("/"));
    if trailing && !out.is_empty() {
        p.push('/');
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn canonical_forms() {
        let cases = [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("//admin", "/admin"),
            ("/a//b///c", "/a/b/c"),
            ("/a/../admin", "/admin"),
            ("/a/./b", "/a/b"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/%61dmin", "/admin"),
            ("/a/%2e%2e/admin", "/admin"),
            ("/a%20b", "/a%20b"),
            ("/a%3fb", "/a%3Fb"),
            ("/ünïcode", "/ünïcode"),
            ("/..", "/"),
            ("/.", "/"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for (input, e) in [
            ("/a%2Fb", PathError::AmbiguousSeparator),
            ("/a%2fb", PathError::AmbiguousSeparator),
            ("/a%5Cb", PathError::AmbiguousSeparator),
            ("/a\\b", PathError::AmbiguousSeparator),
            ("/a%zz", PathError::BadEscape),
            ("/a%2", PathError::BadEscape),
            ("/a%00b", PathError::Control),
            ("relative", PathError::NotAbsolute),
        ] {
            assert_eq!(normalize(input), Err(e), "{input}");
        }
    }

    proptest! {
        /// Canonical forms are fixed points, start with '/', and hold no
        /// dot segment or empty segment.
        #[test]
        fn normalizing_is_idempotent(segs in prop::collection::vec(
            prop::sample::select(vec!["a", "b", ".", "..", "", "%61", "x%20y", "%2e"]), 0..8),
            trailing in any::<bool>())
        {
            let mut p = format!("/{}", segs.join("/"));
            if trailing { p.push('/'); }
            let n = normalize(&p).unwrap();
            prop_assert!(n.starts_with('/'));
            prop_assert_eq!(normalize(&n).unwrap(), n.clone());
            let inner = n.trim_start_matches('/').trim_end_matches('/');
            if !inner.is_empty() {
                for s in inner.split('/') {
                    prop_assert!(!s.is_empty() && s != "." && s != "..", "{n}");
                }
            }
        }
    }
}
