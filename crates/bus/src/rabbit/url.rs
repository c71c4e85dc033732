//! Transport URLs: oslo.messaging's `rabbit://` form and plain AMQP URIs.

use crate::error::BusError;

/// The AMQP URIs (`amqp://user:pass@host:port/vhost`) a transport URL names, in the order they
/// are tried.
///
/// Accepted forms:
/// - `amqp://user:pass@host:port/%2f` (an AMQP URI, passed through as it is);
/// - oslo.messaging's `rabbit://user:pass@host:port/vhost`, with several hosts separated by
///   commas (`rabbit://u:p@h1:5672,u:p@h2:5672/`) tried in turn on (re)connect. An empty or
///   missing vhost is `/`, as oslo takes it; the port defaults to 5672.
///
/// TLS (`amqps://`, `?ssl=1`) is refused with a clear error: this build carries no TLS backend
/// for the bus.
pub fn amqp_uris(url: &str) -> Result<Vec<String>, BusError> {
    let bad = |why: &str| BusError::Transport(format!("transport URL {}: {why}", redact(url)));
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("expected rabbit://… or amqp://…"))?;
    match scheme {
        "amqp" => return Ok(vec![url.to_owned()]),
        "rabbit" => {}
        "amqps" => return Err(bad("TLS is not supported by this build")),
        _ => return Err(bad("unknown scheme, expected rabbit or amqp")),
    }
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    if let Some(query) = query {
        let tls = query.split('&').any(|kv| {
            matches!(
                kv.split_once('='),
                Some(("ssl", "1" | "true" | "True")) | Some(("tls", "1" | "true" | "True"))
            )
        });
        if tls {
            return Err(bad("TLS is not supported by this build"));
        }
    }
    let (hosts, vhost) = match rest.split_once('/') {
        Some((hosts, vhost)) => (hosts, vhost),
        None => (rest, ""),
    };
    let vhost = if vhost.is_empty() { "%2f" } else { vhost };
    let mut uris = Vec::new();
    for entry in hosts.split(',') {
        let (userinfo, hostport) = match entry.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, entry),
        };
        if hostport.is_empty() {
            return Err(bad("empty host"));
        }
        // An IPv6 literal keeps its brackets; a port is whatever follows the last colon after them.
        let has_port = match hostport.rfind(']') {
            Some(end) => hostport[end..].contains(':'),
            None => hostport.contains(':'),
        };
        let hostport = if has_port {
            hostport.to_owned()
        } else {
            format!("{hostport}:5672")
        };
        let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
        uris.push(format!("amqp://{userinfo}{hostport}/{vhost}"));
    }
    Ok(uris)
}

/// `url` with its password replaced by `***`, for logs and errors.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (hosts, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let hosts: Vec<String> = hosts
        .split(',')
        .map(|entry| match entry.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or_default();
                format!("{user}:***@{host}")
            }
            None => entry.to_owned(),
        })
        .collect();
    format!("{scheme}://{}{tail}", hosts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oslo_urls() {
        assert_eq!(
            amqp_uris("rabbit://u:p@h:5673/").unwrap(),
            ["amqp://u:p@h:5673/%2f"]
        );
        assert_eq!(
            amqp_uris("rabbit://u:p@h").unwrap(),
            ["amqp://u:p@h:5672/%2f"]
        );
        assert_eq!(
            amqp_uris("rabbit://u:p@h1:1,u2:p2@h2/nova").unwrap(),
            ["amqp://u:p@h1:1/nova", "amqp://u2:p2@h2:5672/nova"]
        );
        assert_eq!(
            amqp_uris("rabbit://[::1]/").unwrap(),
            ["amqp://[::1]:5672/%2f"]
        );
        assert_eq!(
            amqp_uris("rabbit://[::1]:99/").unwrap(),
            ["amqp://[::1]:99/%2f"]
        );
        assert_eq!(
            amqp_uris("amqp://u:p@h:1/%2f").unwrap(),
            ["amqp://u:p@h:1/%2f"]
        );
        assert!(amqp_uris("rabbit://h/?ssl=1").is_err());
        assert!(amqp_uris("amqps://h/").is_err());
        assert!(amqp_uris("kafka://h/").is_err());
        assert!(amqp_uris("h:5672").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("rabbit://u:secret@h1,v:x@h2/vh"),
            "rabbit://u:***@h1,v:***@h2/vh"
        );
        assert_eq!(redact("amqp://h:1/%2f"), "amqp://h:1/%2f");
        let err = amqp_uris("kafka://u:secret@h/").unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
    }
}
