//! Packet filter rules inside a test's private network namespace
//! ([`crate::netns`]), with nftables: drop UDP or TCP to a port, or the
//! datagrams of one UDP port in both directions, to show what a client
//! does when a network blocks media. Every rule counts what it dropped.
//!
//! Each [`Firewall`] is an nft table of its own, deleted on drop; rules
//! can be removed one by one while it lives. Only use it inside the
//! namespace: outside it, it would filter the machine's own traffic.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};

/// nft is installed (`apt-get install nftables`).
pub fn available() -> bool {
    Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// What a rule drops. Loopback traffic passes the input hook once per
/// packet, so a rule there sees both directions of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// UDP to this port (a server's media port).
    UdpTo(u16),
    /// TCP to this port (rtcd's ICE-TCP), refused with a reset.
    TcpTo(u16),
    /// UDP from or to this port (one client's media socket).
    UdpOf(u16),
}

impl Block {
    /// The matches of its rules (one rule each).
    fn matches(self) -> Vec<String> {
        match self {
            Block::UdpTo(p) => vec![format!("udp dport {p}")],
            Block::TcpTo(p) => vec![format!("tcp dport {p}")],
            Block::UdpOf(p) => vec![format!("udp sport {p}"), format!("udp dport {p}")],
        }
    }
}

pub struct Firewall {
    table: String,
}

impl Firewall {
    /// A new, empty table with an input chain that accepts by default.
    pub fn new() -> Result<Firewall> {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let table = format!(
            "enclave_test_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        nft(&format!(
            "add table inet {table} ; \
             add chain inet {table} input {{ type filter hook input priority 0 ; policy accept ; }}"
        ))?;
        Ok(Firewall { table })
    }

    /// Adds the rules that drop or refuse (and count) `what`.
    pub fn block(&self, what: Block) -> Result<()> {
        // TCP is refused with a reset, as most firewalls do, rather than
        // left to time out: a dropped SYN keeps a connect waiting for
        // minutes, which says nothing more about the client.
        let verdict = match what {
            Block::TcpTo(_) => "reject with tcp reset",
            Block::UdpTo(_) | Block::UdpOf(_) => "drop",
        };
        for m in what.matches() {
            nft(&format!(
                "add rule inet {} input {m} counter {verdict} comment \"{}\"",
                self.table,
                comment(what)
            ))?;
        }
        Ok(())
    }

    /// Removes the rules of `what` (added by [`Firewall::block`]).
    pub fn unblock(&self, what: Block) -> Result<()> {
        for handle in self.handles(what)? {
            nft(&format!(
                "delete rule inet {} input handle {handle}",
                self.table
            ))?;
        }
        Ok(())
    }

    /// Packets dropped so far by the rules of `what`.
    pub fn dropped(&self, what: Block) -> Result<u64> {
        let text = self.listing()?;
        let tag = format!("comment \"{}\"", comment(what));
        let mut n = 0;
        for line in text.lines().filter(|l| l.contains(&tag)) {
            if let Some(at) = line.find("counter packets ") {
                n += line[at + "counter packets ".len()..]
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        Ok(n)
    }

    fn listing(&self) -> Result<String> {
        let out = Command::new("nft")
            .args(["-a", "list", "table", "inet", &self.table])
            .output()
            .context("running nft")?;
        if !out.status.success() {
            bail!("nft list: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn handles(&self, what: Block) -> Result<Vec<u64>> {
        let tag = format!("comment \"{}\"", comment(what));
        Ok(self
            .listing()?
            .lines()
            .filter(|l| l.contains(&tag))
            .filter_map(|l| l.rsplit_once("# handle ")?.1.trim().parse().ok())
            .collect())
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        if let Err(e) = nft(&format!("delete table inet {}", self.table)) {
            eprintln!("firewall: removing table {}: {e:#}", self.table);
        }
    }
}

fn comment(what: Block) -> String {
    match what {
        Block::UdpTo(p) => format!("udp-to-{p}"),
        Block::TcpTo(p) => format!("tcp-to-{p}"),
        Block::UdpOf(p) => format!("udp-of-{p}"),
    }
}

fn nft(script: &str) -> Result<()> {
    let out = Command::new("nft")
        .arg(script)
        .output()
        .context("running nft (apt-get install nftables)")?;
    if !out.status.success() {
        bail!(
            "nft {script}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
