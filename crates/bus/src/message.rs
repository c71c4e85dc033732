//! What travels on the bus: targets, versions, envelopes and typed messages.

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::error::BusError;

/// Where a message goes: a topic (a role, e.g. `conductor`) and optionally one server on it
/// (e.g. the compute host `node-1`), as oslo.messaging's `Target(topic, server)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// The role's topic; every server of the role listens on it.
    pub topic: String,
    /// One server of the topic; `None` lets the bus pick one (round robin).
    pub server: Option<String>,
}

impl Target {
    /// Any one server on `topic`.
    pub fn topic(topic: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            server: None,
        }
    }

    /// The server named `server` on `topic`.
    pub fn server(topic: impl Into<String>, server: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            server: Some(server.into()),
        }
    }
}

impl Target {
    /// The target a subscription serves: the topic with a server name (a fresh unique one when
    /// none is given). An empty topic or server name is refused.
    pub fn to_serve(self) -> Result<Target, BusError> {
        if self.topic.is_empty() {
            return Err(BusError::InvalidTarget("empty topic".into()));
        }
        let name = match self.server {
            Some(name) if name.is_empty() => {
                return Err(BusError::InvalidTarget("empty server name".into()));
            }
            Some(name) => name,
            None => uuid::Uuid::new_v4().to_string(),
        };
        Ok(Target::server(self.topic, name))
    }
}

impl fmt::Display for Target {
    // `topic.server` is also the queue name oslo.messaging's rabbit driver uses, so logs read alike.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.server {
            Some(server) => write!(f, "{}.{}", self.topic, server),
            None => f.write_str(&self.topic),
        }
    }
}

/// A message (or API) version, `major.minor`, compared with oslo.messaging's rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version {
    /// Changed on incompatible changes.
    pub major: u16,
    /// Changed on backwards-compatible additions.
    pub minor: u16,
}

impl Version {
    /// `major.minor`.
    pub const fn new(major: u16, minor: u16) -> Self {
        Self { major, minor }
    }

    /// Whether a server implementing `self` can handle a message sent as `requested`: same major
    /// and at least the sender's minor (a newer minor only adds optional fields and methods).
    pub const fn can_serve(self, requested: Version) -> bool {
        self.major == requested.major && self.minor >= requested.minor
    }

    /// The version to send a message of version `self` at when the receivers serve at most
    /// `cap` (oslo's `version_cap`): `self` if they serve it, else `cap` (the message must then
    /// write itself at `cap`: [`Message::payload_at`]).
    pub const fn capped_by(self, cap: Version) -> Version {
        if cap.can_serve(self) { self } else { cap }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl FromStr for Version {
    type Err = BusError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BusError::Codec(format!("invalid version {s:?}, expected MAJOR.MINOR"));
        let (major, minor) = s.split_once('.').ok_or_else(bad)?;
        Ok(Self {
            major: major.parse().map_err(|_| bad())?,
            minor: minor.parse().map_err(|_| bad())?,
        })
    }
}

// On the wire as "1.3", as oslo.messaging writes versions.
impl Serialize for Version {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A fresh request id in OpenStack's `req-<uuid>` form, for work that did not start with an
/// HTTP request (periodic tasks).
pub fn new_request_id() -> String {
    format!("req-{}", uuid::Uuid::new_v4())
}

/// One message as it travels: method, version, request id and a JSON payload. JSON so that the
/// RabbitMQ bus carries exactly what the in-process bus hands over.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Envelope {
    /// The method the server dispatches on.
    pub method: String,
    /// The version the sender speaks for this method.
    pub version: Version,
    /// The `x-openstack-request-id` of the request that caused this message, so logs correlate.
    pub request_id: String,
    /// The arguments.
    pub payload: Value,
}

impl Envelope {
    /// An envelope with a fresh request id; see [`Envelope::with_request_id`].
    pub fn new(method: impl Into<String>, version: Version, payload: Value) -> Self {
        Self {
            method: method.into(),
            version,
            request_id: new_request_id(),
            payload,
        }
    }

    /// The envelope of a typed message.
    pub fn for_message<M: Message>(message: &M, request_id: &str) -> Result<Self, BusError> {
        Self::for_message_at(message, M::VERSION, request_id)
    }

    /// The envelope of a typed message for receivers that serve at most `cap` (a rolling
    /// upgrade's version cap): at [`Message::VERSION`] if they serve it, else written as a sender
    /// at `cap` would have written it ([`Message::payload_at`]).
    pub fn for_message_at<M: Message>(
        message: &M,
        cap: Version,
        request_id: &str,
    ) -> Result<Self, BusError> {
        let version = M::VERSION.capped_by(cap);
        Ok(Self {
            method: M::METHOD.to_owned(),
            version,
            request_id: request_id.to_owned(),
            payload: message.payload_at(version)?,
        })
    }

    /// Carry the caller's request id instead of a fresh one.
    #[must_use]
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = request_id.into();
        self
    }
}

