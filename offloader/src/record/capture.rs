//! The capture log: what the recording bot received, written as it arrives.
//!
//! A job's capture directory holds numbered segment files, `seg-000001.cap`,
//! `seg-000002.cap`, … Each [`CaptureWriter::open`] starts a new segment after
//! the existing ones, so a restart after a crash appends and never rewrites.
//!
//! # Segment format (version 1, integers little-endian)
//!
//! ```text
//! segment := MAGIC ("ENCCAP01", 8 bytes) record*
//! record  := len:u32  kind:u8  body:[u8; len-1]  crc:u32
//! ```
//! `len` counts `kind` and `body`; `crc` is the CRC-32 (IEEE) of `kind` and
//! `body`. `len` is at most [`MAX_RECORD`]. Record kinds:
//!
//! | kind | body |
//! | --- | --- |
//! | 1 track | id:u32 kind:u8 codec:u8 clock_rate:u32 source:u8 started_us:u64 session_id:str speaker:str |
//! | 2 frame | track:u32 arrival_us:u64 rtp_time:u64 flags:u8 (bit 0 keyframe) data:[u8] (rest) |
//! | 3 track ended | track:u32 at_us:u64 |
//! | 4 speaking | track:u32 at_us:u64 speaking:u8 |
//!
//! `str` is `len:u16` then UTF-8 bytes. Unknown kinds are an error (a newer
//! writer's log is not silently half-read).
//!
//! A crash can leave the last record of a segment cut short (or, on some
//! file systems, its tail zeroed): a record that runs to the end of its
//! segment and is incomplete or fails its checksum is dropped. Anything else
//! that does not parse is an error naming the segment and the offset.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// The first bytes of every segment file.
pub const MAGIC: &[u8; 8] = b"ENCCAP01";
/// The largest record (kind + body): a video keyframe of a 4K screen share
/// stays far below it; a length above it is garbage, not a frame.
pub const MAX_RECORD: u32 = 16 << 20;
/// Bytes the writer gathers before it hands them to the file.
const WRITE_CHUNK: usize = 256 << 10;

const KIND_TRACK: u8 = 1;
const KIND_FRAME: u8 = 2;
const KIND_ENDED: u8 = 3;
const KIND_SPEAKING: u8 = 4;

/// Errors of the capture log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    #[error("capture {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("capture segment {segment}: not a capture segment (bad magic)")]
    BadMagic { segment: PathBuf },
    #[error("capture segment {segment} offset {offset}: {what}")]
    Corrupt {
        segment: PathBuf,
        offset: u64,
        what: String,
    },
    #[error("track {0} is not known to this capture")]
    UnknownTrack(u32),
    #[error("track {0} was already declared")]
    DuplicateTrack(u32),
    #[error("frame of {0} bytes is larger than a record may be")]
    FrameTooLarge(usize),
    #[error("{0} is longer than 65535 bytes")]
    NameTooLong(&'static str),
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
}

/// The codec of a track's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Opus,
    Vp8,
    Vp9,
    H264,
}

/// What a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Microphone,
    Camera,
    Screen,
}

/// A track as the bot announces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackMeta {
    /// Unique within the job, across restarts.
    pub id: u32,
    pub kind: MediaKind,
    pub codec: Codec,
    /// RTP clock rate (48000 for Opus, 90000 for video).
    pub clock_rate: u32,
    pub source: Source,
    /// The call session the track belongs to (one per participant device).
    pub session_id: String,
    /// Display name of the participant.
    pub speaker: String,
    /// Wall clock (unix µs) when the track started.
    pub started_us: u64,
}

/// One depacketized frame as captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedFrame {
    /// Wall clock (unix µs) when it arrived.
    pub arrival_us: u64,
    /// Extended RTP time in the track's clock rate.
    pub rtp_time: u64,
    pub keyframe: bool,
    pub data: Vec<u8>,
}

/// A track and everything captured for it, in arrival order.
#[derive(Debug, Clone)]
pub struct CapturedTrack {
    pub meta: TrackMeta,
    pub frames: Vec<CapturedFrame>,
    /// Wall clock (unix µs) the bot saw the track end, if it did.
    pub ended_us: Option<u64>,
    /// The segment (1-based) the track was declared in: a new bot run.
    pub segment: u32,
}

/// An active-speaker hint from the SFU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeakingEvent {
    pub track: u32,
    pub at_us: u64,
    pub speaking: bool,
}

