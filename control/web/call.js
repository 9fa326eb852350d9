// Calls: which channels have one running, ringing for direct and group
// calls, and the call this page is in (one peer connection to rtcd,
// negotiated over the control WebSocket: signaling::call).

import { get, post, patch, del, enc, userName, ApiError } from './api.js';
import { announce, duration } from './dom.js';
import { remoteTracks, openMicrophone, openCamera, openScreen, quality } from './media.js';
import { CallView } from './callview.js';

const QUALITY_EVERY_MS = 2000;
// Media that was up and went down: how long ICE may recover on its own
// (a brief loss of the network) before this page asks rtcd for an ICE
// restart, and how long that may take before it starts its media over
// with a new peer connection (rtcd may have closed the session).
const RECOVER_ALONE_MS = 4000;
const RESTART_TIMEOUT_MS = 10_000;
// One codec per kind (and video's retransmissions): every m-line lists
// only these, which keeps offers and answers well under the socket's
// message limit as participants (and m-lines) add up.
const CODECS = { audio: ['audio/opus'], video: ['video/VP8', 'video/rtx'] };

function preferCodecs(transceiver, kind) {
  const all = RTCRtpReceiver.getCapabilities?.(kind)?.codecs ?? [];
  const wanted = all.filter((c) => CODECS[kind].includes(c.mimeType));
  if (wanted.length && transceiver.setCodecPreferences) transceiver.setCodecPreferences(wanted);
}

export class Calls {
  constructor(app) {
    this.app = app;
    this.running = new Map(); // channel id -> CallInfo
    this.ringing = new Map(); // call id -> CallInfo
    this.active = null; // CallSession
    this.view = new CallView(this);
  }

  // After a (re)load: forget what may be stale and ask again for the
  // channels that matter now.
  async refresh(channels) {
    const ids = new Set([...this.running.keys(), this.app.current].filter(Boolean));
    this.running.clear();
    await Promise.all([...ids].filter((id) => channels.some((c) => c.id === id)).map((id) => this.check(id)));
  }

  async check(channelId) {
    try {
      const info = await get(`/channels/${enc(channelId)}/call`);
      if (info && !info.ended_at) this.running.set(channelId, info);
      else this.running.delete(channelId);
    } catch {
      this.running.delete(channelId);
    }
  }

  async channelOpened(channel) {
    this.view.renderChannelTools(channel);
    await this.check(channel.id);
    if (this.app.current === channel.id) this.view.renderChannelTools(channel);
  }

  async join(channelId) {
    if (this.active) {
      if (this.active.channelId === channelId) return;
      await this.active.leave();
    }
    let info;
    try {
      info = await post(`/channels/${enc(channelId)}/call`);
    } catch (e) {
      const why = e instanceof ApiError && e.code === 'removed_from_call'
        ? 'A host removed you from this call.'
        : `Could not join the call: ${e.message}`;
      this.view.notice(why);
      return;
    }
    this.stopRinging(info.call_id);
    if (info.call) this.running.set(channelId, info.call);
    this.active = new CallSession(this, channelId, info);
    this.view.open(this.active);
    await this.active.start();
    this.app.sidebar.render();
  }

  async decline(callId) {
    this.stopRinging(callId);
    await post(`/calls/${enc(callId)}/decline`).catch(() => {});
  }

  stopRinging(callId) {
    if (this.ringing.delete(callId)) this.view.renderRinging();
  }

  async leave(reason) {
    await this.active?.leave(reason);
  }

  ended(session, message) {
    if (this.active !== session) return;
    this.active = null;
    this.lastCallId = session.callId;
    this.view.close(message);
    if (this.app.current) this.view.renderChannelTools(this.app.channels.get(this.app.current));
  }

