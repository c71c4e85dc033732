//! The server side of typed messages: route by method, check the version, decode, encode.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::Fault;
use crate::handler::Handler;
use crate::message::{Envelope, Message, RequestMeta, Version};

type Reply = Pin<Box<dyn Future<Output = Result<Value, Fault>> + Send>>;
type Route = Box<dyn Fn(RequestMeta, Value) -> Reply + Send + Sync>;

/// A [`Handler`] that routes typed [`Message`]s to their handlers by method name, after
/// oslo.messaging's version check: same major as the sender, at least the sender's minor.
///
/// A method may be registered once per major version (to serve old and new senders through a
/// major bump); registering the same method and major again replaces the earlier handler.
#[derive(Default)]
pub struct Dispatcher {
    routes: HashMap<&'static str, Vec<(Version, Route)>>,
}

impl Dispatcher {
    /// No routes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Handle `M` with `f`: `dispatcher.on(|meta, ping: Ping| async move { Ok(Pong) })`.
    #[must_use]
    pub fn on<M, F, Fut>(mut self, f: F) -> Self
    where
        M: Message,
        F: Fn(RequestMeta, M) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<M::Reply, Fault>> + Send + 'static,
    {
        let route: Route = Box::new(move |meta, payload| {
            let message = match serde_json::from_value::<M>(payload) {
                Ok(message) => message,
                Err(e) => {
                    let fault = Fault::remote(Fault::MALFORMED, format!("{}: {e}", M::METHOD));
                    return Box::pin(std::future::ready(Err(fault)));
                }
            };
            let reply = f(meta, message);
            Box::pin(async move {
                let reply = reply.await?;
                serde_json::to_value(reply).map_err(|e| {
                    Fault::remote(Fault::MALFORMED, format!("reply to {}: {e}", M::METHOD))
                })
            })
        });
        let versions = self.routes.entry(M::METHOD).or_default();
        versions.retain(|(version, _)| version.major != M::VERSION.major);
        versions.push((M::VERSION, route));
        self
    }

    /// The methods and versions served, for logs and diagnostics.
    pub fn methods(&self) -> Vec<(&'static str, Version)> {
        let mut out: Vec<_> = self
            .routes
            .iter()
            .flat_map(|(method, versions)| versions.iter().map(|(v, _)| (*method, *v)))
            .collect();
        out.sort();
        out
    }
}

#[async_trait]
impl Handler for Dispatcher {
    async fn handle(&self, envelope: Envelope) -> Result<Value, Fault> {
        let Envelope {
            method,
            version,
            request_id,
            payload,
        } = envelope;
        let Some(versions) = self.routes.get(method.as_str()) else {
            return Err(Fault::NoSuchMethod { method });
        };
        let Some((_, route)) = versions
            .iter()
            .find(|(served, _)| served.can_serve(version))
        else {
            let mut supported: Vec<Version> = versions.iter().map(|(v, _)| *v).collect();
            supported.sort();
            return Err(Fault::IncompatibleVersion {
                method,
                requested: version,
                supported,
            });
        };
        route(RequestMeta::new(request_id, version), payload).await
    }
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("methods", &self.methods())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Get {
        id: u32,
    }

    impl Message for Get {
        const METHOD: &'static str = "get";
        const VERSION: Version = Version::new(1, 2);
        type Reply = String;
    }

    fn dispatcher() -> Dispatcher {
        Dispatcher::new().on(|meta: RequestMeta, get: Get| async move {
            Ok(format!("{} {} {}", get.id, meta.version, meta.request_id))
        })
    }

    fn env(method: &str, version: Version, payload: Value) -> Envelope {
        Envelope::new(method, version, payload).with_request_id("req-1")
    }

    #[tokio::test]
    async fn routes_by_method_and_version() {
        let d = dispatcher();
        let reply = d.handle(env("get", Version::new(1, 1), json!({"id": 7})));
        assert_eq!(reply.await, Ok(json!("7 1.1 req-1")));
        let reply = d.handle(env("put", Version::new(1, 1), json!({})));
        assert_eq!(
            reply.await,
            Err(Fault::NoSuchMethod {
                method: "put".into()
            })
        );
        let reply = d.handle(env("get", Version::new(1, 3), json!({"id": 7})));
        assert_eq!(
            reply.await,
            Err(Fault::IncompatibleVersion {
                method: "get".into(),
                requested: Version::new(1, 3),
                supported: vec![Version::new(1, 2)],
            })
        );
        let reply = d.handle(env("get", Version::new(1, 0), json!({"id": "x"})));
        assert!(matches!(reply.await, Err(Fault::Remote { kind, .. }) if kind == Fault::MALFORMED));
    }

    #[test]
    fn same_major_replaces() {
        let d = dispatcher().on(|_meta: RequestMeta, _get: Get| async move { Ok(String::new()) });
        assert_eq!(d.methods(), [("get", Version::new(1, 2))]);
    }
}
