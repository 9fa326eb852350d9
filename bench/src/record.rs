//! `bench record`: what a recording costs, in CPU-seconds per recorded minute.
//!
//! A synthetic call is captured first (not measured): N speakers talking in
//! turns (Opus tones from libopus, a near-silent signal between turns), each
//! with a camera (VP8 from libvpx, a moving pattern), and one screen share.
//! It goes through offloader's `CaptureWriter` as the bot would write it.
//! Then each recording is made from the read-back capture and timed with
//! getrusage (user + system of this process, all threads): audio-only
//! (Opus copied into Ogg) and composed WebM and MP4 at the chosen profile.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use ffmpeg_next as ff;
use offloader::record::{
    CaptureWriter, Codec, ComposeOptions, MediaKind, Source, TrackMeta, compose, read_capture,
    write_audio_only,
};
use serde::Serialize;
use signaling::jobs::{QualityProfile, RecordingFormat};

use crate::procstat::self_cpu;

/// The composed-recording target: a quarter of a core per recording.
pub const TARGET_CORES: f64 = 0.25;

/// What to record.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    pub minutes: f64,
    pub speakers: usize,
    pub camera: (u32, u32, u32),
    pub screen: (u32, u32, u32),
    pub profile: QualityProfile,
    pub out: PathBuf,
}

/// One recording's cost.
#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    pub kind: String,
    pub cpu_s: f64,
    pub wall_s: f64,
    pub cpu_s_per_min: f64,
    /// CPU-seconds per second of recording: cores one recording keeps busy
    /// if it were made in real time.
    pub cores: f64,
    pub bytes: u64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct RecordResult {
    pub minutes: f64,
    pub speakers: usize,
    pub camera: String,
    pub screen: String,
    pub profile: String,
    pub costs: Vec<Cost>,
}

/// Captures the synthetic call and measures each recording.
pub fn run(o: &RecordOptions) -> anyhow::Result<RecordResult> {
    ff::init()?;
    ff::log::set_level(ff::log::Level::Fatal);
    std::fs::create_dir_all(&o.out)?;
    let cap_dir = o.out.join("record-capture");
    let _ = std::fs::remove_dir_all(&cap_dir);
    eprintln!(
        "bench record: capturing a {:.1}-minute call (not measured)",
        o.minutes
    );
    capture_call(o, &cap_dir)?;
    let cap = read_capture(&cap_dir)?;
    let secs = o.minutes * 60.0;
    let mut costs = Vec::new();
    let mut measure = |kind: &str, file: &str, f: &dyn Fn(&Path) -> anyhow::Result<()>| {
        let path = o.out.join(file);
        let (c0, w0) = (self_cpu(), Instant::now());
        f(&path)?;
        let cpu = (self_cpu() - c0).as_secs_f64();
        let wall = w0.elapsed().as_secs_f64();
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        eprintln!(
            "bench record: {kind}: {cpu:.2} CPU-s ({:.3} CPU-s per recorded minute)",
            cpu / o.minutes
        );
        costs.push(Cost {
            kind: kind.into(),
            cpu_s: cpu,
            wall_s: wall,
            cpu_s_per_min: cpu / o.minutes,
            cores: cpu / secs,
            bytes,
        });
        anyhow::Ok(())
    };
    measure("audio-only Ogg (Opus copied)", "record-audio.ogg", &|p| {
        write_audio_only(&cap, p)?;
        Ok(())
    })?;
    for (kind, file, format) in [
        (
            "composed WebM (VP8 + Opus)",
            "record.webm",
            RecordingFormat::Webm,
        ),
        (
            "composed MP4 (H.264 + AAC)",
            "record.mp4",
            RecordingFormat::Mp4,
        ),
    ] {
        measure(kind, file, &|p| {
            let opts = ComposeOptions {
                format,
                profile: o.profile,
                speaker_tracks: false,
            };
            compose(&cap, p, &opts)?;
            Ok(())
        })?;
    }
    let size = |(w, h, fps): (u32, u32, u32)| format!("{w}x{h}@{fps}");
    let (pw, ph) = o.profile.size();
    Ok(RecordResult {
        minutes: o.minutes,
        speakers: o.speakers,
        camera: size(o.camera),
        screen: size(o.screen),
        profile: format!("{pw}x{ph}@{}", offloader::record::profile_fps(o.profile)),
        costs,
    })
}