  async onEvent(ev) {
    const a = this.active;
    switch (ev.type) {
      case 'call_started': {
        const c = ev.call;
        this.running.set(c.channel_id, c);
        const ch = this.app.channels.get(c.channel_id);
        if (ch && (ch.kind === 'direct' || ch.kind === 'group') && c.started_by !== this.app.me.id && a?.callId !== c.id) {
          this.ringing.set(c.id, c);
          this.view.renderRinging();
          announce(`${await userName(c.started_by)} is calling`);
        }
        break;
      }
      case 'call_joined':
      case 'call_participant_changed': {
        const info = this.running.get(ev.channel_id);
        if (info && info.id === ev.call_id) {
          info.participants = info.participants.filter((p) => p.session_id !== ev.participant.session_id);
          info.participants.push(ev.participant);
        }
        if (a?.callId === ev.call_id) a.participantChanged(ev.participant, ev.type === 'call_joined');
        break;
      }
      case 'call_left': {
        const info = this.running.get(ev.channel_id);
        if (info && info.id === ev.call_id) info.participants = info.participants.filter((p) => p.session_id !== ev.session_id);
        if (a?.callId === ev.call_id) a.participantLeft(ev.session_id, ev.reason);
        break;
      }
      case 'call_ring_ended':
        if (ev.user_id === this.app.me.id) this.stopRinging(ev.call_id);
        else if (a?.callId === ev.call_id && (ev.reason === 'declined' || ev.reason === 'timeout')) await a.ringEnded(ev.user_id, ev.reason);
        break;
      case 'call_ended':
        this.running.delete(ev.channel_id);
        this.stopRinging(ev.call_id);
        if (a?.callId === ev.call_id) {
          a.teardown();
          this.ended(a, `The call ended after ${duration(ev.duration_ms)}.`);
        } else if (this.lastCallId === ev.call_id) {
          // We left as it ended (call_left came first): say how long it ran.
          this.view.slotMessage(`The call ended after ${duration(ev.duration_ms)}.`);
        }
        break;
      default:
        return;
    }
    if (ev.channel_id === this.app.current || ev.call?.channel_id === this.app.current) {
      this.view.renderChannelTools(this.app.channels.get(this.app.current));
    }
    if (ev.type === 'call_started' || ev.type === 'call_ended') this.app.sidebar.render();
  }

  onMessage(msg) {
    const a = this.active;
    if (!a || msg.call_id !== a.callId) return;
    if (msg.type === 'call_signal' && msg.session_id === a.sessionId) a.onSignal(msg.signal);
    else if (msg.type === 'call_voice') this.view.speaking(msg.session_id, msg.speaking);
    else if (msg.type === 'call_reaction') this.view.reaction(msg.session_id, msg.emoji);
    else if (msg.type === 'call_caption') this.view.caption(msg);
  }

  onError(msg) {
    const a = this.active;
    if (!a) return;
    // rtcd closed our session while the network was away: start over.
    if (msg.code === 'media_unknown_session' && a.recovering) a.startOver();
    else if (String(msg.code).includes('call')) this.view.notice(`The call server refused a message: ${msg.message}`);
  }

  // The control socket is back after a drop: missed events were replayed
  // (or the page reloaded its lists); check the call and the media.
  async socketBack() {
    await this.active?.resync();
  }
}

export class CallSession {
  constructor(calls, channelId, join) {
    this.calls = calls;
    this.app = calls.app;
    this.view = calls.view;
    this.channelId = channelId;
    this.callId = join.call_id;
    this.sessionId = join.session_id;
    this.iceServers = join.ice_servers ?? [];
    this.recording = join.call?.recording ?? false;
    this.postId = join.call?.post_id ?? null;
    this.participants = new Map((join.call?.participants ?? []).map((p) => [p.session_id, p]));
    // The jobs a host here believes run. Control tells every client only
    // that a bot is in the call (`recording`), not which job it serves, so
    // a refusal (already_running, not_running) corrects this.
    this.jobs = { recording: this.recorded, captions: false };
    this.local = { microphone: null, camera: null, screen: null };
    this.remote = new Map(); // publisher session -> { source -> MediaStream }
    this.mids = new Map(); // mid -> { session, source }
    this.pc = null;
    this.senders = {};
    this.queue = Promise.resolve();
    this.closed = false;
    this.prevQuality = null;
    this.iceFailed = false;
    this.everConnected = false;
    this.recovering = false;
    this.recoverTimer = null;
    // How often this session recovered its media, by which path.
    this.recoveries = { ice_restart: 0, new_connection: 0 };
  }

  get me() {
    return this.participants.get(this.sessionId);
  }

  get isHost() {
    return this.me?.host === true;
  }

