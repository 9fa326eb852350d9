//! Live captions: audio chunks in as they arrive, caption texts out soon
//! after the words.
//!
//! Each speaker has a [`Vad`]. An utterance goes to Whisper when it ends
//! (400 ms of quiet) or when it reaches [`PARTIAL_MS`], cut at its quietest
//! recent frame, the rest continuing as the next piece; so no caption waits
//! for a long sentence to finish. Transcription runs on one worker thread
//! so `push` never blocks the media path; finished captions are handed
//! back by the next `push` (or [`LiveCaptions::recv_timeout`]).
//!
//! Queue: at most [`QUEUE_CAPACITY`] pieces wait for the worker; when it
//! falls behind, the oldest waiting piece is dropped (a late caption is
//! worth less than a current one) and counted in [`LiveCaptions::dropped`].

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::vad::{self, FRAME, ONSET_FRAMES, PRE_ROLL_FRAMES, Vad, VadEvent};
use super::{Engine, SAMPLE_RATE, TranscribeError};

/// A piece of speech this long is captioned without waiting for its end.
pub const PARTIAL_MS: u64 = 2_500;
/// Pieces waiting for the worker; beyond it the oldest is dropped.
pub const QUEUE_CAPACITY: usize = 16;
/// A partial piece is cut at the quietest of its last frames (300 ms), so
/// the cut tends to fall between words.
const CUT_SEARCH_FRAMES: usize = 15;
/// A jump in a speaker's timestamps larger than this is a gap (muted,
/// packets lost): the utterance in progress ends there.
const GAP_MS: u64 = 200;

const FRAME_MS: u64 = (FRAME as u64) * 1000 / SAMPLE_RATE as u64;
const PARTIAL_FRAMES: usize = (PARTIAL_MS / FRAME_MS) as usize;

/// A caption: `text` said by `speaker` between `start_ms` and `end_ms` (on
/// the clock of `push`'s `at_ms`). `continues` is true when the utterance
/// goes on and the next caption of this speaker carries on the sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caption {
    pub speaker: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
    pub continues: bool,
}

struct Job {
    speaker: String,
    start_ms: u64,
    end_ms: u64,
    pcm: Vec<f32>,
    continues: bool,
}

#[derive(Default)]
struct Queue {
    jobs: Mutex<(VecDeque<Job>, bool)>,
    ready: Condvar,
}

struct SpeakerState {
    vad: Vad,
    /// Time of frame 0 of this speaker's timeline.
    origin_ms: u64,
    /// Frames seen.
    frames: usize,
    /// Samples of an incomplete frame.
    partial: Vec<f32>,
    /// The last frames, for the pre-roll of a starting utterance.
    history: VecDeque<(usize, Vec<f32>)>,
    /// The utterance in progress: first frame, audio and frame levels.
    utterance: Option<(usize, Vec<f32>, Vec<f32>)>,
}

impl SpeakerState {
    fn new(origin_ms: u64) -> SpeakerState {
        SpeakerState {
            vad: Vad::new(),
            origin_ms,
            frames: 0,
            partial: Vec::with_capacity(FRAME),
            history: VecDeque::new(),
            utterance: None,
        }
    }

    fn frame_ms(&self, frame: usize) -> u64 {
        self.origin_ms + frame as u64 * FRAME_MS
    }

    /// Where the next sample falls on the caller's clock.
    fn next_ms(&self) -> u64 {
        self.frame_ms(self.frames) + self.partial.len() as u64 * 1000 / u64::from(SAMPLE_RATE)
    }

    fn job(&self, speaker: &str, first: usize, pcm: Vec<f32>, continues: bool) -> Job {
        let frames = pcm.len() / FRAME;
        Job {
            speaker: speaker.to_owned(),
            start_ms: self.frame_ms(first),
            end_ms: self.frame_ms(first + frames),
            pcm,
            continues,
        }
    }

