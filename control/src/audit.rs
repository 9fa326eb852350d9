//! The audit log: security-relevant actions as structured events on the
//! tracing target `audit`. The binary writes that target as JSON lines
//! (to its own file when `log.audit_file` is set), apart from the
//! operational log. Each record names the action, the actor, the client
//! address, the outcome and (from the subscriber) the time.

/// Who did it and from where.
#[derive(Debug, Clone, Default)]
pub struct Actor<'a> {
    /// The user's id, or empty when unknown (a failed login by name).
    pub user_id: &'a str,
    pub username: &'a str,
    pub ip: &'a str,
}

/// Records one audited action. `detail` is free text for people and must
/// never contain a secret.
pub fn record(action: &str, actor: &Actor<'_>, outcome: &str, detail: &str) {
    tracing::info!(
        target: "audit",
        action,
        actor_id = actor.user_id,
        actor = actor.username,
        ip = actor.ip,
        outcome,
        detail,
    );
}