  // A bot in the call records it (or captions it): everyone is told.
  get recorded() {
    return [...this.participants.values()].some((p) => p.bot);
  }

  /** A host starts (`on`) or stops a job of `kind` (recording, captions). */
  async job(kind, on) {
    const base = `/calls/${enc(this.callId)}/jobs`;
    // A recording comes with its transcript: the reviewer needs both.
    const spec = kind === 'recording' ? { kind, format: 'webm', transcribe: true } : { kind };
    const what = kind === 'recording' ? 'Recording' : 'Captions';
    try {
      if (on) await post(base, { job: spec });
      else await post(`${base}/${enc(kind)}/stop`);
      this.jobs[kind] = on;
      announce(on ? `${what} starting…` : `${what} stopping.`);
    } catch (e) {
      if (e.code === 'already_running') this.jobs[kind] = true;
      else if (e.code === 'not_running') this.jobs[kind] = false;
      this.view.notice(`${what} ${on ? 'did not start' : 'did not stop'}: ${e.message}`);
    }
    this.view.renderControls();
  }

  async start() {
    try {
      this.local.microphone = await openMicrophone(this.view.deviceChoice.microphone);
    } catch (e) {
      this.view.notice(`No microphone: ${e.message}. You can listen and watch.`);
    }
    try {
      this.local.camera = await openCamera(this.view.deviceChoice.camera);
    } catch {
      this.local.camera = null;
    }
    this.view.renderAll();
    this.connect();
    this.qualityTimer = setInterval(() => this.measure(), QUALITY_EVERY_MS);
    if (this.local.camera) this.change({ camera: true });
  }

  // A new peer connection with every local track; used at the start and
  // again on ServerSignal::Reconnect (the call moved to another node).
  connect() {
    this.pc?.close();
    this.mids.clear();
    this.iceFailed = false;
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    this.pc = pc;
    this.senders = {
      microphone: pc.addTransceiver(this.local.microphone ?? 'audio', { direction: 'sendonly' }),
      camera: pc.addTransceiver(this.local.camera ?? 'video', { direction: 'sendonly' }),
      screen_video: pc.addTransceiver(this.local.screen ?? 'video', { direction: 'sendonly' }),
    };
    for (const [source, t] of Object.entries(this.senders)) preferCodecs(t, source === 'microphone' ? 'audio' : 'video');
    pc.onicecandidate = (e) => {
      if (!e.candidate) return;
      this.signal({ type: 'candidate', candidate: { candidate: e.candidate.candidate, sdp_mid: e.candidate.sdpMid, sdp_m_line_index: e.candidate.sdpMLineIndex } });
    };
    pc.ontrack = (e) => this.onTrack(e);
    pc.onconnectionstatechange = () => {
      if (this.pc !== pc) return;
      const s = pc.connectionState;
      this.view.connectionState(s, { recovering: this.everConnected });
      if (s === 'failed') this.iceFailed = true;
      if (s === 'connected') {
        this.iceFailed = false;
        this.everConnected = true;
        this.recovering = false;
        clearTimeout(this.recoverTimer);
      } else if ((s === 'disconnected' || s === 'failed') && this.everConnected) {
        this.recover(s === 'failed' ? 0 : RECOVER_ALONE_MS);
      }
    };
    this.enqueue(() => this.offer());
  }

  // Media that was connected went down. ICE often comes back by itself
  // after a short loss; if not, an ICE restart through rtcd; if that does
  // not connect either (or rtcd no longer knows the session), a new peer
  // connection, which rtcd takes as the same session within control's
  // reconnect grace window. Signals wait for the control socket.
  recover(afterMs) {
    clearTimeout(this.recoverTimer);
    this.recoverTimer = setTimeout(() => {
      if (this.closed || this.pc?.connectionState === 'connected') return;
      if (!this.app.socket.connected) return; // socketBack() tries again
      if (!this.recovering) {
        this.recovering = true;
        this.recoveries.ice_restart++;
        this.signal({ type: 'ice_restart' });
        this.recover(RESTART_TIMEOUT_MS);
      } else {
        this.startOver();
      }
    }, afterMs);
  }

  startOver() {
    if (this.closed) return;
    clearTimeout(this.recoverTimer);
    this.recovering = false;
    this.everConnected = false;
    this.recoveries.new_connection++;
    this.view.notice('Reconnecting the call\'s media…');
    this.remote.clear();
    this.view.renderAll();
    this.connect();
  }

