// What a call looks like: the call button and banner of a channel, the
// ringing dialog, and the call itself (tiles, controls, host menu,
// devices, connection quality, captions and recording when there are any).

import { h, replace, announce, menu } from './dom.js';
import { userName } from './api.js';
import { devices } from './media.js';
import { LiveCaptions } from './captions.js';

const REACTIONS = { '+1': '👍', clap: '👏', heart: '❤️', laughing: '😆', tada: '🎉', raised_hands: '🙌' };
const REACTION_SHOWN_MS = 4000;

export class CallView {
  constructor(calls) {
    this.calls = calls;
    this.deviceChoice = { microphone: null, camera: null };
    this.el = null;
    this.tiles = new Map(); // session -> { fig, video, audio, screen }
  }

  get app() {
    return this.calls.app;
  }

  // ---- outside a call ----

  renderChannelTools(channel) {
    const tools = document.getElementById('channel-tools');
    const slot = document.getElementById('call-slot');
    if (!tools || !slot || !channel || this.app.current !== channel.id) return;
    const running = this.calls.running.get(channel.id);
    const here = this.calls.active?.channelId === channel.id;
    replace(tools, h('button', {
      type: 'button',
      class: 'call-button',
      id: 'call-button',
      disabled: here,
      onclick: () => this.calls.join(channel.id),
    }, here ? 'In the call' : running ? '📞 Join call' : '📞 Start call'));
    // A message about the last call (ended, removed) stays above the banner.
    const message = slot.querySelector('.call-ended');
    if (running && !here) {
      // The recorder is no person: it shows as "recording", not in the count.
    const n = running.participants?.filter((p) => !p.bot).length ?? 0;
      replace(slot, message, h('div', { class: 'call-banner', role: 'region', 'aria-label': 'Call in this channel' },
        h('span', {}, `A call is running · ${n} ${n === 1 ? 'person' : 'people'}${running.participants?.some((p) => p.bot) ? ' · ● recording' : ''}`),
        h('button', { type: 'button', class: 'primary', onclick: () => this.calls.join(channel.id) }, 'Join')));
    } else replace(slot, message);
  }

  slotMessage(text) {
    const slot = document.getElementById('call-slot');
    if (!slot) return;
    slot.querySelector('.call-ended')?.remove();
    slot.prepend(h('p', { class: 'call-ended', role: 'status' }, text));
  }

  async renderRinging() {
    const el = document.getElementById('ringing');
    if (!el) return;
    const calls = [...this.calls.ringing.values()];
    if (!calls.length) {
      replace(el);
      return;
    }
    const c = calls[0];
    const caller = await userName(c.started_by);
    const accept = h('button', { type: 'button', class: 'primary', onclick: () => this.calls.join(c.channel_id) }, 'Accept');
    const decline = h('button', { type: 'button', class: 'danger', onclick: () => this.calls.decline(c.id) }, 'Decline');
    const dialog = h('div', { class: 'ringing', role: 'alertdialog', 'aria-modal': 'false', 'aria-labelledby': 'ringing-title' },
      h('p', { id: 'ringing-title' }, `📞 ${caller} is calling you`),
      h('div', { class: 'row' }, accept, decline));
    dialog.addEventListener('keydown', (e) => { if (e.key === 'Escape') this.calls.decline(c.id); });
    replace(el, dialog);
    accept.focus();
  }

  notice(text) {
    const n = document.getElementById('call-notice');
    if (n) n.textContent = text;
    else this.slotMessage(text);
    announce(text);
  }

  // ---- in a call ----

