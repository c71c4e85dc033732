//! API microversions: `OpenStack-API-Version: <service> X.Y` and the legacy per-service
//! header (`X-OpenStack-Nova-API-Version`), `latest`, 406 outside the supported range.

use crate::fault::Fault;
use http::{HeaderMap, HeaderValue, StatusCode};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u16,
    pub minor: u16,
}

impl Version {
    pub const fn new(major: u16, minor: u16) -> Self {
        Self { major, minor }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl FromStr for Version {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (a, b) = s.trim().split_once('.').ok_or(())?;
        let major = a.parse().map_err(|_| ())?;
        let minor = b.parse().map_err(|_| ())?;
        // "2.01" is not a version an OpenStack service accepts.
        if (b.len() > 1 && b.starts_with('0')) || (a.len() > 1 && a.starts_with('0')) {
            return Err(());
        }
        Ok(Self { major, minor })
    }
}

/// A service's microversion range and header names.
#[derive(Debug, Clone)]
pub struct Microversions {
    /// Service type as it appears in `OpenStack-API-Version` (`compute`, `volume`, `placement`).
    pub service_type: &'static str,
    /// Legacy header, e.g. `X-OpenStack-Nova-API-Version`.
    pub legacy_header: Option<&'static str>,
    pub min: Version,
    pub max: Version,
}

impl Microversions {
    /// The version a request asks for; no header means the minimum.
    pub fn negotiate(&self, headers: &HeaderMap) -> Result<Version, Fault> {
        let mut requested: Option<String> = None;
        for value in headers.get_all("openstack-api-version") {
            let Ok(value) = value.to_str() else { continue };
            for item in value.split(',') {
                let mut words = item.split_whitespace();
                if let (Some(svc), Some(ver)) = (words.next(), words.next())
                    && svc.eq_ignore_ascii_case(self.service_type)
                {
                    requested = Some(ver.to_string());
                }
            }
        }
        if requested.is_none()
            && let Some(h) = self.legacy_header
        {
            requested = headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
        }
        let Some(requested) = requested else {
            return Ok(self.min);
        };
        if requested.trim().eq_ignore_ascii_case("latest") {
            return Ok(self.max);
        }
        let v: Version = requested.parse().map_err(|_| {
            Fault::bad_request(format!(
                "Version {requested} is not a valid version string (X.Y)."
            ))
        })?;
        if v < self.min || v > self.max {
            return Err(Fault::new(
                StatusCode::NOT_ACCEPTABLE,
                format!(
                    "Version {v} is not supported by the API. Minimum is {} and maximum is {}.",
                    self.min, self.max
                ),
            ));
        }
        Ok(v)
    }

    /// Headers every response of a microversioned API carries.
    pub fn response_headers(&self, v: Version, headers: &mut HeaderMap) {
        if let Ok(hv) = HeaderValue::from_str(&format!("{} {v}", self.service_type)) {
            headers.insert("openstack-api-version", hv);
        }
        let mut vary = String::from("OpenStack-API-Version");
        if let Some(h) = self.legacy_header {
            if let Ok(hv) = HeaderValue::from_str(&v.to_string()) {
                headers.insert(h, hv);
            }
            vary.push_str(", ");
            vary.push_str(h);
        }
        if let Ok(hv) = HeaderValue::from_str(&vary) {
            headers.insert(http::header::VARY, hv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nova() -> Microversions {
        Microversions {
            service_type: "compute",
            legacy_header: Some("X-OpenStack-Nova-API-Version"),
            min: Version::new(2, 1),
            max: Version::new(2, 72),
        }
    }

    fn h(name: &'static str, v: &'static str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(name, HeaderValue::from_static(v));
        m
    }

    #[test]
    fn negotiation() {
        let n = nova();
        assert_eq!(n.negotiate(&HeaderMap::new()), Ok(Version::new(2, 1)));
        assert_eq!(
            n.negotiate(&h("openstack-api-version", "compute 2.60")),
            Ok(Version::new(2, 60))
        );
        assert_eq!(
            n.negotiate(&h("openstack-api-version", "compute latest")),
            Ok(Version::new(2, 72))
        );
        assert_eq!(
            n.negotiate(&h("openstack-api-version", "volume 3.5")),
            Ok(Version::new(2, 1))
        );
        assert_eq!(
            n.negotiate(&h("x-openstack-nova-api-version", "2.10")),
            Ok(Version::new(2, 10))
        );
        assert_eq!(
            n.negotiate(&h("openstack-api-version", "compute 2.99"))
                .map_err(|f| f.status),
            Err(StatusCode::NOT_ACCEPTABLE)
        );
        assert_eq!(
            n.negotiate(&h("openstack-api-version", "compute 2.x"))
                .map_err(|f| f.status),
            Err(StatusCode::BAD_REQUEST)
        );
        assert!("2.01".parse::<Version>().is_err());
    }

    #[test]
    fn response_headers_echo_both() {
        let mut hm = HeaderMap::new();
        nova().response_headers(Version::new(2, 5), &mut hm);
        assert_eq!(hm["openstack-api-version"], "compute 2.5");
        assert_eq!(hm["x-openstack-nova-api-version"], "2.5");
        assert!(
            hm["vary"]
                .to_str()
                .unwrap()
                .contains("OpenStack-API-Version")
        );
    }
}