/// A job's whole capture log, read back.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    /// In declaration order.
    pub tracks: Vec<CapturedTrack>,
    pub speaking: Vec<SpeakingEvent>,
    /// Segments read.
    pub segments: u32,
    /// Torn records dropped at segment ends (crashes mid-write).
    pub torn_records: u32,
}

impl Capture {
    /// The id a restarted bot gives its first new track.
    pub fn next_track_id(&self) -> u32 {
        self.tracks.iter().map(|t| t.meta.id + 1).max().unwrap_or(0)
    }

    /// The track with this id.
    pub fn track(&self, id: u32) -> Option<&CapturedTrack> {
        self.tracks.iter().find(|t| t.meta.id == id)
    }
}

/// Appends one bot run's capture to a job's capture directory.
///
/// Records are gathered in memory and written in chunks; [`flush`](Self::flush)
/// writes and syncs them. Dropping the writer without `flush` loses what was
/// gathered since the last one, exactly as a crash would.
pub struct CaptureWriter {
    path: PathBuf,
    file: File,
    buf: Vec<u8>,
    tracks: HashMap<u32, ()>,
}

impl CaptureWriter {
    /// Opens `dir` (creating it), starting a new segment after any existing ones.
    pub fn open(dir: &Path) -> Result<Self, CaptureError> {
        fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let next = segment_paths(dir)?.last().map(|(n, _)| n + 1).unwrap_or(1);
        let path = dir.join(segment_name(next));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        file.write_all(MAGIC).map_err(|e| io(&path, e))?;
        // The directory entry must survive a crash too, or the segment is lost.
        file.sync_all().map_err(|e| io(&path, e))?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(CaptureWriter {
            path,
            file,
            buf: Vec::with_capacity(WRITE_CHUNK * 2),
            tracks: HashMap::new(),
        })
    }

    /// The segment file this writer appends to.
    pub fn segment_path(&self) -> &Path {
        &self.path
    }

    /// A track starts.
    pub fn track(&mut self, meta: TrackMeta) -> Result<(), CaptureError> {
        if self.tracks.insert(meta.id, ()).is_some() {
            return Err(CaptureError::DuplicateTrack(meta.id));
        }
        if meta.session_id.len() > u16::MAX as usize {
            return Err(CaptureError::NameTooLong("session id"));
        }
        if meta.speaker.len() > u16::MAX as usize {
            return Err(CaptureError::NameTooLong("speaker"));
        }
        let mut b = Vec::with_capacity(32 + meta.session_id.len() + meta.speaker.len());
        b.extend_from_slice(&meta.id.to_le_bytes());
        b.push(kind_byte(meta.kind));
        b.push(codec_byte(meta.codec));
        b.extend_from_slice(&meta.clock_rate.to_le_bytes());
        b.push(source_byte(meta.source));
        b.extend_from_slice(&meta.started_us.to_le_bytes());
        put_str(&mut b, &meta.session_id);
        put_str(&mut b, &meta.speaker);
        self.record(KIND_TRACK, &[&b])
    }

    /// One depacketized frame (a whole Opus or VP8 frame).
    pub fn frame(
        &mut self,
        track: u32,
        arrival_us: u64,
        rtp_time: u64,
        keyframe: bool,
        data: &[u8],
    ) -> Result<(), CaptureError> {
        if !self.tracks.contains_key(&track) {
            return Err(CaptureError::UnknownTrack(track));
        }
        if data.len() > MAX_RECORD as usize - 32 {
            return Err(CaptureError::FrameTooLarge(data.len()));
        }
        let mut head = [0u8; 21];
        head[0..4].copy_from_slice(&track.to_le_bytes());
        head[4..12].copy_from_slice(&arrival_us.to_le_bytes());
        head[12..20].copy_from_slice(&rtp_time.to_le_bytes());
        head[20] = keyframe as u8;
        self.record(KIND_FRAME, &[&head, data])
    }

    /// A track ended.
    pub fn track_ended(&mut self, track: u32, at_us: u64) -> Result<(), CaptureError> {
        if !self.tracks.contains_key(&track) {
            return Err(CaptureError::UnknownTrack(track));
        }
        let mut b = [0u8; 12];
        b[0..4].copy_from_slice(&track.to_le_bytes());
        b[4..12].copy_from_slice(&at_us.to_le_bytes());
        self.record(KIND_ENDED, &[&b])
    }

