// WebVTT as the recorder writes it (cues with `<v Name>` voice tags),
// read for the reviewer's transcript. Strict about the header and the
// timings, since a cue at a wrong time would seek the player wrongly;
// lenient about what a cue may carry beyond that (settings, other tags).

/** A file that is not WebVTT, or a cue whose timing cannot be read. */
export class VttError extends Error {
  constructor(line, message) {
    super(line ? `line ${line}: ${message}` : message);
    this.name = 'VttError';
    this.line = line;
  }
}

// hh:mm:ss.ttt or mm:ss.ttt (hours optional, as the format allows).
const TIMESTAMP = /^(?:(\d{2,}):)?([0-5]\d):([0-5]\d)\.(\d{3})$/;

/** Seconds of a WebVTT timestamp, or null if it is not one. */
export function parseTimestamp(s) {
  const m = TIMESTAMP.exec(s.trim());
  if (!m) return null;
  return Number(m[1] ?? 0) * 3600 + Number(m[2]) * 60 + Number(m[3]) + Number(m[4]) / 1000;
}

// Entities a cue's text may use; anything else stays as written.
const ENTITIES = { '&amp;': '&', '&lt;': '<', '&gt;': '>', '&nbsp;': '\u00a0', '&lrm;': '\u200e', '&rlm;': '\u200f' };

// A cue's payload as plain text and its first voice: tags dropped.
function payload(lines) {
  const raw = lines.join('\n');
  const voice = /<v(?:\.[^\s>]+)*\s+([^>]+)>/.exec(raw);
  const text = raw.replace(/<[^>]*>/g, '').replace(/&(?:amp|lt|gt|nbsp|lrm|rlm);/g, (e) => ENTITIES[e]).trim();
  return { speaker: voice ? voice[1].trim() : null, text };
}

/**
 * Cues of a WebVTT file, in file order: `{ id, start, end, speaker, text }`
 * with times in seconds. NOTE, STYLE and REGION blocks are skipped.
 * Throws VttError when the header is missing or a timing line is bad.
 */
export function parseVtt(source) {
  const lines = String(source).replace(/^\uFEFF/, '').split(/\r\n|\r|\n/);
  if (!/^WEBVTT(?:[ \t].*)?$/.test(lines[0] ?? '')) throw new VttError(1, 'not a WebVTT file (no WEBVTT header)');
  const cues = [];
  let i = 1;
  // The header's own lines run to the first blank line.
  while (i < lines.length && lines[i].trim() !== '') i++;
  while (i < lines.length) {
    while (i < lines.length && lines[i].trim() === '') i++;
    if (i >= lines.length) break;
    const start = i;
    const block = [];
    while (i < lines.length && lines[i].trim() !== '') block.push(lines[i++]);
    if (/^(NOTE|STYLE|REGION)(?:[ \t]|$)/.test(block[0])) continue;
    const t = block.findIndex((l) => l.includes('-->'));
    if (t < 0) throw new VttError(start + 1, `a cue without a timing line: ${JSON.stringify(block[0])}`);
    if (t > 1) throw new VttError(start + 1, 'a cue identifier spans several lines');
    const [from, rest] = block[t].split('-->');
    const to = rest.trim().split(/[ \t]+/)[0];
    const s = parseTimestamp(from);
    const e = parseTimestamp(to);
    if (s === null || e === null) throw new VttError(start + t + 1, `bad cue timing: ${JSON.stringify(block[t])}`);
    if (e < s) throw new VttError(start + t + 1, `the cue ends before it starts: ${JSON.stringify(block[t])}`);
    cues.push({ id: t === 1 ? block[0] : null, start: s, end: e, ...payload(block.slice(t + 1)) });
  }
  return cues;
}

/** The cue playing at `time` (the last one started, if several overlap), or -1. */
export function cueAt(cues, time) {
  let found = -1;
  for (let k = 0; k < cues.length; k++) {
    if (cues[k].start <= time && time < cues[k].end) found = k;
  }
  return found;
}