  // After the control socket came back: the call as control has it now.
  async resync() {
    let info;
    try {
      info = await get(`/calls/${enc(this.callId)}`);
    } catch {
      return;
    }
    if (this.closed) return;
    if (info.ended_at) {
      this.teardown();
      this.calls.ended(this, 'The call ended.');
      return;
    }
    const now = new Map(info.participants.map((p) => [p.session_id, p]));
    if (!now.has(this.sessionId)) {
      this.teardown();
      this.calls.ended(this, 'You were disconnected from the call.');
      return;
    }
    for (const id of this.participants.keys()) {
      if (!now.has(id)) this.participantLeft(id, null);
    }
    for (const p of now.values()) this.participants.set(p.session_id, p);
    this.view.renderAll();
    const s = this.pc?.connectionState;
    if (this.everConnected && s !== 'connected') this.recover(0);
  }

  // A callee of this direct or group call declined, or did not answer. In
  // a direct call nobody is left to wait for: the call ends here.
  async ringEnded(userId, reason) {
    const name = await userName(userId);
    const text = reason === 'declined' ? `${name} declined the call.` : `${name} did not answer.`;
    const direct = this.app.channels.get(this.channelId)?.kind === 'direct';
    const alone = [...this.participants.values()].every((p) => p.session_id === this.sessionId || p.bot);
    if (direct && alone) {
      await this.leave();
      // Not "the call ended after 0:04" when its end event follows.
      this.calls.lastCallId = null;
      this.view.slotMessage(text);
      announce(text);
    } else {
      this.view.notice(text);
    }
  }

  enqueue(f) {
    this.queue = this.queue.then(f).catch((e) => console.warn('call negotiation:', e));
    return this.queue;
  }

  signal(signal) {
    if (this.closed) return;
    this.app.socket.send({ type: 'call_signal', call_id: this.callId, session_id: this.sessionId, signal });
  }

  async offer({ iceRestart = false } = {}) {
    const pc = this.pc;
    const offer = await pc.createOffer({ iceRestart });
    await pc.setLocalDescription(offer);
    const tracks = Object.entries(this.senders)
      .filter(([, t]) => t.mid !== null)
      .map(([source, t]) => ({ mid: t.mid, source }));
    this.signal({ type: 'offer', offer: { sdp: pc.localDescription.sdp, negotiation: 0 }, tracks });
  }

  onSignal(signal) {
    this.enqueue(async () => {
      const pc = this.pc;
      switch (signal.type) {
        case 'answer':
          if (pc.signalingState !== 'have-local-offer') return;
          await pc.setRemoteDescription({ type: 'answer', sdp: signal.answer.sdp });
          break;
        case 'offer':
          // rtcd yields on glare and offers again after answering ours.
          if (pc.signalingState !== 'stable') return;
          this.learnTracks(signal.offer.sdp);
          await pc.setRemoteDescription({ type: 'offer', sdp: signal.offer.sdp });
          for (const t of pc.getTransceivers()) {
            if (t.direction === 'recvonly' && !Object.values(this.senders).includes(t)) preferCodecs(t, t.receiver.track.kind);
          }
          await pc.setLocalDescription(await pc.createAnswer());
          this.signal({ type: 'answer', answer: { sdp: pc.localDescription.sdp, negotiation: signal.offer.negotiation } });
          this.pruneRemote();
          break;
        case 'candidate':
          if (!pc.remoteDescription) return;
          await pc.addIceCandidate({
            candidate: signal.candidate.candidate,
            sdpMid: signal.candidate.sdp_mid ?? undefined,
            sdpMLineIndex: signal.candidate.sdp_m_line_index ?? undefined,
          });
          break;
        case 'reconnect':
          this.view.notice('The call moved to another media server; reconnecting…');
          this.remote.clear();
          this.view.renderAll();
          this.connect();
          break;
        default:
      }
    });
  }

  learnTracks(sdp) {
    for (const [mid, t] of remoteTracks(sdp)) this.mids.set(mid, t);
  }