    /// One whole frame through the detector; pieces ready for Whisper go to `out`.
    fn frame(&mut self, speaker: &str, frame: Vec<f32>, out: &mut Vec<Job>) {
        let i = self.frames;
        self.frames += 1;
        let level = vad::frame_db(&frame);
        let events = self.vad.push(level);
        if let Some((_, pcm, levels)) = &mut self.utterance {
            pcm.extend_from_slice(&frame);
            levels.push(level);
        }
        self.history.push_back((i, frame));
        if self.history.len() > ONSET_FRAMES + PRE_ROLL_FRAMES {
            self.history.pop_front();
        }
        for e in events {
            match e {
                VadEvent::Start(first) => {
                    let mut pcm = Vec::new();
                    let mut levels = Vec::new();
                    for (f, samples) in &self.history {
                        if *f >= first {
                            pcm.extend_from_slice(samples);
                            levels.push(vad::frame_db(samples));
                        }
                    }
                    self.utterance = Some((first, pcm, levels));
                }
                VadEvent::End(end) => {
                    if let Some((first, mut pcm, _)) = self.utterance.take() {
                        pcm.truncate(end.saturating_sub(first) * FRAME);
                        if !pcm.is_empty() {
                            out.push(self.job(speaker, first, pcm, false));
                        }
                    }
                }
            }
        }
        self.cut_partial(speaker, out);
    }

    /// A long utterance in progress: send what it has so far, cut at a quiet frame.
    fn cut_partial(&mut self, speaker: &str, out: &mut Vec<Job>) {
        let Some((first, pcm, levels)) = &mut self.utterance else {
            return;
        };
        if levels.len() < PARTIAL_FRAMES {
            return;
        }
        let search = levels.len() - CUT_SEARCH_FRAMES.min(levels.len());
        let mut cut = levels.len();
        let mut quietest = f32::INFINITY;
        for (j, &l) in levels.iter().enumerate().skip(search) {
            if l < quietest {
                quietest = l;
                cut = j + 1;
            }
        }
        let rest_pcm = pcm.split_off(cut * FRAME);
        let rest_levels = levels.split_off(cut);
        let sent = std::mem::replace(pcm, rest_pcm);
        *levels = rest_levels;
        let sent_first = *first;
        *first += cut;
        out.push(self.job(speaker, sent_first, sent, true));
    }

    /// Ends the utterance in progress (a gap in the audio, or the end).
    fn flush(&mut self, speaker: &str, out: &mut Vec<Job>) {
        if let Some(VadEvent::End(end)) = self.vad.finish(self.frames)
            && let Some((first, mut pcm, _)) = self.utterance.take()
        {
            pcm.truncate(end.saturating_sub(first) * FRAME);
            if !pcm.is_empty() {
                out.push(self.job(speaker, first, pcm, false));
            }
        }
        self.utterance = None;
    }
}

