//! The rtcd inside this process (`rtcd.mode = "embedded"`, the default):
//! one binary, one command. It listens for control on a loopback port
//! chosen by the kernel, with a key made here, so nothing outside this
//! machine can drive it; the pool connects to it like to any node.

use std::net::SocketAddr;

use rand::Rng as _;
use signaling::CallId;

use super::RtcdConfig;

const PROBE_PREFIX: &str = "control-probe-";

pub(super) async fn start(
    config: &RtcdConfig,
    control_id: &str,
    api_key: &str,
) -> anyhow::Result<rtcd::Rtcd> {
    let mut c = rtcd::Config {
        node_id: format!("{control_id}-rtcd"),
        ..rtcd::Config::default()
    };
    c.rtc = config.media.clone();
    c.api.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    c.api.keys = vec![api_key.to_owned()];
    c.validate()
        .map_err(|e| anyhow::anyhow!("embedded media node: {}", e.join("; ")))?;
    rtcd::Rtcd::start(c)
        .await
        .map_err(|e| anyhow::anyhow!("embedded media node: {e:#}"))
}

pub(super) fn random_key() -> String {
    hex::encode(rand::rng().random::<[u8; 32]>())
}

/// A call id no one uses, for [`super::MediaNodes::request`]'s probe.
pub(super) fn probe_call_id() -> CallId {
    let id = format!(
        "{PROBE_PREFIX}{}",
        hex::encode(rand::rng().random::<[u8; 16]>())
    );
    CallId::new(id).expect("a valid call id")
}

pub(super) fn is_probe(call: &CallId) -> bool {
    call.as_str().starts_with(PROBE_PREFIX)
}