    /// An active-speaker hint.
    pub fn speaking(&mut self, track: u32, at_us: u64, speaking: bool) -> Result<(), CaptureError> {
        if !self.tracks.contains_key(&track) {
            return Err(CaptureError::UnknownTrack(track));
        }
        let mut b = [0u8; 13];
        b[0..4].copy_from_slice(&track.to_le_bytes());
        b[4..12].copy_from_slice(&at_us.to_le_bytes());
        b[12] = speaking as u8;
        self.record(KIND_SPEAKING, &[&b])
    }

    /// Writes everything so far and makes it durable.
    pub fn flush(&mut self) -> Result<(), CaptureError> {
        self.write_out()?;
        self.file.sync_data().map_err(|e| io(&self.path, e))
    }

    fn record(&mut self, kind: u8, parts: &[&[u8]]) -> Result<(), CaptureError> {
        let len: usize = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&[kind]);
        self.buf.extend_from_slice(&(len as u32).to_le_bytes());
        self.buf.push(kind);
        for p in parts {
            crc.update(p);
            self.buf.extend_from_slice(p);
        }
        self.buf.extend_from_slice(&crc.finalize().to_le_bytes());
        if self.buf.len() >= WRITE_CHUNK {
            self.write_out()?;
        }
        Ok(())
    }

    fn write_out(&mut self) -> Result<(), CaptureError> {
        if !self.buf.is_empty() {
            self.file
                .write_all(&self.buf)
                .map_err(|e| io(&self.path, e))?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// Reads every segment of a capture directory, in order.
pub fn read_capture(dir: &Path) -> Result<Capture, CaptureError> {
    let mut cap = Capture::default();
    let mut index: HashMap<u32, usize> = HashMap::new();
    for (n, path) in segment_paths(dir)? {
        cap.segments += 1;
        read_segment(&path, n, &mut cap, &mut index).map_err(|e| match e {
            SegmentError::Io(e) => io(&path, e),
            SegmentError::BadMagic => CaptureError::BadMagic {
                segment: path.clone(),
            },
            SegmentError::Corrupt(offset, what) => CaptureError::Corrupt {
                segment: path.clone(),
                offset,
                what,
            },
        })?;
    }
    Ok(cap)
}

enum SegmentError {
    Io(std::io::Error),
    BadMagic,
    Corrupt(u64, String),
}

impl From<std::io::Error> for SegmentError {
    fn from(e: std::io::Error) -> Self {
        SegmentError::Io(e)
    }
}

/// Reads one segment record by record, so a long segment is never held
/// whole in memory next to the frames taken from it.
fn read_segment(
    path: &Path,
    segment: u32,
    cap: &mut Capture,
    index: &mut HashMap<u32, usize>,
) -> Result<(), SegmentError> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    if size < MAGIC.len() as u64 {
        // A crash right after creating the file: nothing was in it.
        cap.torn_records += u32::from(size > 0);
        return Ok(());
    }
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(SegmentError::BadMagic);
    }
    let mut off = MAGIC.len() as u64;
    let mut buf = Vec::new();
    while off < size {
        let rest = size - off;
        if rest < 4 {
            cap.torn_records += 1;
            break;
        }
        let mut head = [0u8; 4];
        r.read_exact(&mut head)?;
        let len = u32::from_le_bytes(head);
        if len == 0 || len > MAX_RECORD {
            if head == [0; 4] && rest_is_zero(&mut r)? {
                // A zero-filled tail left by the file system after a crash.
                cap.torn_records += 1;
                break;
            }
            return Err(SegmentError::Corrupt(
                off,
                format!("record length {len} out of range"),
            ));
        }
        let end = 4 + u64::from(len) + 4;
        if rest < end {
            cap.torn_records += 1;
            break;
        }
        buf.resize(len as usize + 4, 0);
        r.read_exact(&mut buf)?;
        let (body, crc) = buf.split_at(len as usize);
        let want = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32fast::hash(body) != want {
            if rest == end || rest_is_zero(&mut r)? {
                cap.torn_records += 1;
                break;
            }
            return Err(SegmentError::Corrupt(
                off,
                "record checksum mismatch".into(),
            ));
        }
        apply(body, segment, cap, index).map_err(|what| SegmentError::Corrupt(off, what))?;
        off += end;
    }
    Ok(())
}