/// Live captions for one call. See the module docs for timing and queueing.
pub struct LiveCaptions {
    speakers: HashMap<String, SpeakerState>,
    queue: Arc<Queue>,
    results: mpsc::Receiver<Result<Caption, TranscribeError>>,
    worker: Option<JoinHandle<()>>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for LiveCaptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCaptions")
            .field("speakers", &self.speakers.len())
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl LiveCaptions {
    /// Starts the transcription worker. `language` as for
    /// [`Engine::transcribe`]; an unknown code is refused here.
    pub fn new(engine: Arc<Engine>, language: Option<&str>) -> Result<Self, TranscribeError> {
        if let Some(l) = language
            && whisper_rs::get_lang_id(l).is_none()
        {
            return Err(TranscribeError::Language(l.to_owned()));
        }
        let language = language.map(str::to_owned);
        let queue = Arc::new(Queue::default());
        let (tx, results) = mpsc::channel();
        let q = Arc::clone(&queue);
        let worker = std::thread::Builder::new()
            .name("live-captions".into())
            .spawn(move || worker(&engine, language.as_deref(), &q, &tx))
            .map_err(|e| TranscribeError::Load {
                path: "live-captions worker".into(),
                detail: e.to_string(),
            })?;
        Ok(LiveCaptions {
            speakers: HashMap::new(),
            queue,
            results,
            worker: Some(worker),
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Feeds `speaker`'s 16 kHz audio whose first sample is at `at_ms`, and
    /// returns the captions finished since the last call (any speaker).
    pub fn push(
        &mut self,
        speaker: &str,
        at_ms: u64,
        pcm16k: &[f32],
    ) -> Result<Vec<Caption>, TranscribeError> {
        let mut jobs = Vec::new();
        let state = self
            .speakers
            .entry(speaker.to_owned())
            .or_insert_with(|| SpeakerState::new(at_ms));
        if at_ms > state.next_ms() + GAP_MS {
            state.flush(speaker, &mut jobs);
            *state = SpeakerState::new(at_ms);
        }
        let mut rest = pcm16k;
        while !rest.is_empty() {
            let take = (FRAME - state.partial.len()).min(rest.len());
            state.partial.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if state.partial.len() == FRAME {
                let frame = std::mem::replace(&mut state.partial, Vec::with_capacity(FRAME));
                state.frame(speaker, frame, &mut jobs);
            }
        }
        self.enqueue(jobs);
        self.poll()
    }

    fn enqueue(&self, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        // The lock guards plain data; a panic while holding it cannot leave
        // it half-updated, so a poisoned lock is still usable.
        let mut g = self.queue.jobs.lock().unwrap_or_else(|e| e.into_inner());
        for job in jobs {
            if g.0.len() >= QUEUE_CAPACITY {
                g.0.pop_front();
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            g.0.push_back(job);
        }
        self.queue.ready.notify_one();
    }

    /// Captions finished so far, without waiting.
    pub fn poll(&mut self) -> Result<Vec<Caption>, TranscribeError> {
        let mut out = Vec::new();
        while let Ok(r) = self.results.try_recv() {
            out.push(r?);
        }
        Ok(out)
    }

    /// Waits up to `timeout` for the next caption.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Caption>, TranscribeError> {
        match self.results.recv_timeout(timeout) {
            Ok(r) => r.map(Some),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(TranscribeError::WorkerGone),
        }
    }

    /// Pieces dropped because the worker fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Ends every utterance in progress, waits for the worker to caption
    /// everything queued, and returns those captions.
    pub fn finish(mut self) -> Result<Vec<Caption>, TranscribeError> {
        let mut jobs = Vec::new();
        for (speaker, state) in &mut self.speakers {
            state.flush(speaker, &mut jobs);
        }
        self.enqueue(jobs);
        self.stop();
        let mut out = Vec::new();
        while let Ok(r) = self.results.try_recv() {
            out.push(r?);
        }
        Ok(out)
    }

    fn stop(&mut self) {
        {
            let mut g = self.queue.jobs.lock().unwrap_or_else(|e| e.into_inner());
            g.1 = true;
        }
        self.queue.ready.notify_all();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl Drop for LiveCaptions {
    fn drop(&mut self) {
        self.stop();
    }
}

fn worker(
    engine: &Engine,
    language: Option<&str>,
    queue: &Queue,
    tx: &mpsc::Sender<Result<Caption, TranscribeError>>,
) {
    loop {
        let job = {
            let mut g = queue.jobs.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(job) = g.0.pop_front() {
                    break job;
                }
                if g.1 {
                    return;
                }
                g = queue.ready.wait(g).unwrap_or_else(|e| e.into_inner());
            }
        };
        let result = engine.transcribe(&job.pcm, language).map(|segs| {
            let text: Vec<String> = segs.into_iter().map(|s| s.text).collect();
            Caption {
                speaker: job.speaker,
                start_ms: job.start_ms,
                end_ms: job.end_ms,
                text: text.join(" "),
                continues: job.continues,
            }
        });
        if matches!(&result, Ok(c) if c.text.is_empty()) {
            continue;
        }
        if tx.send(result).is_err() {
            return;
        }
    }
}
