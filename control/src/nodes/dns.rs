//! `rtcd.dns`: every A and AAAA record of one name is a node. The name is
//! resolved again periodically so nodes can be added and removed without
//! touching control.

use std::net::SocketAddr;

use super::NodeKey;

/// `host:port` or `[v6]:port`.
pub fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty() && !host.contains(['/', ' '])).then_some((host, port))
}

/// The node key of one resolved address.
pub fn key_of(addr: SocketAddr) -> NodeKey {
    format!("http://{addr}")
}

/// All addresses `name` (`host:port`) resolves to, as node keys, sorted
/// and without duplicates.
pub async fn resolve(name: &str) -> std::io::Result<Vec<NodeKey>> {
    let Some((host, port)) = split_host_port(name) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{name:?} is not host:port"),
        ));
    };
    let mut keys: Vec<NodeKey> = tokio::net::lookup_host((host, port))
        .await?
        .map(key_of)
        .collect();
    keys.sort();
    keys.dedup();
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_are_split() {
        assert_eq!(
            split_host_port("rtcd.internal:8045"),
            Some(("rtcd.internal", 8045))
        );
        assert_eq!(split_host_port("[::1]:8045"), Some(("::1", 8045)));
        assert_eq!(split_host_port("rtcd.internal"), None);
        assert_eq!(split_host_port("rtcd.internal:0"), None);
        assert_eq!(split_host_port(":8045"), None);
        assert_eq!(split_host_port("http://x:1"), None);
    }

    #[test]
    fn v6_keys_carry_brackets() {
        assert_eq!(key_of("[::1]:8045".parse().unwrap()), "http://[::1]:8045");
        assert_eq!(
            key_of("10.0.0.5:8045".parse().unwrap()),
            "http://10.0.0.5:8045"
        );
    }
}