/// Whether everything left to read is zero bytes.
fn rest_is_zero(r: &mut impl Read) -> Result<bool, std::io::Error> {
    let mut chunk = [0u8; 8192];
    loop {
        let n = r.read(&mut chunk)?;
        if n == 0 {
            return Ok(true);
        }
        if chunk[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
    }
}

fn apply(
    body: &[u8],
    segment: u32,
    cap: &mut Capture,
    index: &mut HashMap<u32, usize>,
) -> Result<(), String> {
    let mut r = Reader { b: &body[1..] };
    match body[0] {
        KIND_TRACK => {
            let id = r.u32()?;
            let kind = match r.u8()? {
                0 => MediaKind::Audio,
                1 => MediaKind::Video,
                k => return Err(format!("unknown media kind {k}")),
            };
            let codec = match r.u8()? {
                0 => Codec::Opus,
                1 => Codec::Vp8,
                2 => Codec::Vp9,
                3 => Codec::H264,
                c => return Err(format!("unknown codec {c}")),
            };
            let clock_rate = r.u32()?;
            let source = match r.u8()? {
                0 => Source::Microphone,
                1 => Source::Camera,
                2 => Source::Screen,
                s => return Err(format!("unknown source {s}")),
            };
            let started_us = r.u64()?;
            let session_id = r.str()?;
            let speaker = r.str()?;
            if index.contains_key(&id) {
                return Err(format!("track {id} declared twice"));
            }
            if clock_rate == 0 {
                return Err(format!("track {id} has clock rate 0"));
            }
            index.insert(id, cap.tracks.len());
            cap.tracks.push(CapturedTrack {
                meta: TrackMeta {
                    id,
                    kind,
                    codec,
                    clock_rate,
                    source,
                    session_id,
                    speaker,
                    started_us,
                },
                frames: Vec::new(),
                ended_us: None,
                segment,
            });
        }
        KIND_FRAME => {
            let track = r.u32()?;
            let arrival_us = r.u64()?;
            let rtp_time = r.u64()?;
            let flags = r.u8()?;
            let i = *index
                .get(&track)
                .ok_or(format!("frame of undeclared track {track}"))?;
            cap.tracks[i].frames.push(CapturedFrame {
                arrival_us,
                rtp_time,
                keyframe: flags & 1 != 0,
                data: r.b.to_vec(),
            });
            return Ok(());
        }
        KIND_ENDED => {
            let track = r.u32()?;
            let at = r.u64()?;
            let i = *index
                .get(&track)
                .ok_or(format!("end of undeclared track {track}"))?;
            cap.tracks[i].ended_us = Some(at);
        }
        KIND_SPEAKING => {
            let track = r.u32()?;
            let at_us = r.u64()?;
            let speaking = r.u8()? != 0;
            if !index.contains_key(&track) {
                return Err(format!("speaking hint for undeclared track {track}"));
            }
            cap.speaking.push(SpeakingEvent {
                track,
                at_us,
                speaking,
            });
        }
        k => return Err(format!("unknown record kind {k}")),
    }
    if !r.b.is_empty() {
        return Err(format!(
            "{} stray bytes after a record of kind {}",
            r.b.len(),
            body[0]
        ));
    }
    Ok(())
}

struct Reader<'a> {
    b: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.b.len() < n {
            return Err("record shorter than its fields".into());
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn str(&mut self) -> Result<String, String> {
        let mut a = [0u8; 2];
        a.copy_from_slice(self.take(2)?);
        let n = u16::from_le_bytes(a) as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "name is not UTF-8".to_string())
    }
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u16).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

fn kind_byte(k: MediaKind) -> u8 {
    match k {
        MediaKind::Audio => 0,
        MediaKind::Video => 1,
    }
}

fn codec_byte(c: Codec) -> u8 {
    match c {
        Codec::Opus => 0,
        Codec::Vp8 => 1,
        Codec::Vp9 => 2,
        Codec::H264 => 3,
    }
}

fn source_byte(s: Source) -> u8 {
    match s {
        Source::Microphone => 0,
        Source::Camera => 1,
        Source::Screen => 2,
    }
}

fn segment_name(n: u32) -> String {
    format!("seg-{n:06}.cap")
}

/// The directory's segment files, by number.
fn segment_paths(dir: &Path) -> Result<Vec<(u32, PathBuf)>, CaptureError> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return Err(io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(num) = name
            .strip_prefix("seg-")
            .and_then(|n| n.strip_suffix(".cap"))
        else {
            continue;
        };
        if let Ok(n) = num.parse::<u32>() {
            out.push((n, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn io(path: &Path, source: std::io::Error) -> CaptureError {
    CaptureError::Io {
        path: path.to_owned(),
        source,
    }
}
