// The media end of reference-server.mjs: a one-call-per-id "SFU" made of
// browser peer connections. WHIP sessions receive tracks; WHEP sessions
// send the tracks published on the same call (Chromium re-encodes them).
// Test fixture only: it lets the WHIP/WHEP client pages be checked against
// a known-good server that speaks the same protocols as rtcd.

const sessions = new Map(); // id -> { pc, call, role }
const published = new Map(); // call -> MediaStreamTrack[]
const sinks = new Map(); // id -> audio element playing a published track

function gathered(pc, ms = 5000) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') {
        clearTimeout(t);
        resolve();
      }
    });
  });
}

function newPc() {
  return new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle' });
}

export async function ingest(id, call, offer) {
  const pc = newPc();
  sessions.set(id, { pc, call, role: 'whip' });
  const tracks = [];
  published.set(call, tracks);
  pc.ontrack = (e) => {
    tracks.push(e.track);
    // Chromium only pulls audio out of a remote track (and so only
    // forwards it) while something plays it.
    if (e.track.kind === 'audio') {
      const el = new Audio();
      el.muted = true;
      el.srcObject = new MediaStream([e.track]);
      el.play().catch(() => {});
      sinks.set(id, el);
    }
  };
  await pc.setRemoteDescription({ type: 'offer', sdp: offer });
  await pc.setLocalDescription(await pc.createAnswer());
  await gathered(pc);
  return pc.localDescription.sdp;
}

export async function egress(id, call, offer) {
  const tracks = published.get(call);
  if (!tracks) return null;
  const pc = newPc();
  sessions.set(id, { pc, call, role: 'whep' });
  await pc.setRemoteDescription({ type: 'offer', sdp: offer });
  for (const t of pc.getTransceivers()) {
    const kind = t.receiver.track.kind;
    const track = tracks.find((x) => x.kind === kind);
    if (track) {
      t.direction = 'sendonly';
      await t.sender.replaceTrack(track);
    } else {
      t.direction = 'inactive';
    }
  }
  await pc.setLocalDescription(await pc.createAnswer());
  await gathered(pc);
  return pc.localDescription.sdp;
}

// Applies an application/trickle-ice-sdpfrag body (RFC 8840). Returns the
// number of candidates added, or -1 when the ICE ufrag does not match
// (RFC 9725 wants an ICE restart then, which this fixture does not do).
export async function trickle(id, frag) {
  const s = sessions.get(id);
  if (!s) return null;
  const remoteUfrag = (s.pc.remoteDescription.sdp.match(/^a=ice-ufrag:(.*)$/m) || [])[1]?.trim();
  let mid = null;
  let ufrag = null;
  let added = 0;
  for (const raw of frag.split(/\r?\n/)) {
    const line = raw.trim();
    if (line.startsWith('a=ice-ufrag:')) ufrag = line.slice(12);
    else if (line.startsWith('a=mid:')) mid = line.slice(6);
    else if (line.startsWith('a=candidate:')) {
      if (ufrag && remoteUfrag && ufrag !== remoteUfrag) return -1;
      await s.pc.addIceCandidate({ candidate: line.slice(2), sdpMid: mid ?? '0' });
      added += 1;
    }
  }
  return added;
}

export function remove(id) {
  const s = sessions.get(id);
  if (!s) return false;
  s.pc.close();
  sessions.delete(id);
  sinks.get(id)?.pause();
  sinks.delete(id);
  if (s.role === 'whip') published.delete(s.call);
  return true;
}
