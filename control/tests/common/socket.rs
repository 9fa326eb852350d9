//! A client's control WebSocket in tests: opened as a user over a real
//! socket, past the hello exchange.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::TestUser;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A socket as `who` on the server at `addr`, past its hello.
pub async fn connect(addr: SocketAddr, who: &TestUser) -> Ws {
    let mut req = format!("ws://{addr}/api/v1/websocket")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", who.token).parse().unwrap(),
    );
    let mut ws = tokio_tungstenite::connect_async(req).await.unwrap().0;
    send(&mut ws, json!({"type": "hello", "version": 1})).await;
    let h = read(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(h["type"], "hello", "{h}");
    ws
}

pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next text message, as JSON; panics after `within`.
pub async fn read(ws: &mut Ws, within: Duration) -> Value {
    loop {
        let msg = tokio::time::timeout(within, ws.next())
            .await
            .expect("a message in time")
            .expect("socket open")
            .expect("no socket error");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}
