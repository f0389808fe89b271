//! The CGI contract (RFC 3875, as WAGI uses it): a request becomes
//! environment variables, and a module's stdout becomes a response.

/// Headers a module never sees: the caller's credentials.
const WITHHELD: [&str; 4] = [
    "authorization",
    "cookie",
    "x-api-key",
    "proxy-authorization",
];
/// Response headers a module may not set: framing is the server's job.
const FRAMING: [&str; 4] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
];

/// The request as a module sees it.
pub struct CgiRequest<'a> {
    pub method: &'a str,
    pub script_name: String,
    pub path_info: String,
    pub query: &'a str,
    pub headers: Vec<(String, String)>,
    pub body_len: usize,
}

/// `HTTP_*` name of a header: upper case, `-` as `_`.
fn http_var(name: &str) -> String {
    format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_"))
}

/// The CGI variables for `req`, after the function's own `env` (so a
/// function setting cannot shadow what the request says).
pub fn environment(
    req: &CgiRequest<'_>,
    identity: [(&str, &str); 2],
    env: &[(String, String)],
) -> Vec<String> {
    let mut vars: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut content_type = "";
    for (name, value) in &req.headers {
        let lower = name.to_ascii_lowercase();
        if WITHHELD.contains(&lower.as_str()) {
            continue;
        }
        if lower == "content-type" {
            content_type = value;
        }
        if lower == "content-type" || lower == "content-length" {
            continue;
        }
        vars.push(format!("{}={value}", http_var(&lower)));
    }
    vars.push("GATEWAY_INTERFACE=CGI/1.1".into());
    vars.push("SERVER_PROTOCOL=HTTP/1.1".into());
    vars.push("SERVER_SOFTWARE=flagbase".into());
    vars.push(format!("REQUEST_METHOD={}", req.method));
    vars.push(format!("SCRIPT_NAME={}", req.script_name));
    vars.push(format!("PATH_INFO={}", req.path_info));
    vars.push(format!("QUERY_STRING={}", req.query));
    vars.push(format!("CONTENT_TYPE={content_type}"));
    vars.push(format!("CONTENT_LENGTH={}", req.body_len));
    for (name, value) in identity {
        vars.push(format!("{name}={value}"));
    }
    vars
}

/// A module's response.
#[derive(Debug, PartialEq, Eq)]
pub struct CgiResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl CgiResponse {
    /// The HTTP response, for `/functions/...` and gateway routes alike.
    pub fn into_http(self) -> axum::response::Response {
        use axum::http::{header, HeaderName, HeaderValue, StatusCode};
        use axum::response::IntoResponse;
        let mut response = (
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK),
            axum::body::Bytes::from(self.body),
        )
            .into_response();
        let headers = response.headers_mut();
        // Without a Content-Type of the module's, the body stays
        // application/octet-stream, which no browser renders as a page.
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        for (name, value) in self.headers {
            let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) else {
                continue;
            };
            if name == header::CONTENT_TYPE {
                headers.insert(name, value);
            } else {
                headers.append(name, value);
            }
        }
        response
    }
}

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Splits stdout into CGI headers and body. Without a header block (the
/// first line is not `Name: value`, or no blank line ends the block) the
/// whole of stdout is the body. `Err` names a malformed `Status`.
pub fn parse_output(stdout: Vec<u8>) -> Result<CgiResponse, String> {
    let head_end = find_blank_line(&stdout);
    let Some((head_len, body_start)) = head_end else {
        return Ok(plain(stdout));
    };
    let Ok(head) = std::str::from_utf8(&stdout[..head_len]) else {
        return Ok(plain(stdout));
    };
    let mut headers = Vec::new();
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        let Some((name, value)) = line.split_once(':') else {
            return Ok(plain(stdout));
        };
        if !is_token(name) {
            return Ok(plain(stdout));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let mut status = 200;
    let mut kept = Vec::new();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if lower == "status" {
            status = value
                .split_whitespace()
                .next()
                .and_then(|code| code.parse::<u16>().ok())
                .filter(|code| (100..=599).contains(code))
                .ok_or_else(|| format!("the module sent an invalid Status header {value:?}"))?;
        } else if !FRAMING.contains(&lower.as_str()) {
            if lower == "location" && status == 200 {
                status = 302;
            }
            kept.push((name, value));
        }
    }
    Ok(CgiResponse {
        status,
        headers: kept,
        body: stdout[body_start..].to_vec(),
    })
}

fn plain(body: Vec<u8>) -> CgiResponse {
    CgiResponse {
        status: 200,
        headers: Vec::new(),
        body,
    }
}

/// End of the header block and start of the body: `\n\n` or `\r\n\r\n`.
fn find_blank_line(out: &[u8]) -> Option<(usize, usize)> {
    let limit = out.len().min(64 * 1024);
    (0..limit).find_map(|i| {
        if out[i..].starts_with(b"\r\n\r\n") {
            Some((i, i + 4))
        } else if out[i..].starts_with(b"\n\n") {
            Some((i, i + 2))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_status_and_body_are_split() {
        let r = parse_output(
            b"Content-Type: text/html\r\nStatus: 201 Created\r\nX-A: b\r\n\r\n<p>hi".to_vec(),
        )
        .unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(
            r.headers,
            [
                ("Content-Type".into(), "text/html".into()),
                ("X-A".into(), "b".into())
            ]
        );
        assert_eq!(r.body, b"<p>hi");
    }

    #[test]
    fn output_without_a_header_block_is_all_body() {
        for out in [&b"hello world\n"[..], b"hello\n\nworld", b"{\"a\": 1}\n\n"] {
            assert_eq!(parse_output(out.to_vec()).unwrap(), plain(out.to_vec()));
        }
        assert!(parse_output(b"Status: nope\n\n".to_vec()).is_err());
        let framed = parse_output(b"Content-Length: 99\nLocation: /x\n\n".to_vec()).unwrap();
        assert_eq!((framed.status, framed.headers.len()), (302, 1));
    }

    #[test]
    fn credentials_never_reach_the_module() {
        let req = CgiRequest {
            method: "POST",
            script_name: "/functions/f".into(),
            path_info: "/a".into(),
            query: "x=1",
            headers: vec![
                ("Authorization".into(), "Bearer secret".into()),
                ("Cookie".into(), "s=1".into()),
                ("X-API-Key".into(), "fbk".into()),
                ("Content-Type".into(), "text/plain".into()),
                ("X-Trace".into(), "t".into()),
            ],
            body_len: 3,
        };
        let env = environment(
            &req,
            [("FLAGBASE_USER_ID", "u1"), ("FLAGBASE_ROLE", "user")],
            &[],
        );
        let all = env.join("\n");
        assert!(
            !all.contains("secret") && !all.contains("s=1") && !all.contains("fbk"),
            "{all}"
        );
        assert!(env.contains(&"HTTP_X_TRACE=t".to_string()));
        assert!(env.contains(&"CONTENT_TYPE=text/plain".to_string()));
        assert!(env.contains(&"CONTENT_LENGTH=3".to_string()));
    }
}
