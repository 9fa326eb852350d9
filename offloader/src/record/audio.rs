//! Audio-only recordings: each speaker's Opus packets copied into one stream
//! per speaker (Ogg or WebM, by the file's extension), never re-encoded.
//!
//! Every stream starts at the recording's start; a gap (before a speaker
//! joins, loss, a restart) is filled with 20 ms Opus silence packets so each
//! packet sits at its wall time in every player, whatever it makes of
//! timestamp gaps.

use std::path::Path;

use ffmpeg_next as ff;

use super::opus::{OPUS_RATE, SILENCE_20MS, packet_samples};
use super::timeline::{TimedFrame, timed_frames};
use super::{Capture, Codec, MediaKind, RecordError, audio_sessions, init_ffmpeg};

/// Samples of one silence packet.
const SILENCE_SAMPLES: i64 = 960;
/// A packet this far behind its stream's position overlaps one already
/// written (two tracks of one speaker at once) and is dropped.
const MAX_OVERLAP: i64 = 4800;

/// What an audio-only file holds.
#[derive(Debug, Clone, Default)]
pub struct AudioOnlyReport {
    /// One per stream, in stream order.
    pub streams: Vec<SpeakerStream>,
    /// Wall clock (unix µs) of the file's time 0.
    pub start_us: i64,
    /// Length of the longest stream.
    pub duration_us: i64,
}

/// One speaker's stream in an audio-only file.
#[derive(Debug, Clone, Default)]
pub struct SpeakerStream {
    pub session_id: String,
    pub speaker: String,
    /// Captured packets copied.
    pub packets: u64,
    /// Silence packets put in gaps.
    pub silence_packets: u64,
    /// Captured packets that were not Opus (corrupt) and were left out.
    pub bad_packets: u64,
    /// Packets left out because they overlapped earlier ones.
    pub overlapping: u64,
}

/// Writes one Opus stream per speaker to `out` (`.ogg`/`.opus` → Ogg,
/// `.webm`/`.mka` → Matroska), packets copied.
pub fn write_audio_only(capture: &Capture, out: &Path) -> Result<AudioOnlyReport, RecordError> {
    init_ffmpeg()?;
    let sessions = audio_sessions(capture);
    let per_session: Vec<Vec<TimedFrame<'_>>> = sessions
        .iter()
        .map(|(session, _)| {
            let mut frames: Vec<TimedFrame<'_>> = capture
                .tracks
                .iter()
                .filter(|t| {
                    t.meta.kind == MediaKind::Audio
                        && t.meta.codec == Codec::Opus
                        && t.meta.session_id == *session
                })
                .flat_map(timed_frames)
                .collect();
            frames.sort_by_key(|f| f.wall_us);
            frames
        })
        .collect();
    let start_us = per_session
        .iter()
        .filter_map(|f| f.first().map(|f| f.wall_us))
        .min()
        .ok_or(RecordError::Empty("audio"))?;

    let format = match out.extension().and_then(|e| e.to_str()) {
        Some("ogg" | "opus" | "oga") => "ogg",
        Some("webm") => "webm",
        Some("mka") => "matroska",
        _ => {
            return Err(RecordError::Unsupported(format!(
                "audio-only file name {} (want .ogg, .opus, .webm or .mka)",
                out.display()
            )));
        }
    };
    let mut octx = ff::format::output_as(out, format).map_err(|source| RecordError::FfmpegAt {
        what: "create the output",
        source,
    })?;
    for (i, frames) in per_session.iter().enumerate() {
        let stereo = frames
            .iter()
            .any(|f| f.data.first().is_some_and(|t| t & 0x04 != 0));
        add_opus_stream(&mut octx, if stereo { 2 } else { 1 })?;
        let mut meta = ff::Dictionary::new();
        meta.set("title", &sessions[i].1);
        meta.set("session_id", &sessions[i].0);
        if let Some(mut s) = octx.stream_mut(i) {
            s.set_metadata(meta);
        }
    }
    octx.write_header()
        .map_err(|source| RecordError::FfmpegAt {
            what: "write the header",
            source,
        })?;
    let time_bases: Vec<ff::Rational> = octx.streams().map(|s| s.time_base()).collect();

    let mut report = AudioOnlyReport {
        start_us,
        ..Default::default()
    };
    // Packets of all streams in time order, so the muxer interleaves cheaply.
    let mut cursors: Vec<StreamCursor<'_>> = per_session
        .iter()
        .zip(&sessions)
        .map(|(frames, (session_id, speaker))| StreamCursor {
            frames,
            next: 0,
            pos: 0,
            stats: SpeakerStream {
                session_id: session_id.clone(),
                speaker: speaker.clone(),
                ..Default::default()
            },
        })
        .collect();
    while let Some((i, _)) = cursors
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.frames.get(c.next).map(|f| (i, f.wall_us)))
        .min_by_key(|&(_, t)| t)
    {
        let c = &mut cursors[i];
        let f = c.frames[c.next];
        c.next += 1;
        let Some(samples) = packet_samples(f.data) else {
            c.stats.bad_packets += 1;
            tracing::warn!(speaker = %c.stats.speaker, "audio-only: not an Opus packet, left out as a loss");
            continue;
        };
        let target = (f.wall_us - start_us) * i64::from(OPUS_RATE) / 1_000_000;
        if target < c.pos - MAX_OVERLAP {
            c.stats.overlapping += 1;
            continue;
        }
        while target >= c.pos + SILENCE_SAMPLES {
            write_packet(
                &mut octx,
                i,
                time_bases[i],
                &SILENCE_20MS,
                c.pos,
                SILENCE_SAMPLES,
            )?;
            c.pos += SILENCE_SAMPLES;
            c.stats.silence_packets += 1;
        }
        write_packet(
            &mut octx,
            i,
            time_bases[i],
            f.data,
            c.pos,
            i64::from(samples),
        )?;
        c.pos += i64::from(samples);
        c.stats.packets += 1;
    }
    octx.write_trailer()
        .map_err(|source| RecordError::FfmpegAt {
            what: "finish the file",
            source,
        })?;
    report.duration_us =
        cursors.iter().map(|c| c.pos).max().unwrap_or(0) * 1_000_000 / i64::from(OPUS_RATE);
    report.streams = cursors.into_iter().map(|c| c.stats).collect();
    Ok(report)
}