/// A typed, versioned bus message: the method it is dispatched as, the version the sender speaks
/// and the type of its reply (`()` for messages that are only cast).
pub trait Message: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The method name in the envelope (Nova's style: `build_and_run_instance`).
    const METHOD: &'static str;
    /// The version this code speaks: senders stamp it, the dispatcher serves up to it.
    const VERSION: Version;
    /// What a call returns.
    type Reply: Serialize + DeserializeOwned + Send + 'static;

    /// The payload as a sender at `version` writes it. A type whose newer minor added fields
    /// overrides this to drop them for older receivers (Nova's `obj_make_compatible`); the
    /// default writes only [`Message::VERSION`] and refuses any other with
    /// [`BusError::VersionCap`].
    fn payload_at(&self, version: Version) -> Result<Value, BusError> {
        if version != Self::VERSION {
            return Err(BusError::VersionCap {
                method: Self::METHOD.to_owned(),
                speaks: Self::VERSION,
                cap: version,
            });
        }
        encode(self)
    }
}

/// A message's payload at its own version (for [`Message::payload_at`] overrides to start from).
pub fn encode<M: Message>(message: &M) -> Result<Value, BusError> {
    serde_json::to_value(message)
        .map_err(|e| BusError::Codec(format!("encoding {}: {e}", M::METHOD)))
}

/// What a typed handler learns about a request besides its body.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestMeta {
    /// The `x-openstack-request-id` the sender carried.
    pub request_id: String,
    /// The version the sender spoke, so a handler can serve older senders differently.
    pub version: Version,
}

impl RequestMeta {
    /// Meta data for a request.
    pub fn new(request_id: impl Into<String>, version: Version) -> Self {
        Self {
            request_id: request_id.into(),
            version,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_rule_is_oslo_messaging() {
        let served = Version::new(1, 3);
        assert!(served.can_serve(Version::new(1, 0)));
        assert!(served.can_serve(Version::new(1, 3)));
        assert!(!served.can_serve(Version::new(1, 4)));
        assert!(!served.can_serve(Version::new(2, 0)));
        assert!(!served.can_serve(Version::new(0, 9)));
    }

    #[test]
    fn capped_by_sends_the_newest_the_receivers_serve() {
        let v11 = Version::new(1, 1);
        assert_eq!(v11.capped_by(Version::new(1, 0)), Version::new(1, 0));
        assert_eq!(v11.capped_by(v11), v11);
        assert_eq!(v11.capped_by(Version::new(1, 4)), v11);
        assert_eq!(Version::new(1, 0).capped_by(v11), Version::new(1, 0));
    }

    /// A message whose 1.1 added `note`: at 1.0 it goes without it.
    #[derive(Serialize, Deserialize)]
    struct Build {
        id: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    }

    impl Message for Build {
        const METHOD: &'static str = "build";
        const VERSION: Version = Version::new(1, 1);
        type Reply = ();

        fn payload_at(&self, version: Version) -> Result<Value, BusError> {
            let mut payload = encode(self)?;
            if !Version::new(1, 1).can_serve(version) {
                return Err(BusError::VersionCap {
                    method: Self::METHOD.into(),
                    speaks: Self::VERSION,
                    cap: version,
                });
            }
            if version.minor < 1
                && let Some(fields) = payload.as_object_mut()
            {
                fields.remove("note");
            }
            Ok(payload)
        }
    }

    /// A message that never changed: only its own version.
    #[derive(Serialize, Deserialize)]
    struct Ping {}

    impl Message for Ping {
        const METHOD: &'static str = "ping";
        const VERSION: Version = Version::new(1, 0);
        type Reply = ();
    }

    #[test]
    fn envelopes_under_a_version_cap() {
        let build = Build {
            id: 7,
            note: Some("hi".into()),
        };
        let e = Envelope::for_message_at(&build, Version::new(1, 0), "req-1").unwrap();
        assert_eq!(
            (e.version, e.payload),
            (Version::new(1, 0), serde_json::json!({"id": 7}))
        );
        let e = Envelope::for_message_at(&build, Version::new(1, 5), "req-1").unwrap();
        let full = serde_json::json!({"id": 7, "note": "hi"});
        assert_eq!((e.version, e.payload), (Version::new(1, 1), full));
        assert!(matches!(
            Envelope::for_message_at(&build, Version::new(2, 0), "req-1"),
            Err(BusError::VersionCap { .. })
        ));
        // the default: a 1.0 message is sent as is under any 1.x cap, refused under 2.0
        let e = Envelope::for_message_at(&Ping {}, Version::new(1, 1), "req-1").unwrap();
        assert_eq!(e.version, Version::new(1, 0));
        let err = Envelope::for_message_at(&Ping {}, Version::new(2, 0), "req-1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "ping cannot be sent at 2.0: this code speaks 1.0 and has no backport to 2.0"
        );
    }

    #[test]
    fn version_wire_form() {
        let v = Version::new(5, 12);
        assert_eq!(serde_json::to_value(v).unwrap(), Value::from("5.12"));
        assert_eq!(serde_json::from_value::<Version>("5.12".into()).unwrap(), v);
        assert!("5".parse::<Version>().is_err());
        assert!("a.1".parse::<Version>().is_err());
    }

    #[test]
    fn target_display() {
        assert_eq!(Target::topic("conductor").to_string(), "conductor");
        assert_eq!(Target::server("compute", "n1").to_string(), "compute.n1");
    }

    #[test]
    fn request_ids_look_like_openstacks() {
        let id = new_request_id();
        assert!(id.starts_with("req-") && id.len() == 40, "{id}");
    }
}
