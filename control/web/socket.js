// The control WebSocket (signaling::events): hello, resume from the last
// handled seq after a drop, reconnect with capped, jittered back-off.
// Durable events go to onEvent in seq order; everything else (typing,
// presence, call signals, voice, reactions, errors) to onMessage.

const VERSION = 1;
const PING_MS = 25_000;
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 30_000;

export class EventSocket {
  constructor({ onEvent, onMessage, onResync, onState }) {
    this.onEvent = onEvent;
    this.onMessage = onMessage;
    this.onResync = onResync;
    this.onState = onState;
    this.ws = null;
    this.connectionId = null;
    this.lastSeq = null;
    this.attempt = 0;
    this.stopped = false;
    this.timer = null;
    this.pinger = null;
    this.nonce = 0;
  }

  start() {
    this.stopped = false;
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.pinger);
    this.ws?.close(1000);
    this.ws = null;
  }

  get connected() {
    return this.ws?.readyState === WebSocket.OPEN && this.helloDone;
  }

  send(msg) {
    if (!this.connected) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  open() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${proto}//${location.host}/api/v1/websocket`);
    this.ws = ws;
    this.helloDone = false;
    this.onState?.('connecting');
    ws.onopen = () => {
      const hello = { type: 'hello', version: VERSION };
      if (this.connectionId && this.lastSeq !== null) {
        hello.resume = { connection_id: this.connectionId, last_seq: this.lastSeq };
      }
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (e) => {
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch {
        return;
      }
      this.handle(msg);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      clearInterval(this.pinger);
      this.helloDone = false;
      if (this.stopped) return;
      this.onState?.('offline');
      const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
      this.attempt++;
      // Full jitter: a restarted node is not met by every client at once.
      this.timer = setTimeout(() => this.open(), Math.random() * cap + 100);
    };
  }

  handle(msg) {
    switch (msg.type) {
      case 'hello': {
        this.helloDone = true;
        this.attempt = 0;
        const resumed = msg.resumed;
        this.connectionId = msg.connection_id;
        // Not resumed: a first start, or a resync message follows.
        if (!resumed) this.lastSeq = msg.last_seq;
        clearInterval(this.pinger);
        this.pinger = setInterval(() => this.send({ type: 'ping', nonce: ++this.nonce }), PING_MS);
        this.onState?.('online');
        break;
      }
      case 'event':
        if (this.lastSeq !== null && msg.seq <= this.lastSeq) return;
        this.lastSeq = msg.seq;
        this.onEvent?.(msg.event, msg.seq);
        break;
      case 'resync':
        this.onResync?.();
        break;
      case 'closing':
        if (msg.reason === 'session_ended') {
          this.stop();
          this.onState?.('signed_out');
        }
        break;
      case 'pong':
        break;
      default:
        this.onMessage?.(msg);
    }
  }
}
