// Browser-side helpers for the end-to-end tests, loaded by the pages in this
// folder as an ES module. run.mjs drives them with page.evaluate() through
// `window.enclave`. Everything here is standard WebRTC plus the WHIP
// (RFC 9725) and WHEP HTTP protocols, so the same page works against any
// compliant server; nothing is specific to Enclave.
//
// Peer connections are kept in a map under a name ("publisher", "player",
// "sender", ...) so that later calls (sample, close) can find them; every
// function returns plain JSON-serialisable data.

const sessions = new Map();

function log(...args) {
  console.log('[enclave]', ...args);
}

function session(name) {
  const s = sessions.get(name);
  if (!s) throw new Error(`no session named ${name}`);
  return s;
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Resolves true when gathering completes, false when `ms` passes first.
function iceGatheringComplete(pc, ms) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      pc.removeEventListener('icegatheringstatechange', check);
      resolve(false);
    }, ms);
    function check() {
      if (pc.iceGatheringState === 'complete') {
        clearTimeout(timer);
        pc.removeEventListener('icegatheringstatechange', check);
        resolve(true);
      }
    }
    pc.addEventListener('icegatheringstatechange', check);
  });
}

function connected(pc, ms, what) {
  const done = new Promise((resolve, reject) => {
    function check() {
      const st = pc.connectionState;
      if (st === 'connected') {
        pc.removeEventListener('connectionstatechange', check);
        resolve(st);
      } else if (st === 'failed' || st === 'closed') {
        pc.removeEventListener('connectionstatechange', check);
        reject(new Error(`${what}: connectionState became ${st} (ICE ${pc.iceConnectionState})`));
      }
    }
    pc.addEventListener('connectionstatechange', check);
    check();
  });
  return withTimeout(done, ms, `${what} to reach connectionState "connected" (now ${pc.connectionState}, ICE ${pc.iceConnectionState}, gathering ${pc.iceGatheringState})`);
}

function attachMedia(pc, label) {
  const box = document.getElementById('media') || document.body;
  pc.addEventListener('track', (ev) => {
    const el = document.createElement(ev.track.kind === 'video' ? 'video' : 'audio');
    el.autoplay = true;
    el.muted = true;
    el.playsInline = true;
    el.title = `${label} ${ev.track.kind}`;
    el.srcObject = ev.streams[0] || new MediaStream([ev.track]);
    box.appendChild(el);
  });
}

async function localMedia({ audio = true, video = true } = {}) {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio,
    video: video ? { width: 640, height: 480, frameRate: 20 } : false,
  });
  const box = document.getElementById('media') || document.body;
  if (video) {
    const el = document.createElement('video');
    el.autoplay = true;
    el.muted = true;
    el.playsInline = true;
    el.title = 'local';
    el.srcObject = stream;
    box.appendChild(el);
  }
  return stream;
}

function newPeerConnection() {
  // No iceServers: on the test network only host candidates exist, and no
  // STUN/TURN request may leave the machine.
  return new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle' });
}

// --- statistics ----------------------------------------------------------------

