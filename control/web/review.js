// The reviewer (`#/review/<post>[?t=<seconds>]`): a recording's video or
// audio with its transcript beside it as cues; a cue seeks the player, the
// cue playing now is highlighted. The post named may be the recording's
// own or another post of its thread (a transcript search hit): the media
// is then looked up in the thread.

import { api, get, enc } from './api.js';
import { h, replace, announce, duration } from './dom.js';
import { parseVtt, cueAt } from './vtt.js';

/** The account whose posts carry recordings and transcripts. */
export const RECORDER_USER_ID = 'calls-recorder';

const MEDIA_NAME = /\.(webm|mp4|m4a|ogg|oga|opus|mp3|wav)$/i;
const AUDIO_NAME = /\.(m4a|ogg|oga|opus|mp3|wav)$/i;

/** The media file and the WebVTT file of a post, or null when it lacks either. */
export function reviewable(post) {
  const files = post?.files ?? [];
  const media = files.find((f) => /^(video|audio)\//.test(f.mime_type ?? '') || MEDIA_NAME.test(f.name));
  const vtt = files.find((f) => /\.vtt$/i.test(f.name) || f.mime_type === 'text/vtt');
  if (!media || !vtt) return null;
  return { media, vtt, audio: (media.mime_type ?? '').startsWith('audio/') || AUDIO_NAME.test(media.name) };
}

// A cue's start as the player shows it: whole seconds, not rounded up.
const clock = (seconds) => duration(Math.floor(seconds) * 1000);

const LINE = /^\[(\d{2,}):([0-5]\d):([0-5]\d)\]\s+([^:\n]+?):\s?(.*)$/;

/** The "[hh:mm:ss] Name: text" lines of a transcript: `{ seconds, speaker, text }`. */
export function transcriptLines(text) {
  const out = [];
  for (const l of String(text ?? '').split('\n')) {
    const m = LINE.exec(l.trim());
    if (m) out.push({ seconds: Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]), speaker: m[4], text: m[5] });
  }
  return out;
}

/** The transcript line a search for `query` most likely hit (else the first), or null. */
export function lineFor(text, query) {
  const lines = transcriptLines(text);
  const words = String(query).toLowerCase().split(/[\s"'*+-]+/).filter((w) => w.length > 1);
  return lines.find((l) => words.some((w) => `${l.speaker} ${l.text}`.toLowerCase().includes(w))) ?? lines[0] ?? null;
}

export class Reviewer {
  constructor(app, main) {
    this.app = app;
    this.main = main;
    this.trackUrl = null;
    this.player = null;
  }

  /** Leaves the reviewer: the player stops, the transcript's blob goes. */
  close() {
    this.player?.pause();
    this.player = null;
    if (this.trackUrl) URL.revokeObjectURL(this.trackUrl);
    this.trackUrl = null;
  }

  async open(postId, at) {
    this.close();
    const status = h('p', { class: 'muted review-status', role: 'status' }, 'Loading the recording…');
    const back = h('a', { href: '#/', class: 'back' }, '← Back');
    const title = h('h1', { id: 'channel-title' }, 'Review');
    replace(this.main, h('header', { class: 'channel-header' }, back, title), status);
    let post;
    let found;
    try {
      post = await get(`/posts/${enc(postId)}`);
      back.href = `#/c/${post.channel_id}`;
      found = reviewable(post) ? { post, ...reviewable(post) } : await this.inThread(post);
    } catch (e) {
      status.textContent = `The recording cannot be opened: ${e.message}`;
      return;
    }
    if (!found) {
      status.textContent = 'This post has no recording with a transcript to review.';
      return;
    }
    title.textContent = `Review: ${found.media.name}`;
    const res = await api('GET', `/files/${enc(found.vtt.id)}`, undefined, { raw: true });
    const source = res.ok ? await res.text() : '';
    let cues = [];
    let problem = res.ok ? null : `The transcript could not be loaded (HTTP ${res.status}).`;
    try {
      if (res.ok) cues = parseVtt(source);
    } catch (e) {
      problem = `The transcript cannot be read: ${e.message}`;
    }
    // The track comes from the text already fetched, as text/vtt: the file
    // download's type is whatever its bytes were sniffed as.
    this.trackUrl = URL.createObjectURL(new Blob([problem ? 'WEBVTT\n' : source], { type: 'text/vtt' }));
    const player = h(found.audio ? 'audio' : 'video', {
      id: 'review-player', controls: true, preload: 'metadata', src: `/api/v1/files/${enc(found.media.id)}`,
    }, h('track', { kind: 'subtitles', src: this.trackUrl, srclang: 'en', label: 'Transcript', default: true }));
    this.player = player;
    const list = h('ol', { class: 'cues', id: 'review-cues', 'aria-label': 'Transcript' }, cues.map((c, i) => h('li', {},
      h('button', { type: 'button', class: 'cue', dataset: { index: String(i), start: String(c.start) }, onclick: () => this.seek(c.start, true) },
        h('time', {}, clock(c.start)),
        c.speaker && h('strong', { class: 'speaker' }, c.speaker),
        h('span', { class: 'text' }, c.text)))));
    let current = -1;
    player.addEventListener('timeupdate', () => {
      const k = cueAt(cues, player.currentTime);
      if (k === current) return;
      list.children[current]?.firstElementChild.removeAttribute('aria-current');
      current = k;
      const b = list.children[k]?.firstElementChild;
      if (b) {
        b.setAttribute('aria-current', 'true');
        b.scrollIntoView({ block: 'nearest' });
      }
    });
    replace(status, problem ?? `${cues.length} ${cues.length === 1 ? 'cue' : 'cues'} in the transcript`);
    status.classList.toggle('error', !!problem);
    this.main.append(h('div', { class: 'review' }, h('div', { class: 'review-media' }, player), list));
    if (at > 0) this.seek(at, false);
    announce(`Reviewing ${found.media.name}`);
  }

  // The thread's most recent post with a recording and a transcript.
  async inThread(post) {
    const posts = await get(`/posts/${enc(post.root_id || post.id)}/thread`);
    const withMedia = posts.filter((p) => reviewable(p)).sort((a, b) => b.created_at - a.created_at);
    const p = withMedia[0];
    return p ? { post: p, ...reviewable(p) } : null;
  }

  seek(seconds, play) {
    const p = this.player;
    if (!p) return;
    const go = () => {
      p.currentTime = seconds;
      if (play) p.play().catch(() => {});
    };
    // Before its metadata a media element may drop a seek.
    if (p.readyState >= HTMLMediaElement.HAVE_METADATA) go();
    else p.addEventListener('loadedmetadata', go, { once: true });
  }
}