/// The result as a Markdown section.
pub fn markdown(r: &RecordResult, when: &str) -> String {
    let mut s = format!(
        "### {when} — record\n\n{:.1} recorded minutes, {} speakers (cameras {} VP8) + screen {} VP8; composed at {}.\n\n\
         | recording | CPU-s | CPU-s per recorded minute | cores per recording | vs {TARGET_CORES} core target | file |\n\
         | --- | --- | --- | --- | --- | --- |\n",
        r.minutes, r.speakers, r.camera, r.screen, r.profile
    );
    for c in &r.costs {
        s.push_str(&format!(
            "| {} | {:.2} | {:.3} | {:.4} | {:.0} % | {:.1} MB |\n",
            c.kind,
            c.cpu_s,
            c.cpu_s_per_min,
            c.cores,
            c.cores / TARGET_CORES * 100.0,
            c.bytes as f64 / 1e6
        ));
    }
    s
}

struct Track {
    meta: TrackMeta,
    /// (send time s, data, keyframe)
    frames: Vec<(f64, Vec<u8>, bool)>,
    clock: u32,
}

fn capture_call(o: &RecordOptions, dir: &Path) -> anyhow::Result<()> {
    let secs = o.minutes * 60.0;
    let t0: u64 = 1_700_000_000_000_000;
    let mut tracks = Vec::new();
    let meta = |id, kind, codec, clock_rate, source, k: usize| TrackMeta {
        id,
        kind,
        codec,
        clock_rate,
        source,
        session_id: format!("s{k}"),
        speaker: format!("Speaker {k}"),
        started_us: t0,
    };
    for k in 0..o.speakers {
        let id = tracks.len() as u32;
        let frames = opus_turns(k, o.speakers, secs)?;
        tracks.push(Track {
            meta: meta(
                id,
                MediaKind::Audio,
                Codec::Opus,
                48_000,
                Source::Microphone,
                k,
            ),
            frames,
            clock: 48_000,
        });
        let id = tracks.len() as u32;
        tracks.push(Track {
            meta: meta(id, MediaKind::Video, Codec::Vp8, 90_000, Source::Camera, k),
            frames: vp8_pattern(o.camera, secs, k)?,
            clock: 90_000,
        });
    }
    let id = tracks.len() as u32;
    tracks.push(Track {
        meta: meta(id, MediaKind::Video, Codec::Vp8, 90_000, Source::Screen, 0),
        frames: vp8_pattern(o.screen, secs, 99)?,
        clock: 90_000,
    });
    // Interleave by arrival, as the bot would receive them.
    let mut evs: Vec<(u64, usize, u64, usize)> = Vec::new();
    for (t, tr) in tracks.iter().enumerate() {
        for (i, (at, _, _)) in tr.frames.iter().enumerate() {
            let arrival = t0 + (at * 1e6) as u64 + 20_000 + (i as u64 * 7919 % 15) * 1000;
            evs.push((arrival, t, (at * f64::from(tr.clock)) as u64, i));
        }
    }
    evs.sort();
    let mut w = CaptureWriter::open(dir)?;
    for tr in &tracks {
        w.track(tr.meta.clone())?;
    }
    let mut next_flush = t0 + 1_000_000;
    for (arrival, t, rtp, i) in evs {
        if arrival >= next_flush {
            w.flush()?;
            next_flush += 1_000_000;
        }
        let (_, data, key) = &tracks[t].frames[i];
        w.frame(tracks[t].meta.id, arrival, rtp, *key, data)?;
    }
    w.flush()?;
    Ok(())
}

