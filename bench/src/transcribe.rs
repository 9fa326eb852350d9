//! `bench transcribe`: Whisper's speed on this machine.
//!
//! A track of synthetic speech (espeak-ng, sentences with pauses) goes
//! through the offloader's whole batch path: voice-activity segmentation,
//! then Whisper on each utterance with one thread. The real-time factor is
//! wall time over audio time (0.2 means a minute of speech takes 12 s);
//! CPU time and what the rest of the machine did during the run are
//! reported next to it, since a busy machine slows whisper.cpp.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use offloader::transcribe::{Engine, SpeakerAudio, transcribe_call};
use serde::Serialize;

use crate::procstat;

/// What the speech says, cycled until the track is long enough.
const SENTENCES: &[&str] = &[
    "hello world this is a test of the transcription system",
    "please send the quarterly report to the finance team by friday",
    "we will meet again next week to discuss the budget",
    "can everyone hear me clearly",
    "the weather today is sunny and warm",
    "let us move on to the next item on the agenda",
    "i will share my screen so that you can see the numbers",
    "thank you all for joining this call",
];
/// Pause between sentences: long enough for the detector to end an utterance.
const PAUSE_MS: usize = 700;

/// `bench transcribe` settings.
#[derive(Clone, Debug)]
pub struct TranscribeOptions {
    /// Seconds of audio (speech and pauses) to transcribe.
    pub seconds: f64,
    /// A ggml model; when absent, `ct2_dir` is converted (and cached).
    pub model: Option<PathBuf>,
    /// A CTranslate2 Whisper model directory.
    pub ct2_dir: PathBuf,
    /// Where converted models are cached.
    pub cache_dir: PathBuf,
    pub threads: usize,
    /// Pin the process to this CPU.
    pub pin: Option<usize>,
    pub command: String,
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct TranscribeResult {
    pub date: String,
    pub machine: String,
    pub command: String,
    pub commit: String,
    pub model: String,
    pub threads: usize,
    pub pinning: String,
    pub audio_seconds: f64,
    pub speech_seconds: f64,
    pub cues: usize,
    pub load_seconds: f64,
    pub wall_seconds: f64,
    pub cpu_seconds: f64,
    /// Wall time over audio time.
    pub rtf: f64,
    /// CPU time over audio time.
    pub cpu_rtf: f64,
    /// Cores' worth of CPU the whole machine used during the run.
    pub machine_cores_busy: f64,
    /// Share of the spoken words found in the transcript.
    pub word_overlap: f64,
    pub sample_text: String,
}

impl TranscribeResult {
    /// Terminal summary.
    pub fn table(&self) -> String {
        format!(
            "transcribe: {:.1} s of audio ({:.1} s speech), model {}, {} thread(s), {}\n  \
             load {:.2} s; transcription {:.2} s wall, {:.2} s CPU\n  \
             real-time factor {:.3} (CPU {:.3}); machine busy {:.2} cores during the run\n  \
             {} cues, word overlap {:.0} %; first: {:?}",
            self.audio_seconds,
            self.speech_seconds,
            self.model,
            self.threads,
            self.pinning,
            self.load_seconds,
            self.wall_seconds,
            self.cpu_seconds,
            self.rtf,
            self.cpu_rtf,
            self.machine_cores_busy,
            self.cues,
            self.word_overlap * 100.0,
            self.sample_text
        )
    }

    /// A dated section for `bench/RESULTS.md`.
    pub fn markdown_section(&self) -> String {
        format!(
            "\n### {} — transcription\n\n- machine: {}\n- command: `{}`\n- commit: {}\n- model: {}, {} thread(s), {}\n\n\
             | audio s | speech s | RTF (wall) | RTF (CPU) | load s | machine busy (cores) | cues | word overlap |\n\
             | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n\
             | {:.1} | {:.1} | {:.3} | {:.3} | {:.2} | {:.2} | {} | {:.0} % |\n",
            self.date,
            self.machine,
            self.command,
            self.commit,
            self.model,
            self.threads,
            self.pinning,
            self.audio_seconds,
            self.speech_seconds,
            self.rtf,
            self.cpu_rtf,
            self.load_seconds,
            self.machine_cores_busy,
            self.cues,
            self.word_overlap * 100.0
        )
    }

    /// Writes `<stem>.json` into `dir`.
    pub fn write_files(&self, dir: &Path, stem: &str) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join(format!("{stem}.json")),
            serde_json::to_string_pretty(self)?,
        )?;
        Ok(())
    }
}