// One snapshot of a peer connection's statistics, summed per media kind
// (several inbound streams of a kind are added up; `streams` counts them).
export async function sample(name) {
  const { pc } = session(name);
  const report = await pc.getStats();
  const byId = new Map();
  report.forEach((s) => byId.set(s.id, s));
  const inbound = { audio: null, video: null };
  const outbound = { audio: null, video: null };
  let pairId = null;
  for (const s of byId.values()) {
    const kind = s.kind || s.mediaType;
    if (s.type === 'inbound-rtp' && (kind === 'audio' || kind === 'video')) {
      const a = inbound[kind] || (inbound[kind] = { streams: 0, packets_received: 0, bytes_received: 0, packets_lost: 0, codec: null });
      a.streams += 1;
      a.packets_received += s.packetsReceived || 0;
      a.bytes_received += s.bytesReceived || 0;
      a.packets_lost += s.packetsLost || 0;
      a.codec = a.codec || byId.get(s.codecId)?.mimeType || null;
      if (kind === 'video') {
        a.frames_decoded = (a.frames_decoded || 0) + (s.framesDecoded || 0);
        a.key_frames_decoded = (a.key_frames_decoded || 0) + (s.keyFramesDecoded || 0);
        a.frame_width = s.frameWidth ?? a.frame_width ?? null;
        a.frame_height = s.frameHeight ?? a.frame_height ?? null;
      }
    } else if (s.type === 'outbound-rtp' && (kind === 'audio' || kind === 'video')) {
      const a = outbound[kind] || (outbound[kind] = { streams: 0, packets_sent: 0, bytes_sent: 0, codec: null });
      a.streams += 1;
      a.packets_sent += s.packetsSent || 0;
      a.bytes_sent += s.bytesSent || 0;
      a.codec = a.codec || byId.get(s.codecId)?.mimeType || null;
      if (kind === 'video') a.frames_encoded = (a.frames_encoded || 0) + (s.framesEncoded || 0);
    } else if (s.type === 'transport' && s.selectedCandidatePairId) {
      pairId = s.selectedCandidatePairId;
    }
  }
  if (!pairId) {
    for (const s of byId.values()) {
      if (s.type === 'candidate-pair' && (s.selected || (s.nominated && s.state === 'succeeded'))) pairId = s.id;
    }
  }
  let candidate_pair = null;
  const pair = pairId && byId.get(pairId);
  if (pair) {
    const l = byId.get(pair.localCandidateId) || {};
    const r = byId.get(pair.remoteCandidateId) || {};
    candidate_pair = {
      protocol: l.protocol ?? null,
      local: `${l.address ?? l.ip}:${l.port}`,
      local_type: l.candidateType ?? null,
      local_tcp_type: l.tcpType ?? null,
      remote: `${r.address ?? r.ip}:${r.port}`,
      remote_type: r.candidateType ?? null,
      state: pair.state ?? null,
      rtt_ms: pair.currentRoundTripTime != null ? pair.currentRoundTripTime * 1000 : null,
    };
  }
  return {
    t_ms: Math.round(performance.now()),
    connection_state: pc.connectionState,
    ice_connection_state: pc.iceConnectionState,
    audio: inbound.audio,
    video: inbound.video,
    outbound,
    candidate_pair,
  };
}

export function state(name) {
  const { pc } = session(name);
  return { connection_state: pc.connectionState, ice_connection_state: pc.iceConnectionState, ice_gathering_state: pc.iceGatheringState };
}

export async function waitConnected(name, timeoutMs = 15000) {
  const { pc } = session(name);
  return connected(pc, timeoutMs, name);
}

// --- two peer connections in one page (no server) ------------------------------

// pc "sender" sends the fake camera and microphone to pc "receiver"; the
// candidates are handed over directly. Proves the browser, its flags and
// the network namespace.
export async function loopback({ audio = true, video = true, timeoutMs = 15000 } = {}) {
  const sender = newPeerConnection();
  const receiver = newPeerConnection();
  sessions.set('sender', { pc: sender });
  sessions.set('receiver', { pc: receiver });
  attachMedia(receiver, 'receiver');
  const candidates = { sender: [], receiver: [] };
  sender.onicecandidate = (e) => {
    if (e.candidate) {
      candidates.sender.push(e.candidate.candidate);
      receiver.addIceCandidate(e.candidate).catch((err) => log('receiver addIceCandidate', err));
    }
  };
  receiver.onicecandidate = (e) => {
    if (e.candidate) {
      candidates.receiver.push(e.candidate.candidate);
      sender.addIceCandidate(e.candidate).catch((err) => log('sender addIceCandidate', err));
    }
  };
  const stream = await localMedia({ audio, video });
  for (const track of stream.getTracks()) sender.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
  await sender.setLocalDescription(await sender.createOffer());
  await receiver.setRemoteDescription(sender.localDescription);
  await receiver.setLocalDescription(await receiver.createAnswer());
  await sender.setRemoteDescription(receiver.localDescription);
  await Promise.all([connected(sender, timeoutMs, 'sender'), connected(receiver, timeoutMs, 'receiver')]);
  return { candidates };
}

// --- SDP relayed by the test driver (two pages or two browsers) ---------------

// Creates a sendonly (role "send") or recvonly (role "recv") offer and
// returns it once ICE gathering is complete (no trickle).
export async function relayOffer(name, { role = 'send', audio = true, video = true, gatherTimeoutMs = 5000 } = {}) {
  const pc = newPeerConnection();
  sessions.set(name, { pc });
  attachMedia(pc, name);
  if (role === 'send') {
    const stream = await localMedia({ audio, video });
    for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
  } else {
    if (audio) pc.addTransceiver('audio', { direction: 'recvonly' });
    if (video) pc.addTransceiver('video', { direction: 'recvonly' });
  }
  await pc.setLocalDescription(await pc.createOffer());
  await iceGatheringComplete(pc, gatherTimeoutMs);
  return pc.localDescription.sdp;
}