  onTrack(e) {
    const mid = e.transceiver.mid;
    const t = this.mids.get(mid);
    if (!t) return;
    if (!this.remote.has(t.session)) this.remote.set(t.session, {});
    const byKind = this.remote.get(t.session);
    byKind[t.source] = new MediaStream([e.track]);
    e.track.onended = () => this.pruneRemote();
    this.view.renderTile(t.session);
  }

  // Tracks rtcd stopped sending (a participant left, a share ended).
  pruneRemote() {
    const live = new Set(this.pc.getTransceivers().filter((t) => !t.stopped && t.currentDirection !== 'inactive' && t.mid !== null).map((t) => t.mid));
    for (const [mid, t] of this.mids) {
      if (live.has(mid)) continue;
      const byKind = this.remote.get(t.session);
      if (byKind) {
        delete byKind[t.source];
        if (!Object.keys(byKind).length && !this.participants.has(t.session)) this.remote.delete(t.session);
      }
      this.mids.delete(mid);
      this.view.renderTile(t.session);
    }
  }

  async measure() {
    if (!this.pc || this.closed) return;
    try {
      const q = await quality(this.pc, this.prevQuality);
      this.prevQuality = q;
      // While media is down the line says so (connectionState), not
      // "poor" from stale numbers.
      if (this.pc.connectionState === 'connected') this.view.quality(q);
    } catch {
      // A closed peer connection between two ticks.
    }
  }

  // What each remote participant's tracks delivered so far (for tests and
  // the quality panel): { session: { source: inbound-rtp numbers } }.
  async inbound() {
    const q = await quality(this.pc, null);
    const out = {};
    for (const s of q.inbound) {
      const t = this.mids.get(s.mid);
      if (!t) continue;
      (out[t.session] ??= {})[t.source] = s;
    }
    return out;
  }

  // The negotiation as this page sees it (tests and support).
  describe() {
    return {
      session: this.sessionId,
      signaling: this.pc?.signalingState,
      local_sdp_bytes: this.pc?.localDescription?.sdp.length ?? null,
      connection: this.pc?.connectionState,
      mids: Object.fromEntries(this.mids),
      transceivers: this.pc?.getTransceivers().map((t) => ({ mid: t.mid, direction: t.direction, current: t.currentDirection, kind: t.receiver.track.kind })),
      participants: [...this.participants.values()],
      recoveries: this.recoveries,
    };
  }

  async change(fields) {
    try {
      await patch(`/calls/${enc(this.callId)}/sessions/${enc(this.sessionId)}`, fields);
      return true;
    } catch (e) {
      this.view.notice(e.code === 'screen_share_taken' || e.status === 409 ? `Cannot share: ${e.message}` : `Not changed: ${e.message}`);
      return false;
    }
  }

  async setMuted(muted) {
    if (!muted && !this.local.microphone) {
      try {
        this.local.microphone = await openMicrophone(this.view.deviceChoice.microphone);
        await this.senders.microphone.sender.replaceTrack(this.local.microphone);
      } catch (e) {
        this.view.notice(`No microphone: ${e.message}`);
        return;
      }
    }
    if (this.local.microphone) this.local.microphone.enabled = !muted;
    if (!(await this.change({ muted })) && this.local.microphone) this.local.microphone.enabled = muted;
    this.view.renderControls();
  }

  async setCamera(on) {
    if (on) {
      try {
        this.local.camera = await openCamera(this.view.deviceChoice.camera);
      } catch (e) {
        this.view.notice(`No camera: ${e.message}`);
        return;
      }
      await this.senders.camera.sender.replaceTrack(this.local.camera);
    } else {
      await this.senders.camera.sender.replaceTrack(null);
      this.local.camera?.stop();
      this.local.camera = null;
    }
    await this.change({ camera: on });
    this.view.renderTile(this.sessionId);
    this.view.renderControls();
  }

  async setScreen(on) {
    if (on) {
      let track;
      try {
        track = await openScreen();
      } catch (e) {
        this.view.notice(`Screen sharing is not available: ${e.message}`);
        return;
      }
      this.local.screen = track;
      track.onended = () => this.setScreen(false);
      await this.senders.screen_video.sender.replaceTrack(track);
      if (!(await this.change({ screen: true }))) {
        await this.stopScreenLocally();
        return;
      }
    } else {
      await this.stopScreenLocally();
      await this.change({ screen: false });
    }
    this.view.renderTile(this.sessionId);
    this.view.renderControls();
  }

