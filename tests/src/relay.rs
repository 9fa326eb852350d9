//! A TCP relay that can freeze: it forwards both ways until frozen, then
//! holds every byte without closing either side, like a node whose
//! machine hangs or whose network drops packets. Thawed, it delivers what
//! it held and forwards again. Plain threads, so any test can use it.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often a frozen pipe looks whether it may go on.
const THAW_POLL: Duration = Duration::from_millis(10);

pub struct FreezableRelay {
    /// Where clients connect instead of the target.
    pub addr: SocketAddr,
    frozen: Arc<AtomicBool>,
}

impl FreezableRelay {
    /// Listens on a loopback port and forwards each connection to `to`.
    pub fn start(to: SocketAddr) -> std::io::Result<FreezableRelay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let frozen = Arc::new(AtomicBool::new(false));
        let f = frozen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(to) else {
                    continue;
                };
                for (from, into) in [(&client, &server), (&server, &client)] {
                    let (Ok(from), Ok(into)) = (from.try_clone(), into.try_clone()) else {
                        continue;
                    };
                    let f = f.clone();
                    std::thread::spawn(move || pipe(from, into, f));
                }
            }
        });
        Ok(FreezableRelay { addr, frozen })
    }

    /// Holds every byte from now on, in both directions.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// Delivers what was held and forwards again.
    pub fn thaw(&self) {
        self.frozen.store(false, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut into: TcpStream, frozen: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while frozen.load(Ordering::SeqCst) {
            std::thread::sleep(THAW_POLL);
        }
        if into.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = into.shutdown(Shutdown::Write);
}