/// `text` spoken by espeak-ng, resampled to 16 kHz.
pub fn speak(text: &str) -> anyhow::Result<Vec<f32>> {
    let dir = tempfile::tempdir()?;
    let wav = dir.path().join("speech.wav");
    let status = Command::new("espeak-ng")
        .arg("-w")
        .arg(&wav)
        .arg(text)
        .status()
        .context("running espeak-ng (scripts/setup installs it)")?;
    if !status.success() {
        bail!("espeak-ng failed: {status}");
    }
    let mut r = hound::WavReader::open(&wav).context("reading espeak-ng's WAV")?;
    let spec = r.spec();
    if spec.channels != 1 || spec.bits_per_sample != 16 {
        bail!("espeak-ng wrote {spec:?}, expected 16-bit mono");
    }
    let pcm = r
        .samples::<i16>()
        .map(|s| s.map(|s| f32::from(s) / 32768.0))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(offloader::transcribe::resample_to_16k(
        &pcm,
        spec.sample_rate,
    ))
}

/// Speech and pauses until the track lasts `seconds`; also the words said.
fn build_track(seconds: f64) -> anyhow::Result<(Vec<f32>, usize, String)> {
    let spoken = SENTENCES
        .iter()
        .map(|s| speak(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let want = (seconds * 16_000.0) as usize;
    let mut pcm = Vec::with_capacity(want + 16_000 * 10);
    let mut speech = 0;
    let mut words = String::new();
    for (text, s) in SENTENCES.iter().zip(&spoken).cycle() {
        if pcm.len() >= want {
            break;
        }
        pcm.extend(std::iter::repeat_n(0.0, PAUSE_MS * 16));
        pcm.extend_from_slice(s);
        speech += s.len();
        words.push_str(text);
        words.push(' ');
    }
    Ok((pcm, speech, words))
}

fn word_overlap(expected: &str, got: &str) -> f64 {
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    let want = words(expected);
    let have = words(got);
    if want.is_empty() {
        return 0.0;
    }
    want.iter().filter(|w| have.contains(w)).count() as f64 / want.len() as f64
}

/// Runs the measurement.
pub fn run(o: &TranscribeOptions) -> anyhow::Result<TranscribeResult> {
    let pinning = match o.pin {
        Some(cpu) => {
            procstat::pin_current(&[cpu]).context("pinning to one CPU")?;
            format!("pinned to CPU {cpu}")
        }
        None => "not pinned".to_owned(),
    };
    let model = match &o.model {
        Some(m) => m.clone(),
        None => offloader::model::ensure_ggml(&o.ct2_dir, &o.cache_dir)
            .with_context(|| format!("converting {}", o.ct2_dir.display()))?,
    };
    let (pcm, speech_samples, words) = build_track(o.seconds)?;
    let t = Instant::now();
    let engine = Engine::load(&model, o.threads)?;
    let load_seconds = t.elapsed().as_secs_f64();
    let tracks = [SpeakerAudio {
        speaker: "Speaker".into(),
        start_ms: 0,
        pcm16k: pcm,
    }];
    let busy0 = procstat::system_cpu();
    let cpu0 = procstat::self_cpu();
    let t = Instant::now();
    let cues = transcribe_call(&engine, &tracks, Some("en"))?;
    let wall = t.elapsed().as_secs_f64();
    let cpu = (procstat::self_cpu() - cpu0).as_secs_f64();
    let machine_cores_busy = match (busy0, procstat::system_cpu()) {
        (Some((b0, _)), Some((b1, _))) => b1.saturating_sub(b0).as_secs_f64() / wall,
        _ => 0.0,
    };
    let audio_seconds = tracks[0].pcm16k.len() as f64 / 16_000.0;
    let text: Vec<&str> = cues.iter().map(|c| c.text.as_str()).collect();
    Ok(TranscribeResult {
        date: crate::scenario::now_utc(),
        machine: procstat::machine(),
        command: o.command.clone(),
        commit: crate::scenario::git_commit(),
        model: model.display().to_string(),
        threads: engine.threads(),
        pinning,
        audio_seconds,
        speech_seconds: speech_samples as f64 / 16_000.0,
        cues: cues.len(),
        load_seconds,
        wall_seconds: wall,
        cpu_seconds: cpu,
        rtf: wall / audio_seconds,
        cpu_rtf: cpu / audio_seconds,
        machine_cores_busy,
        word_overlap: word_overlap(&words, &text.join(" ")),
        sample_text: cues.first().map(|c| c.text.clone()).unwrap_or_default(),
    })
}