  open(session) {
    this.session = session;
    this.tiles.clear();
    const area = document.getElementById('call-area');
    this.el = area;
    this.grid = h('div', { class: 'tiles', role: 'list', 'aria-label': 'Participants' });
    this.controls = h('div', { class: 'call-controls', role: 'toolbar', 'aria-label': 'Call controls' });
    this.status = h('p', { class: 'call-status' });
    this.qualityEl = h('span', { class: 'quality', id: 'call-quality', role: 'status' }, 'Connecting…');
    this.captions = h('div', { class: 'captions', id: 'call-captions', 'aria-live': 'polite', 'aria-label': 'Live captions', hidden: true });
    this.liveCaptions = new LiveCaptions(this.captions);
    this.recording = h('span', { class: 'recording', id: 'call-recording', role: 'status', hidden: !session.recorded }, '● Recording');
    this.failure = h('div', { class: 'call-failure', role: 'alert', hidden: true });
    replace(area,
      h('div', { class: 'call-head' },
        h('h2', { id: 'call-title' }, 'Call'), this.recording, this.qualityEl),
      h('p', { id: 'call-notice', class: 'notice', role: 'status' }),
      this.failure,
      this.grid,
      this.captions,
      this.controls,
    );
    area.setAttribute('aria-labelledby', 'call-title');
    area.hidden = false;
    document.body.classList.add('in-call');
    this.app.channels.get(session.channelId) && this.app.sidebar.channelLabel(this.app.channels.get(session.channelId))
      .then((n) => { const t = document.getElementById('call-title'); if (t) t.textContent = `Call in ${n}`; });
    this.renderAll();
  }

  close(message) {
    const area = document.getElementById('call-area');
    if (area) {
      area.hidden = true;
      replace(area);
    }
    document.body.classList.remove('in-call');
    this.tiles.clear();
    this.session = null;
    if (message) {
      this.slotMessage(message);
      announce(message);
    }
  }

  renderAll() {
    if (!this.session) return;
    for (const id of this.session.participants.keys()) this.renderTile(id);
    for (const id of this.session.remote.keys()) this.renderTile(id);
    this.renderControls();
  }

  removeTile(session) {
    const t = this.tiles.get(session);
    if (!t) return;
    t.fig.remove();
    t.screenFig?.remove();
    this.tiles.delete(session);
  }

  async renderTile(id) {
    const s = this.session;
    if (!s || s.closed) return;
    const p = s.participants.get(id);
    const mine = id === s.sessionId;
    // Tracks rtcd stops after someone left must not bring their tile back;
    // a bot (the recorder) is the recording indicator, never a tile.
    if ((!p && !mine) || p?.bot) {
      this.removeTile(id);
      return;
    }
    let t = this.tiles.get(id);
    if (!t) {
      const video = h('video', { autoplay: true, playsInline: true, muted: true, 'aria-hidden': 'true' });
      const audio = h('audio', { autoplay: true });
      const label = h('figcaption', {});
      const fig = h('figure', { class: 'tile', role: 'listitem', dataset: { session: id }, tabindex: '0' }, video, audio, label);
      t = { fig, video, audio, label, screenFig: null };
      this.tiles.set(id, t);
      this.grid.append(fig);
    }
    const streams = mine
      ? { camera: s.local.camera && new MediaStream([s.local.camera]), screen_video: s.local.screen && new MediaStream([s.local.screen]) }
      : (s.remote.get(id) ?? {});
    setStream(t.video, mine ? (s.local.camera ? streams.camera : null) : streams.camera ?? null, mine ? s.local.camera?.id : null);
    if (!mine) setStream(t.audio, streams.microphone ?? null);
    const name = p ? await userName(p.user_id) : '…';
    if (this.tiles.get(id) !== t) return;
    t.fig.classList.toggle('no-video', !(mine ? s.local.camera : streams.camera));
    const flags = [
      p?.host && h('span', { class: 'flag' }, 'host'),
      p?.muted && h('span', { class: 'flag', title: 'muted' }, '🔇', h('span', { class: 'sr-only' }, 'muted')),
      p?.hand_raised && h('span', { class: 'flag hand', title: 'hand raised' }, '✋', h('span', { class: 'sr-only' }, 'hand raised')),
      p?.screen && h('span', { class: 'flag', title: 'sharing the screen' }, '🖥', h('span', { class: 'sr-only' }, 'sharing the screen')),
      p && !p.connected && !mine && h('span', { class: 'flag muted' }, 'connecting'),
    ];
    t.fig.setAttribute('aria-label', `${name}${mine ? ' (you)' : ''}`);
    replace(t.label, h('span', { class: 'name' }, mine ? `${name} (you)` : name), flags,
      !mine && s.isHost && p && this.hostMenu(id, p, name));
    // The shared screen gets a tile of its own, first in the grid.
    const screen = streams.screen_video;
    if (screen && (mine || p?.screen !== false)) {
      if (!t.screenFig) {
        const v = h('video', { autoplay: true, playsInline: true, muted: true });
        t.screenFig = h('figure', { class: 'tile screen', role: 'listitem', dataset: { screenOf: id } }, v, h('figcaption', {}));
        this.grid.prepend(t.screenFig);
      }
      setStream(t.screenFig.querySelector('video'), screen, mine ? s.local.screen?.id : null);
      replace(t.screenFig.querySelector('figcaption'), `${name}${mine ? ' (you)' : ''}: screen`);
      t.screenFig.setAttribute('aria-label', `${name}'s screen`);
    } else if (t.screenFig) {
      t.screenFig.remove();
      t.screenFig = null;
    }
  }

