//! Where Flagbase's own bus connection goes and with which credential: the
//! embedded bus (a per-process token) or an external NATS server
//! (`events.url` plus `events.token` or `events.user`/`events.password`,
//! or the same in the URL's userinfo).
//!
//! The credential is kept apart from the address from the moment the URL is
//! parsed: `display` (what the banner and the log show) and the address
//! handed to `async_nats` never carry it, so no client log line can leak it.

use std::fmt;

/// How Flagbase's connection authenticates to the bus.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    None,
    Token(String),
    UserPassword { user: String, password: String },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets never reach a log, even through `{:?}`.
        match self {
            Credentials::None => write!(f, "None"),
            Credentials::Token(_) => write!(f, "Token(<redacted>)"),
            Credentials::UserPassword { user, .. } => {
                write!(f, "UserPassword {{ user: {user:?}, password: <redacted> }}")
            }
        }
    }
}

/// One bus to connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusTarget {
    /// `nats://host:port`, without credentials.
    pub address: String,
    pub credentials: Credentials,
    /// Whether this is a NATS server Flagbase did not start.
    pub external: bool,
}

/// `events.url` with its credentials taken out of it.
#[derive(Debug, PartialEq, Eq)]
pub struct ParsedUrl {
    /// `nats://host:port`.
    pub address: String,
    pub credentials: Credentials,
}

impl BusTarget {
    /// The embedded bus at `host:port`, entered with Flagbase's own token.
    pub fn embedded(host_port: &str, token: String) -> BusTarget {
        BusTarget {
            address: format!("nats://{host_port}"),
            credentials: Credentials::Token(token),
            external: false,
        }
    }

    /// An external NATS server: `url` (which may carry userinfo) and the
    /// explicit credentials of the configuration. Errors say what is wrong
    /// without repeating a secret.
    pub fn external(
        url: &str,
        token: Option<&str>,
        user: Option<&str>,
        password: Option<&str>,
    ) -> Result<BusTarget, String> {
        let parsed = parse_url(url)?;
        let explicit = match (token, user, password) {
            (None, None, None) => Credentials::None,
            (Some(t), None, None) => Credentials::Token(t.to_string()),
            (None, Some(u), Some(p)) => Credentials::UserPassword {
                user: u.to_string(),
                password: p.to_string(),
            },
            (Some(_), _, _) => {
                return Err("set either a token or a user and password, not both".into())
            }
            (None, Some(_), None) => return Err("a user needs a password".into()),
            (None, None, Some(_)) => return Err("a password needs a user".into()),
        };
        let credentials = match (parsed.credentials, explicit) {
            (c, Credentials::None) | (Credentials::None, c) => c,
            _ => return Err("credentials are given both in the URL and as keys; keep one".into()),
        };
        Ok(BusTarget {
            address: parsed.address,
            credentials,
            external: true,
        })
    }

    /// What the banner and the log show: the address, never a credential.
    pub fn display(&self) -> &str {
        &self.address
    }

    /// Connect options carrying the credential (the address is passed to
    /// `connect` separately).
    pub fn connect_options(&self) -> async_nats::ConnectOptions {
        match &self.credentials {
            Credentials::None => async_nats::ConnectOptions::new(),
            Credentials::Token(t) => async_nats::ConnectOptions::with_token(t.clone()),
            Credentials::UserPassword { user, password } => {
                async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
        }
    }
}

/// Parses `nats://[token@|user:password@]host:port`; the port defaults to
/// 4222 as in every NATS client. Userinfo may be percent-encoded.
pub fn parse_url(url: &str) -> Result<ParsedUrl, String> {
    let rest = url
        .strip_prefix("nats://")
        .ok_or("must start with nats:// (TLS to an external server is not supported yet)")?;
    if rest.contains(',') {
        return Err("must name one server (a cluster's other servers are discovered)".into());
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#']) {
        return Err("must be nats://host:port, without a path or query".into());
    }
    let (userinfo, host_port) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let credentials = match userinfo {
        None => Credentials::None,
        Some(u) => match u.split_once(':') {
            None if !u.is_empty() => Credentials::Token(percent_decode(u)?),
            Some((user, password)) if !user.is_empty() => Credentials::UserPassword {
                user: percent_decode(user)?,
                password: percent_decode(password)?,
            },
            _ => return Err("has an empty user or token before @".into()),
        },
    };
    let (host, port) = split_host_port(host_port)?;
    Ok(ParsedUrl {
        address: format!("nats://{host}:{port}"),
        credentials,
    })
}

fn split_host_port(host_port: &str) -> Result<(&str, u16), String> {
    // `[::1]:4222`, `host:4222`, `host`.
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or("has an unclosed [ in its host")?;
        let host = &host_port[..addr.len() + 2];
        match after {
            "" => (host, None),
            p => (
                host,
                Some(p.strip_prefix(':').ok_or("has junk after its IPv6 host")?),
            ),
        }
    } else {
        match host_port.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err("has no host".into());
    }
    let port = match port {
        None => 4222,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("has an invalid port {p:?}")),
        },
    };
    Ok((host, port))
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("has a bad %-escape in its credentials")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "has credentials that are not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(t: &str) -> Credentials {
        Credentials::Token(t.into())
    }

    #[test]
    fn urls_lose_their_credentials_to_the_credentials_field() {
        let p = parse_url("nats://s3cret@nats.internal:4333").unwrap();
        assert_eq!(p.address, "nats://nats.internal:4333");
        assert_eq!(p.credentials, token("s3cret"));
        let p = parse_url("nats://svc:p%40ss%3Aword@10.0.0.5").unwrap();
        assert_eq!(p.address, "nats://10.0.0.5:4222");
        assert_eq!(
            p.credentials,
            Credentials::UserPassword {
                user: "svc".into(),
                password: "p@ss:word".into()
            }
        );
        let p = parse_url("nats://[::1]:4223/").unwrap();
        assert_eq!(p.address, "nats://[::1]:4223");
        assert_eq!(p.credentials, Credentials::None);
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_secrets() {
        for bad in [
            "http://host:4222",
            "tls://host:4222",
            "nats://",
            "nats://host:0",
            "nats://host:99999",
            "nats://a:1,nats://b:2",
            "nats://host:4222/path",
            "nats://@host",
            "nats://:pw@host",
            "nats://tok%zz@host",
        ] {
            let e = parse_url(bad).unwrap_err();
            assert!(!e.contains("pw") && !e.contains("zz"), "{bad}: {e}");
        }
    }

    #[test]
    fn credentials_come_from_one_place_only() {
        let t = BusTarget::external("nats://h:1", Some("abc"), None, None).unwrap();
        assert_eq!(t.credentials, token("abc"));
        assert!(BusTarget::external("nats://x@h:1", Some("abc"), None, None).is_err());
        assert!(BusTarget::external("nats://h:1", Some("abc"), Some("u"), Some("p")).is_err());
        assert!(BusTarget::external("nats://h:1", None, Some("u"), None).is_err());
        assert!(BusTarget::external("nats://h:1", None, None, Some("p")).is_err());
        let t = BusTarget::external("nats://u:p@h:1", None, None, None).unwrap();
        assert_eq!(t.display(), "nats://h:1");
        assert!(!format!("{t:?}").contains("\"p\""), "{t:?}");
    }
}