// Answers a relayed offer (receiving what it offers) and returns the answer
// once ICE gathering is complete.
export async function relayAnswer(name, offerSdp, { gatherTimeoutMs = 5000 } = {}) {
  const pc = newPeerConnection();
  sessions.set(name, { pc });
  attachMedia(pc, name);
  await pc.setRemoteDescription({ type: 'offer', sdp: offerSdp });
  await pc.setLocalDescription(await pc.createAnswer());
  await iceGatheringComplete(pc, gatherTimeoutMs);
  return pc.localDescription.sdp;
}

export async function relayAccept(name, answerSdp) {
  const { pc } = session(name);
  await pc.setRemoteDescription({ type: 'answer', sdp: answerSdp });
  return true;
}

// --- WHIP (RFC 9725) and WHEP ----------------------------------------------------

function sdpAttr(sdp, attr) {
  const m = sdp.match(new RegExp(`^a=${attr}:(.*)$`, 'm'));
  return m ? m[1].trim() : null;
}

// An application/trickle-ice-sdpfrag body (RFC 8840) for some candidates,
// grouped by the media section (mid) they belong to.
function sdpFrag(pc, candidates, endOfCandidates) {
  const local = pc.localDescription.sdp;
  const lines = [`a=ice-ufrag:${sdpAttr(local, 'ice-ufrag')}`, `a=ice-pwd:${sdpAttr(local, 'ice-pwd')}`];
  const byMid = new Map();
  for (const c of candidates) {
    const mid = c.sdpMid ?? '0';
    if (!byMid.has(mid)) byMid.set(mid, []);
    byMid.get(mid).push(c.candidate);
  }
  if (byMid.size === 0) {
    const first = pc.getTransceivers().find((t) => t.mid != null);
    byMid.set(first ? first.mid : '0', []);
  }
  for (const [mid, cands] of byMid) {
    const t = pc.getTransceivers().find((x) => x.mid === mid);
    const kind = t ? t.receiver.track.kind : 'audio';
    lines.push(`m=${kind} 9 UDP/TLS/RTP/SAVPF 0`, `a=mid:${mid}`);
    for (const c of cands) lines.push(`a=${c}`);
    if (endOfCandidates) lines.push('a=end-of-candidates');
  }
  return lines.join('\r\n') + '\r\n';
}

async function httpCall(url, init, what) {
  try {
    return await fetch(url, { ...init, mode: 'cors', cache: 'no-store', redirect: 'follow' });
  } catch (err) {
    // fetch() rejects without a status when the network fails or a CORS
    // check (preflight or response) does not pass.
    throw new Error(`${what} ${url} failed before any status (network or CORS: the server must answer the preflight and allow Authorization/Content-Type/If-Match): ${err.message}`);
  }
}