  hostMenu(id, p, name) {
    const act = (a) => () => this.session.host(a, id);
    return menu(h('button', { type: 'button', class: 'icon host-menu', 'aria-label': `Host actions for ${name}` }, '⋯'), [
      !p.host && { label: 'Make host', run: act('make_host') },
      !p.muted && { label: 'Mute', run: act('mute') },
      p.screen && { label: 'Stop screen share', run: act('stop_screen') },
      p.hand_raised && { label: 'Lower hand', run: act('lower_hand') },
      { label: 'Remove from call', run: act('remove') },
    ]);
  }

  renderControls() {
    const s = this.session;
    if (!s || !this.controls) return;
    const me = s.me;
    const muted = me ? me.muted : !s.local.microphone?.enabled;
    const camera = !!s.local.camera;
    const sharing = !!s.local.screen;
    const hand = !!me?.hand_raised;
    const toggle = (id, pressed, label, onclick, text) => h('button', { type: 'button', id, 'aria-pressed': String(pressed), 'aria-label': label, onclick }, text);
    replace(this.controls,
      toggle('call-mute', muted, 'Mute microphone', () => s.setMuted(!muted), muted ? '🔇 Unmute' : '🎙 Mute'),
      toggle('call-camera', !camera, 'Turn camera off', () => s.setCamera(!camera), camera ? '📷 Camera off' : '📷 Camera on'),
      toggle('call-screen', sharing, 'Share screen', () => s.setScreen(!sharing), sharing ? '🖥 Stop sharing' : '🖥 Share screen'),
      toggle('call-hand', hand, 'Raise hand', () => s.change({ hand_raised: !hand }), hand ? '✋ Lower hand' : '✋ Raise hand'),
      menu(h('button', { type: 'button', id: 'call-react', 'aria-label': 'Send a reaction' }, '😀 React'),
        Object.entries(REACTIONS).map(([name, g]) => ({ label: `${g} ${name}`, run: () => s.react(name) }))),
      menu(h('button', { type: 'button', id: 'call-devices', 'aria-label': 'Devices' }, '⚙ Devices'), [
        { label: 'Choose microphone and camera…', run: () => this.devicePicker() },
      ]),
      s.isHost && toggle('call-record', s.jobs.recording, 'Record the call', () => s.job('recording', !s.jobs.recording), s.jobs.recording ? '⏹ Stop recording' : '⏺ Record'),
      s.isHost && toggle('call-captions-toggle', s.jobs.captions, 'Live captions', () => s.job('captions', !s.jobs.captions), s.jobs.captions ? '💬 Captions off' : '💬 Captions on'),
      s.isHost && menu(h('button', { type: 'button', id: 'call-host', 'aria-label': 'Host actions for everyone' }, '★ Host'), [
        { label: 'Mute everyone else', run: () => s.host('mute_others') },
        { label: 'End call for all', run: () => s.host('end') },
      ]),
      h('button', { type: 'button', id: 'call-leave', class: 'danger', onclick: () => s.leave() }, 'Leave'),
    );
  }

