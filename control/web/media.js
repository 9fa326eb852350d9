// Media helpers for a call: local devices, the remote track map read from
// rtcd's offers, and connection quality from getStats().

// rtcd names what it sends in each m-line: `a=msid:<publisher session>
// <publisher session>-<source>`. Returns mid -> { session, source }.
export function remoteTracks(sdp) {
  const out = new Map();
  let mid = null;
  for (const line of sdp.split(/\r?\n/)) {
    if (line.startsWith('m=')) mid = null;
    else if (line.startsWith('a=mid:')) mid = line.slice(6).trim();
    else if (line.startsWith('a=msid:') && mid !== null) {
      const [stream, track] = line.slice(7).trim().split(/\s+/);
      if (!stream || stream === '-' || !track) continue;
      const source = track.startsWith(`${stream}-`) ? track.slice(stream.length + 1) : track;
      out.set(mid, { session: stream, source });
    }
  }
  return out;
}

export async function openMicrophone(deviceId) {
  const audio = deviceId ? { deviceId: { exact: deviceId } } : true;
  const s = await navigator.mediaDevices.getUserMedia({ audio });
  return s.getAudioTracks()[0];
}

export async function openCamera(deviceId) {
  const base = { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24 } };
  const video = deviceId ? { ...base, deviceId: { exact: deviceId } } : base;
  const s = await navigator.mediaDevices.getUserMedia({ video });
  return s.getVideoTracks()[0];
}

// A screen, window or tab. Where the browser cannot capture one (some
// headless or embedded browsers), the error says so and the share stays off.
export async function openScreen() {
  const s = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false });
  return s.getVideoTracks()[0];
}

export async function devices() {
  const all = await navigator.mediaDevices.enumerateDevices();
  return {
    microphones: all.filter((d) => d.kind === 'audioinput'),
    cameras: all.filter((d) => d.kind === 'videoinput'),
  };
}

const GOOD = { rtt: 0.15, loss: 0.02 };
const FAIR = { rtt: 0.4, loss: 0.08 };

// Reads a peer connection's stats; `prev` is the last reading, for loss
// over the interval rather than since the start. `protocol` is the
// selected candidate pair's transport (udp or tcp), null before one is.
export async function quality(pc, prev) {
  const report = await pc.getStats();
  let rtt = null;
  let received = 0;
  let lost = 0;
  const inbound = [];
  let pairId = null;
  report.forEach((s) => {
    if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
  });
  // The transport of the pair in use: udp, or tcp (ICE-TCP).
  const pair = pairId ? report.get(pairId) : null;
  const protocol = pair ? report.get(pair.localCandidateId)?.protocol ?? null : null;
  report.forEach((s) => {
    if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded' && s.currentRoundTripTime !== undefined) {
      rtt = s.currentRoundTripTime;
    }
    if (s.type === 'inbound-rtp') {
      received += s.packetsReceived ?? 0;
      lost += Math.max(0, s.packetsLost ?? 0);
      inbound.push({
        mid: s.mid ?? null,
        kind: s.kind,
        packets_received: s.packetsReceived ?? 0,
        bytes_received: s.bytesReceived ?? 0,
        frames_decoded: s.framesDecoded ?? 0,
        frame_width: s.frameWidth ?? null,
        audio_level: s.audioLevel ?? null,
        total_audio_energy: s.totalAudioEnergy ?? null,
      });
    }
  });
  const dRecv = received - (prev?.received ?? 0);
  const dLost = lost - (prev?.lost ?? 0);
  const loss = dRecv + dLost > 0 ? dLost / (dRecv + dLost) : 0;
  let level = 'unknown';
  if (rtt !== null || dRecv > 0) {
    const r = rtt ?? 0;
    level = r <= GOOD.rtt && loss <= GOOD.loss ? 'good' : r <= FAIR.rtt && loss <= FAIR.loss ? 'fair' : 'poor';
  }
  return { rtt, loss, level, received, lost, inbound, protocol };
}
