//! Network agents (`/v2.0/agents`): each host's agents register themselves and send
//! heartbeats; admins list, show, disable and delete them. What the Linux bridge agents report
//! (their VXLAN endpoint, their host namespace) is also how ports are bound and tunnels built
//! across hosts.

use common::auth::AuthContext;
use serde_json::{Map, Value};

use super::NetworkService;
use super::attrs::{check_keys, to_bool, to_string};
use crate::error::{NetError, Result};
use crate::model::{Agent, agent_now};
use crate::store;

pub const AGENT: &str = "agent";

/// The kinds of agent kumo runs, as Neutron names them (type, binary, topic, zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentKind {
    LinuxBridge,
    Dhcp,
    L3,
    Metadata,
}

impl AgentKind {
    pub fn agent_type(self) -> &'static str {
        match self {
            AgentKind::LinuxBridge => "Linux bridge agent",
            AgentKind::Dhcp => "DHCP agent",
            AgentKind::L3 => "L3 agent",
            AgentKind::Metadata => "Metadata agent",
        }
    }
    fn binary(self) -> &'static str {
        match self {
            AgentKind::LinuxBridge => "neutron-linuxbridge-agent",
            AgentKind::Dhcp => "neutron-dhcp-agent",
            AgentKind::L3 => "neutron-l3-agent",
            AgentKind::Metadata => "neutron-metadata-agent",
        }
    }
    fn topic(self) -> &'static str {
        match self {
            AgentKind::Dhcp => "dhcp_agent",
            AgentKind::L3 => "l3_agent",
            AgentKind::LinuxBridge | AgentKind::Metadata => "N/A",
        }
    }
    /// DHCP and L3 agents are scheduled by zone in Neutron; the others have none.
    fn availability_zone(self) -> Option<String> {
        matches!(self, AgentKind::Dhcp | AgentKind::L3).then(|| "nova".to_string())
    }
}

/// What an agent says in a heartbeat.
#[derive(Debug, Clone)]
pub struct AgentReport {
    pub kind: AgentKind,
    pub host: String,
    pub configurations: Value,
}

/// The keys of an agent (filters, sorting, `fields=`).
pub const AGENT_KEYS: &[&str] = &[
    "id",
    "agent_type",
    "binary",
    "topic",
    "host",
    "admin_state_up",
    "alive",
    "description",
    "availability_zone",
    "configurations",
    "created_at",
    "started_at",
    "heartbeat_timestamp",
    "resources_synced",
];
const AGENT_PUT: &[&str] = &["admin_state_up", "description"];

/// What of an agent's configuration other hosts' data planes depend on.
fn data_plane_facts(c: &Value) -> (Option<&Value>, Option<&Value>) {
    (c.get("tunneling_ip"), c.get("namespace"))
}

pub fn agent_not_found(id: &str) -> NetError {
    NetError::new(
        http::StatusCode::NOT_FOUND,
        "AgentNotFound",
        format!("Agent {id} could not be found."),
    )
}

impl NetworkService {
    /// Register the agent or record its heartbeat. `starting`: the first report of this
    /// process (`started_at`). A new agent, or one whose configuration changed, may change
    /// other hosts' data planes (its tunnel endpoint): the agents are told.
    pub async fn report_agent(&self, r: &AgentReport, starting: bool) -> Result<()> {
        let w = self.write().await?;
        let now = agent_now();
        let agents: Vec<Agent> = super::read_all(&*w, AGENT).await?;
        let existing = agents
            .into_iter()
            .find(|a| a.host == r.host && a.agent_type == r.kind.agent_type());
        let changed = match existing {
            Some(mut a) => {
                let changed =
                    data_plane_facts(&a.configurations) != data_plane_facts(&r.configurations);
                a.configurations = r.configurations.clone();
                a.heartbeat_timestamp = now.clone();
                if starting {
                    a.started_at = now;
                }
                store::update(&*w, &a.id, serde_json::to_string(&a)?).await?;
                changed
            }
            None => {
                let a = Agent {
                    id: uuid::Uuid::new_v4().to_string(),
                    agent_type: r.kind.agent_type().into(),
                    binary: r.kind.binary().into(),
                    topic: r.kind.topic().into(),
                    host: r.host.clone(),
                    admin_state_up: true,
                    description: None,
                    availability_zone: r.kind.availability_zone(),
                    configurations: r.configurations.clone(),
                    created_at: now.clone(),
                    started_at: now.clone(),
                    heartbeat_timestamp: now,
                };
                tracing::info!(agent = %a.id, agent_type = %a.agent_type, host = %a.host, "network agent registered");
                store::insert(
                    &*w,
                    store::NewRow {
                        kind: AGENT,
                        id: &a.id,
                        project_id: "",
                        parent_id: None,
                        created_at: &a.created_at,
                        body: serde_json::to_string(&a)?,
                    },
                )
                .await?;
                true
            }
        };
        w.commit().await?;
        if changed {
            self.changed();
        }
        Ok(())
    }

