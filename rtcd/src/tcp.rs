//! ICE-TCP (RFC 6544, passive) on the same port number as UDP, for
//! networks that block UDP. Frames are RFC 4571: a 16-bit length, then
//! the datagram. Each connection is handed to the worker that owns its
//! session, named by the ufrag of its first STUN request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rtcd_core::{Protocol, stun_username_ufrag, ufrag_worker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::worker::{WorkerHandle, WorkerMsg};

/// Frames queued towards one TCP peer before new ones are dropped.
const PEER_QUEUE: usize = 1024;
/// A connection must present a STUN request this soon.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Most concurrent ICE-TCP connections.
pub const MAX_CONNECTIONS: usize = 20_000;

/// Where the workers' TCP transmits go: one queue per connected peer.
#[derive(Default)]
pub struct TcpRegistry {
    peers: Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>,
}

impl TcpRegistry {
    /// Queues a datagram for a TCP peer; false when it is gone or too slow.
    pub fn send(&self, peer: SocketAddr, datagram: &[u8]) -> bool {
        let Ok(len) = u16::try_from(datagram.len()) else {
            return false;
        };
        let Some(tx) = self.peers.lock().ok().and_then(|p| p.get(&peer).cloned()) else {
            return false;
        };
        let mut frame = Vec::with_capacity(2 + datagram.len());
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(datagram);
        tx.try_send(frame).is_ok()
    }

    fn insert(&self, peer: SocketAddr, tx: mpsc::Sender<Vec<u8>>) -> bool {
        let Ok(mut p) = self.peers.lock() else {
            return false;
        };
        if p.len() >= MAX_CONNECTIONS {
            return false;
        }
        p.insert(peer, tx);
        true
    }

    fn remove(&self, peer: &SocketAddr) {
        if let Ok(mut p) = self.peers.lock() {
            p.remove(peer);
        }
    }

    pub fn len(&self) -> usize {
        self.peers.lock().map_or(0, |p| p.len())
    }
}

pub async fn serve(listener: TcpListener, registry: Arc<TcpRegistry>, workers: Vec<WorkerHandle>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let registry = registry.clone();
        let workers = workers.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, peer, &registry, &workers).await {
                tracing::debug!(%peer, error = %e, "ICE-TCP connection closed");
            }
            registry.remove(&peer);
        });
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    registry: &TcpRegistry,
    workers: &[WorkerHandle],
) -> std::io::Result<()> {
    let local = stream.local_addr()?;
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(PEER_QUEUE);
    if !registry.insert(peer, tx) {
        return Err(std::io::Error::other("too many ICE-TCP connections"));
    }
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if wr.write_all(&frame).await.is_err() {
                break;
            }
        }
    });
    let mut owner: Option<usize> = None;
    let mut buf = vec![0u8; rtcd_core::MAX_DATAGRAM];
    let result = loop {
        let mut len = [0u8; 2];
        let read = rd.read_exact(&mut len);
        let r = if owner.is_none() {
            match tokio::time::timeout(FIRST_FRAME_TIMEOUT, read).await {
                Ok(r) => r,
                Err(_) => break Err(std::io::Error::other("no STUN request in time")),
            }
        } else {
            read.await
        };
        if let Err(e) = r {
            break Err(e);
        }
        let n = u16::from_be_bytes(len) as usize;
        if n > buf.len() {
            break Err(std::io::Error::other(format!(
                "frame of {n} bytes is too large"
            )));
        }
        if let Err(e) = rd.read_exact(&mut buf[..n]).await {
            break Err(e);
        }
        let frame = &buf[..n];
        if owner.is_none() {
            owner = stun_username_ufrag(frame)
                .and_then(ufrag_worker)
                .map(usize::from)
                .filter(|w| *w < workers.len());
            if owner.is_none() {
                break Err(std::io::Error::other(
                    "first frame is not STUN for a session here",
                ));
            }
        }
        let w = owner.expect("set above");
        let msg = WorkerMsg::Datagram {
            proto: Protocol::Tcp,
            source: peer,
            destination: local,
            contents: frame.to_vec(),
        };
        // A full mailbox drops the frame, as a congested UDP path would.
        let _ = workers[w].send(msg);
    };
    writer.abort();
    result
}
