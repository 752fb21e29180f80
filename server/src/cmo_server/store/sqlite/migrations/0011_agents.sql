-- The agent registry: one row per agent instance (its status as last set, its lease), its
-- capabilities and topics beside it. Times are microseconds since the epoch, as everywhere here.
CREATE TABLE agents (
    namespace         TEXT    NOT NULL,
    agent_id          TEXT    NOT NULL,
    kind              TEXT    NOT NULL,
    name              TEXT    NOT NULL,
    version           TEXT    NOT NULL,
    metadata          TEXT    NOT NULL,
    status            INTEGER NOT NULL,
    status_reason     TEXT    NOT NULL,
    load              REAL    NOT NULL,
    lease_us          INTEGER NOT NULL,
    lease_id          TEXT    NOT NULL,
    lease_expires_at  INTEGER NOT NULL,
    registered_at     INTEGER NOT NULL,
    last_heartbeat_at INTEGER NOT NULL,
    last_poll_at      INTEGER,
    revision          INTEGER NOT NULL,
    changed_at        INTEGER NOT NULL,
    PRIMARY KEY (namespace, agent_id)
);
-- No index holds lease_expires_at, which every heartbeat moves, so that a beat writes no index
-- entry (the sweep for lapsed leases reads the table, once a second).
CREATE INDEX agents_by_kind ON agents (namespace, kind, agent_id);
CREATE INDEX agents_by_revision ON agents (revision);
CREATE INDEX agents_unavailable ON agents (changed_at) WHERE status = 4;

-- Discovery: the agents of a namespace that have a capability.
CREATE TABLE agent_capabilities (
    namespace  TEXT NOT NULL,
    capability TEXT NOT NULL,
    agent_id   TEXT NOT NULL,
    PRIMARY KEY (namespace, capability, agent_id),
    FOREIGN KEY (namespace, agent_id) REFERENCES agents (namespace, agent_id) ON DELETE CASCADE
);
CREATE INDEX agent_capabilities_of_agent ON agent_capabilities (namespace, agent_id);

CREATE TABLE agent_topics (
    namespace TEXT    NOT NULL,
    agent_id  TEXT    NOT NULL,
    topic     TEXT    NOT NULL,
    role      INTEGER NOT NULL,
    PRIMARY KEY (namespace, agent_id, topic, role),
    FOREIGN KEY (namespace, agent_id) REFERENCES agents (namespace, agent_id) ON DELETE CASCADE
);