    /// Every registered agent (for the data plane: tunnel endpoints, namespaces).
    pub async fn agents(&self) -> Result<Vec<Agent>> {
        super::read_all(self.db.conn(), AGENT).await
    }

    /// The host namespace the Linux bridge agent of `host` builds its bridges in, if that
    /// host's agent said (a port bound there gets it in its `binding:vif_details`).
    pub(crate) async fn host_namespace_of<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        host: &str,
    ) -> Result<Option<String>> {
        if host.is_empty() {
            return Ok(None);
        }
        let agents: Vec<Agent> = super::read_all(c, AGENT).await?;
        Ok(agents
            .iter()
            .find(|a| a.host == host && a.agent_type == AgentKind::LinuxBridge.agent_type())
            .and_then(|a| a.configurations.get("namespace")?.as_str())
            .map(str::to_string))
    }

    fn agent_readable(&self, ctx: &AuthContext) -> bool {
        self.allowed(ctx, "get_agent", &serde_json::json!({}))
    }

    async fn lookup_agent<C: sea_orm::ConnectionTrait>(
        &self,
        c: &C,
        ctx: &AuthContext,
        id: &str,
    ) -> Result<Agent> {
        match super::read::<Agent, _>(c, AGENT, id).await? {
            Some(a) if self.agent_readable(ctx) => Ok(a),
            _ => Err(agent_not_found(id)),
        }
    }

    /// `GET /agents`: admins see every agent; others none (Neutron filters what policy hides).
    pub async fn list_agents(&self, ctx: &AuthContext) -> Result<Vec<Value>> {
        if !self.agent_readable(ctx) {
            return Ok(vec![]);
        }
        let down = self.cfg.agent_down_time;
        Ok(self
            .agents()
            .await?
            .iter()
            .map(|a| a.render(down))
            .collect())
    }

    pub async fn get_agent(&self, ctx: &AuthContext, id: &str) -> Result<Value> {
        let a = self.lookup_agent(self.db.conn(), ctx, id).await?;
        Ok(a.render(self.cfg.agent_down_time))
    }

    /// Agents are made by their hosts, never through the API (Neutron has no create).
    pub async fn create_agents(
        &self,
        _ctx: &AuthContext,
        _bodies: &[&Map<String, Value>],
    ) -> Result<Vec<Value>> {
        Err(NetError::new(
            http::StatusCode::METHOD_NOT_ALLOWED,
            "HTTPMethodNotAllowed",
            "Agents register themselves when their host's kumo starts (kumo serve network-agent or compute); they cannot be created through the API.",
        ))
    }

    /// `PUT /agents/{id}`: `admin_state_up` and `description`.
    pub async fn update_agent(
        &self,
        ctx: &AuthContext,
        id: &str,
        body: &Map<String, Value>,
        _if_match: Option<u64>,
    ) -> Result<Value> {
        check_keys(body, AGENT_KEYS, AGENT_PUT, true)?;
        let w = self.write().await?;
        let mut a = self.lookup_agent(&*w, ctx, id).await?;
        self.authorize(ctx, "update_agent", &[], &serde_json::json!({}))?;
        for (k, v) in body {
            match k.as_str() {
                "admin_state_up" => a.admin_state_up = to_bool(k, v)?,
                "description" => {
                    a.description = match v {
                        Value::Null => None,
                        v => Some(to_string(k, v, 255)?),
                    }
                }
                _ => {}
            }
        }
        store::update(&*w, &a.id, serde_json::to_string(&a)?).await?;
        w.commit().await?;
        Ok(a.render(self.cfg.agent_down_time))
    }

    /// `DELETE /agents/{id}`: a host taken out of service. A live agent registers again at
    /// its next heartbeat, as in Neutron.
    pub async fn delete_agent(
        &self,
        ctx: &AuthContext,
        id: &str,
        _if_match: Option<u64>,
    ) -> Result<()> {
        let w = self.write().await?;
        let a = self.lookup_agent(&*w, ctx, id).await?;
        self.authorize(ctx, "delete_agent", &[], &serde_json::json!({}))?;
        store::delete(&*w, &a.id).await?;
        w.commit().await?;
        tracing::info!(agent = %a.id, host = %a.host, agent_type = %a.agent_type, "network agent deleted");
        self.changed();
        Ok(())
    }
}