struct StreamCursor<'a> {
    frames: &'a [TimedFrame<'a>],
    next: usize,
    /// Next sample position (48 kHz) in the stream.
    pos: i64,
    stats: SpeakerStream,
}

fn write_packet(
    octx: &mut ff::format::context::Output,
    stream: usize,
    tb: ff::Rational,
    data: &[u8],
    pos: i64,
    samples: i64,
) -> Result<(), RecordError> {
    let mut pkt = ff::Packet::copy(data);
    pkt.set_stream(stream);
    pkt.set_pts(Some(pos));
    pkt.set_dts(Some(pos));
    pkt.set_duration(samples);
    pkt.set_flags(ff::packet::Flags::KEY);
    pkt.rescale_ts(ff::Rational::new(1, OPUS_RATE as i32), tb);
    pkt.write_interleaved(octx)
        .map_err(|source| RecordError::FfmpegAt {
            what: "write a packet",
            source,
        })
}

/// A stream-copy Opus stream: the muxer needs the Opus header (RFC 7845
/// §5.1) as extradata, which the ID header of an Ogg file is made from.
pub(crate) fn add_opus_stream(
    octx: &mut ff::format::context::Output,
    channels: u8,
) -> Result<(), RecordError> {
    let mut head = Vec::with_capacity(19);
    head.extend_from_slice(b"OpusHead");
    head.push(1);
    head.push(channels);
    // No pre-skip: the sender's encoder started long before the first
    // captured packet, and skipping would shift the stream off the clock.
    head.extend_from_slice(&0u16.to_le_bytes());
    head.extend_from_slice(&OPUS_RATE.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes());
    head.push(0); // mapping family 0: mono or stereo
    let mut stream =
        octx.add_stream(ff::codec::Id::OPUS)
            .map_err(|source| RecordError::FfmpegAt {
                what: "add a stream",
                source,
            })?;
    stream.set_time_base(ff::Rational::new(1, OPUS_RATE as i32));
    // SAFETY: the stream was just made by avformat_new_stream and owns its
    // codecpar; extradata is allocated with av_mallocz plus the padding
    // FFmpeg requires, and codecpar frees it.
    unsafe {
        let par = (*stream.as_mut_ptr()).codecpar;
        (*par).codec_type = ff::ffi::AVMediaType::AVMEDIA_TYPE_AUDIO;
        (*par).codec_id = ff::ffi::AVCodecID::AV_CODEC_ID_OPUS;
        (*par).sample_rate = OPUS_RATE as i32;
        ff::ffi::av_channel_layout_default(&mut (*par).ch_layout, i32::from(channels));
        #[allow(deprecated)]
        {
            (*par).channels = i32::from(channels);
            (*par).channel_layout = if channels == 2 { 3 } else { 4 };
        }
        let pad = ff::ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
        let buf = ff::ffi::av_mallocz(head.len() + pad) as *mut u8;
        if buf.is_null() {
            return Err(RecordError::Ffmpeg(ff::Error::Other {
                errno: libc_enomem(),
            }));
        }
        std::ptr::copy_nonoverlapping(head.as_ptr(), buf, head.len());
        (*par).extradata = buf;
        (*par).extradata_size = head.len() as i32;
    }
    Ok(())
}

fn libc_enomem() -> i32 {
    12
}