// Publishes (WHIP, role "publish": sendonly fake camera + microphone) or
// plays (WHEP, role "play": recvonly audio + video) against `endpoint`.
// trickle "none": the offer carries all candidates (waits for gathering).
// trickle "patch": the offer is sent without candidates and they follow in
// PATCH requests to the session resource; a 405 or 501 answer means the
// server does not take trickled candidates, which RFC 9725 allows.
// trickle "omit": the offer is sent without candidates and none follow, so
// only an ICE-lite server that learns addresses from checks can connect.
export async function whipStart(name, { endpoint, token, role, trickle = 'none', audio = true, video = true, gatherTimeoutMs = 5000 }) {
  const pc = newPeerConnection();
  const info = {
    endpoint,
    role,
    trickle,
    post_status: null,
    location: null,
    etag: null,
    answer_content_type: null,
    offer_candidates: 0,
    answer_candidates: 0,
    gathering_complete: null,
    patch_statuses: [],
    patch_unsupported: false,
    patch_error: null,
    delete_status: null,
  };
  const s = { pc, info, token, resource: null, pending: [], ended: false, chain: Promise.resolve() };
  sessions.set(name, s);
  attachMedia(pc, name);

  if (role === 'publish') {
    const stream = await localMedia({ audio, video });
    for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
  } else if (role === 'play') {
    if (audio) pc.addTransceiver('audio', { direction: 'recvonly' });
    if (video) pc.addTransceiver('video', { direction: 'recvonly' });
  } else {
    throw new Error(`unknown role ${role}`);
  }

  pc.onicecandidate = (e) => {
    if (trickle !== 'patch') return;
    if (e.candidate && e.candidate.candidate) s.pending.push(e.candidate);
    else if (!e.candidate) s.ended = true;
    flushCandidates(s);
  };

  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  let sdp;
  if (trickle === 'patch' || trickle === 'omit') {
    sdp = offer.sdp; // no candidates yet: they go in PATCH requests, or nowhere
  } else {
    info.gathering_complete = await iceGatheringComplete(pc, gatherTimeoutMs);
    sdp = pc.localDescription.sdp;
  }
  info.offer_candidates = (sdp.match(/^a=candidate:/gm) || []).length;

  const headers = { 'Content-Type': 'application/sdp' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const resp = await httpCall(endpoint, { method: 'POST', headers, body: sdp }, 'POST');
  info.post_status = resp.status;
  const body = await resp.text();
  if (resp.status !== 201) {
    throw new Error(`POST ${endpoint}: expected 201 Created, got ${resp.status}: ${body.slice(0, 300)}`);
  }
  const location = resp.headers.get('Location');
  if (!location) {
    throw new Error(`POST ${endpoint}: 201 without a readable Location header (the server must send Location and list it in Access-Control-Expose-Headers)`);
  }
  info.location = location;
  info.etag = resp.headers.get('ETag');
  info.answer_content_type = resp.headers.get('Content-Type');
  s.resource = new URL(location, endpoint).href;
  info.answer_candidates = (body.match(/^a=candidate:/gm) || []).length;
  await pc.setRemoteDescription({ type: 'answer', sdp: body });
  flushCandidates(s);
  return info;
}

function flushCandidates(s) {
  if (!s.resource || s.info.patch_unsupported || s.info.patch_error) return;
  if (s.pending.length === 0 && !s.ended) return;
  const batch = s.pending.splice(0);
  const end = s.ended;
  if (end) s.ended = false; // send end-of-candidates once
  s.chain = s.chain.then(async () => {
    if (s.info.patch_unsupported || s.info.patch_error) return;
    const headers = { 'Content-Type': 'application/trickle-ice-sdpfrag' };
    if (s.token) headers.Authorization = `Bearer ${s.token}`;
    if (s.info.etag) headers['If-Match'] = s.info.etag;
    try {
      const resp = await httpCall(s.resource, { method: 'PATCH', headers, body: sdpFrag(s.pc, batch, end) }, 'PATCH');
      s.info.patch_statuses.push(resp.status);
      if (resp.status === 405 || resp.status === 501) {
        s.info.patch_unsupported = true;
      } else if (resp.status !== 204 && resp.status !== 200) {
        s.info.patch_error = `PATCH ${s.resource}: ${resp.status} ${(await resp.text()).slice(0, 200)}`;
      }
    } catch (err) {
      s.info.patch_error = err.message;
    }
  });
}

// Waits for queued PATCH requests (after gathering ends, or `ms`).
export async function whipSettle(name, ms = 5000) {
  const s = session(name);
  if (s.info.trickle === 'patch') {
    await iceGatheringComplete(s.pc, ms);
    flushCandidates(s);
    await withTimeout(s.chain, ms, `${name}: PATCH requests`);
  }
  return s.info;
}

// Ends the session: DELETE on the resource (status recorded), then closes
// the peer connection.
export async function whipStop(name) {
  const s = session(name);
  if (s.resource) {
    const headers = {};
    if (s.token) headers.Authorization = `Bearer ${s.token}`;
    try {
      const resp = await httpCall(s.resource, { method: 'DELETE', headers }, 'DELETE');
      s.info.delete_status = resp.status;
    } catch (err) {
      s.info.delete_status = null;
      s.info.delete_error = err.message;
    }
  }
  s.pc.close();
  return s.info;
}

export function info(name) {
  return session(name).info ?? null;
}

export function close(name) {
  const s = sessions.get(name);
  if (s) s.pc.close();
  return true;
}