  async devicePicker() {
    const s = this.session;
    const { microphones, cameras } = await devices();
    const select = (kind, list, current) => {
      const id = `device-${kind}`;
      const sel = h('select', { id }, list.map((d, i) => h('option', { value: d.deviceId, selected: d.deviceId === current }, d.label || `${kind} ${i + 1}`)));
      sel.addEventListener('change', async () => {
        this.deviceChoice[kind] = sel.value;
        try {
          await s.switchDevice(kind, sel.value);
        } catch (e) {
          this.notice(`Could not switch ${kind}: ${e.message}`);
        }
      });
      return [h('label', { for: id }, kind === 'microphone' ? 'Microphone' : 'Camera'), sel];
    };
    const done = h('button', { type: 'button', onclick: () => { panel.remove(); document.getElementById('call-devices')?.focus(); } }, 'Done');
    const panel = h('div', { class: 'devices', role: 'dialog', 'aria-label': 'Devices' },
      select('microphone', microphones, s.local.microphone?.getSettings().deviceId),
      select('camera', cameras, s.local.camera?.getSettings().deviceId),
      done);
    panel.addEventListener('keydown', (e) => { if (e.key === 'Escape') done.click(); });
    this.el.querySelector('.devices')?.remove();
    this.controls.after(panel);
    panel.querySelector('select')?.focus();
  }

  speaking(session, on) {
    this.tiles.get(session)?.fig.classList.toggle('speaking', on);
  }

  async reaction(session, emoji) {
    const t = this.tiles.get(session);
    if (!t) return;
    const r = h('span', { class: 'reaction-burst', 'aria-hidden': 'true' }, REACTIONS[emoji] ?? emoji);
    t.fig.append(r);
    setTimeout(() => r.remove(), REACTION_SHOWN_MS);
    const p = this.session?.participants.get(session);
    if (p) announce(`${await userName(p.user_id)} reacted ${emoji}`);
  }

  quality(q) {
    if (!this.qualityEl) return;
    const rtt = q.rtt === null ? '–' : `${Math.round(q.rtt * 1000)} ms`;
    // Over TCP (ICE-TCP when UDP is blocked) media arrives, but late
    // packets wait for lost ones: worth telling.
    const via = q.protocol === 'tcp' ? ', over TCP' : '';
    this.qualityEl.textContent = `Connection: ${q.level} (round trip ${rtt}, loss ${(q.loss * 100).toFixed(1)} %${via})`;
    this.qualityEl.dataset.level = q.level;
    if (q.protocol) this.qualityEl.dataset.transport = q.protocol;
  }

  // `recovering`: the media was connected before, so this is a loss the
  // session is recovering from (call.js), not a network that never let
  // the media through.
  connectionState(state, { recovering = false } = {}) {
    if (!this.failure) return;
    if (state === 'failed' && !recovering) {
      replace(this.failure,
        h('p', {}, 'Media could not connect. UDP may be blocked on this network; a connection over TCP to the media server\'s port was tried too and did not work either. Ask your administrator to open the media port, or try another network.'),
        h('button', { type: 'button', onclick: () => this.session?.enqueue(() => this.session.offer({ iceRestart: true })) }, 'Try again'));
      this.failure.hidden = false;
    } else if (state === 'connected') {
      this.failure.hidden = true;
    }
    if (state === 'connected') return;
    if (this.qualityEl) {
      this.qualityEl.textContent = recovering && (state === 'disconnected' || state === 'failed')
        ? 'Media: connection lost, reconnecting…'
        : `Media: ${state}`;
      this.qualityEl.dataset.level = state;
    }
  }

  // A live caption from the offloader's captioning bot.
  caption(msg) {
    this.liveCaptions?.add(msg);
  }

  setRecording(on) {
    if (this.recording) this.recording.hidden = !on;
  }
}

function setStream(el, stream, localId) {
  const want = stream ?? null;
  const have = el.srcObject;
  const same = have && want && (localId ? have.getTracks()[0]?.id === localId : have.getTracks()[0] === want.getTracks()[0]);
  if (same || (!have && !want)) return;
  el.srcObject = want;
  if (want) el.play?.().catch(() => {});
}