/// Speaker `k` of `n` talks (a tone) in every n-th 10-second turn and is
/// near-silent otherwise.
fn opus_turns(k: usize, n: usize, secs: f64) -> anyhow::Result<Vec<(f64, Vec<u8>, bool)>> {
    let codec = ff::encoder::find_by_name("libopus").context("no libopus encoder")?;
    let mut enc = ff::codec::Context::new_with_codec(codec)
        .encoder()
        .audio()?;
    enc.set_rate(48_000);
    enc.set_channel_layout(ff::ChannelLayout::MONO);
    enc.set_channels(1);
    let fmt = ff::format::Sample::I16(ff::format::sample::Type::Packed);
    enc.set_format(fmt);
    enc.set_bit_rate(32_000);
    enc.set_time_base(ff::Rational::new(1, 48_000));
    let mut enc = enc.open_as(codec)?;
    let frames = (secs / 0.02) as usize;
    let freq = 300.0 + 150.0 * k as f32;
    let mut out = Vec::with_capacity(frames);
    let mut pkt = ff::Packet::empty();
    for f in 0..frames {
        let mut frame = ff::frame::Audio::new(fmt, 960, ff::ChannelLayout::MONO);
        frame.set_rate(48_000);
        frame.set_pts(Some(f as i64 * 960));
        let talking = (f / 500) % n == k;
        let data = frame.data_mut(0);
        for i in 0..960 {
            let t = (f * 960 + i) as f32 / 48_000.0;
            let amp = if talking { 0.3 } else { 0.003 };
            let s = (amp * (2.0 * std::f32::consts::PI * freq * t).sin() * 32767.0) as i16;
            data[2 * i..2 * i + 2].copy_from_slice(&s.to_le_bytes());
        }
        enc.send_frame(&frame)?;
        while enc.receive_packet(&mut pkt).is_ok() {
            let at = out.len() as f64 * 0.02;
            out.push((at, pkt.data().unwrap_or(&[]).to_vec(), true));
        }
    }
    Ok(out)
}

/// A moving pattern (bars, a gradient and a drifting block), VP8 realtime.
fn vp8_pattern(
    (w, h, fps): (u32, u32, u32),
    secs: f64,
    seed: usize,
) -> anyhow::Result<Vec<(f64, Vec<u8>, bool)>> {
    let codec = ff::encoder::find_by_name("libvpx").context("no libvpx encoder")?;
    let mut enc = ff::codec::Context::new_with_codec(codec)
        .encoder()
        .video()?;
    enc.set_width(w);
    enc.set_height(h);
    enc.set_format(ff::format::Pixel::YUV420P);
    enc.set_time_base(ff::Rational::new(1, fps as i32));
    enc.set_frame_rate(Some(ff::Rational::new(fps as i32, 1)));
    enc.set_bit_rate((w * h * fps) as usize / 8);
    enc.set_gop(fps * 10);
    let mut opts = ff::Dictionary::new();
    opts.set("deadline", "realtime");
    opts.set("cpu-used", "16");
    opts.set("lag-in-frames", "0");
    let mut enc = enc.open_as_with(codec, opts)?;
    let n = (secs * f64::from(fps)) as usize;
    let mut out = Vec::with_capacity(n);
    let mut pkt = ff::Packet::empty();
    for i in 0..n {
        // A fresh picture each time: the encoder may still hold the last one.
        let mut frame = ff::frame::Video::new(ff::format::Pixel::YUV420P, w, h);
        frame.set_pts(Some(i as i64));
        let stride = frame.stride(0);
        let y = frame.data_mut(0);
        let (bx, by) = (
            (i * 3 + seed * 50) % w as usize,
            (i * 2 + seed * 30) % h as usize,
        );
        for row in 0..h as usize {
            for col in 0..w as usize {
                let block = col.abs_diff(bx) < 40 && row.abs_diff(by) < 40;
                y[row * stride + col] = if block {
                    220
                } else {
                    (30 + ((col + i * 2 + seed * 7) / 24 % 2) * 60 + row * 60 / h as usize) as u8
                };
            }
        }
        for p in 1..3 {
            let s = frame.stride(p);
            let d = frame.data_mut(p);
            for row in 0..(h as usize).div_ceil(2) {
                for col in 0..(w as usize).div_ceil(2) {
                    d[row * s + col] = (100 + (seed * 20 + col / 8) % 56) as u8;
                }
            }
        }
        enc.send_frame(&frame)?;
        while enc.receive_packet(&mut pkt).is_ok() {
            let at = out.len() as f64 / f64::from(fps);
            out.push((at, pkt.data().unwrap_or(&[]).to_vec(), pkt.is_key()));
        }
    }
    Ok(out)
}