  async stopScreenLocally() {
    await this.senders.screen_video?.sender.replaceTrack(null);
    if (this.local.screen) {
      this.local.screen.onended = null;
      this.local.screen.stop();
    }
    this.local.screen = null;
  }

  async switchDevice(kind, deviceId) {
    if (kind === 'microphone' && this.local.microphone) {
      const next = await openMicrophone(deviceId);
      next.enabled = this.local.microphone.enabled;
      await this.senders.microphone.sender.replaceTrack(next);
      this.local.microphone.stop();
      this.local.microphone = next;
    } else if (kind === 'camera' && this.local.camera) {
      const next = await openCamera(deviceId);
      await this.senders.camera.sender.replaceTrack(next);
      this.local.camera.stop();
      this.local.camera = next;
      this.view.renderTile(this.sessionId);
    }
  }

  react(emoji) {
    post(`/calls/${enc(this.callId)}/reactions`, { emoji }).catch((e) => this.view.notice(`Reaction not sent: ${e.message}`));
  }

  // Host actions on another participant (or everyone).
  host(action, session) {
    const s = session ? `/calls/${enc(this.callId)}/sessions/${enc(session)}` : null;
    const req = {
      make_host: () => post(`${s}/host`),
      mute: () => patch(s, { muted: true }),
      stop_screen: () => patch(s, { screen: false }),
      lower_hand: () => patch(s, { hand_raised: false }),
      remove: () => del(s),
      mute_others: () => post(`/calls/${enc(this.callId)}/mute-others`),
      end: () => post(`/calls/${enc(this.callId)}/end`),
    }[action];
    return req().catch((e) => this.view.notice(`Not done: ${e.message}`));
  }

  participantChanged(p, joined) {
    const before = this.participants.get(p.session_id);
    this.participants.set(p.session_id, p);
    if (p.bot) {
      this.view.setRecording(true);
      if (joined) {
        // Unless this page just asked for captions, a new bot records.
        if (!this.jobs.captions) this.jobs.recording = true;
        this.view.renderControls();
        announce('This call is being recorded.');
      }
    } else if (p.session_id === this.sessionId) {
      // A host muted me or stopped my share: follow what rtcd enforces.
      if (p.muted && this.local.microphone) this.local.microphone.enabled = false;
      if (!p.screen && before?.screen && this.local.screen) {
        this.stopScreenLocally().then(() => { this.view.renderTile(this.sessionId); this.view.renderControls(); });
        announce('A host stopped your screen share.');
      }
      if (p.muted && before && !before.muted) announce('A host muted you.');
      if (!p.hand_raised && before?.hand_raised) announce('Your hand is lowered.');
      if (p.host && before && !before.host) {
        announce('You are now a host of this call.');
        // Every other tile gets its host menu.
        this.view.renderAll();
      }
      this.view.renderControls();
    } else if (joined) {
      userName(p.user_id).then((n) => announce(`${n} joined the call`));
    }
    this.view.renderTile(p.session_id);
  }

  participantLeft(session, reason) {
    if (session === this.sessionId) {
      this.teardown();
      const why = { removed: 'A host removed you from the call.', disconnected: 'You were disconnected from the call.', call_ended: 'The call ended.' };
      this.calls.ended(this, why[reason] ?? null);
      return;
    }
    const wasBot = this.participants.get(session)?.bot;
    this.participants.delete(session);
    this.remote.delete(session);
    this.view.removeTile(session);
    if (wasBot) {
      this.view.setRecording(this.recorded);
      if (!this.recorded) {
        this.jobs = { recording: false, captions: false };
        this.view.renderControls();
        announce('The recording stopped.');
      }
    }
  }

  teardown() {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.qualityTimer);
    clearTimeout(this.recoverTimer);
    this.pc?.close();
    for (const t of Object.values(this.local)) t?.stop();
  }

  async leave() {
    if (this.closed) return;
    const url = `/calls/${enc(this.callId)}/sessions/${enc(this.sessionId)}`;
    this.teardown();
    this.calls.ended(this, null);
    await del(url).catch(() => {});
  }
}
