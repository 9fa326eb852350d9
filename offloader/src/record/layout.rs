//! The picture: every video track decoded in wall-clock order, and each
//! output frame painted from what is shown — screen share large with the
//! active speaker small, or the active speaker alone, or a dark frame.
//! Only what is shown is scaled, and a picture that has not changed since
//! the last output frame is not scaled again.

use ffmpeg_next as ff;

use super::capture::{CapturedTrack, Codec, Source};
use super::timeline::{TimedFrame, timed_frames};
use super::{RecordError, init_ffmpeg};

/// A camera with no new frame for this long is gone (turned off, ended, or
/// the bot was down); until then its last picture stays (frozen).
const HOLD_US: i64 = 1_000_000;
/// A screen share sends few frames while nothing on it moves: its picture
/// stays this long before the share counts as gone (its end, when the bot
/// saw it, ends it at once).
const SCREEN_HOLD_US: i64 = 10_000_000;
/// Black in limited-range YUV.
const BLACK: [u8; 3] = [16, 128, 128];

/// One video track being decoded.
pub(crate) struct VideoTrack<'a> {
    pub(crate) session_id: &'a str,
    pub(crate) source: Source,
    frames: Vec<TimedFrame<'a>>,
    next: usize,
    ended_us: Option<i64>,
    dec: ff::decoder::Video,
    decoded: ff::frame::Video,
    /// The last good picture and its serial number (bumps when it changes).
    picture: Option<ff::frame::Video>,
    serial: u64,
    last_wall: i64,
    need_key: bool,
    /// Frames that did not decode (corrupt): the picture freezes until the
    /// next keyframe.
    pub(crate) bad_frames: u64,
    scaled: Option<Scaled>,
}

struct Scaled {
    serial: u64,
    w: u32,
    h: u32,
    frame: ff::frame::Video,
    sws: ff::software::scaling::Context,
    src: (ff::format::Pixel, u32, u32),
}

impl<'a> VideoTrack<'a> {
    /// `restarted`: a later bot run followed the one that captured this
    /// track, so the track ended with its last frame (the new run announces
    /// again what was still going).
    pub(crate) fn new(track: &'a CapturedTrack, restarted: bool) -> Result<Self, RecordError> {
        init_ffmpeg()?;
        let id = match track.meta.codec {
            Codec::Vp8 => ff::codec::Id::VP8,
            Codec::Vp9 => ff::codec::Id::VP9,
            Codec::H264 => ff::codec::Id::H264,
            Codec::Opus => return Err(RecordError::Unsupported("Opus as video".into())),
        };
        let codec = ff::decoder::find(id)
            .ok_or_else(|| RecordError::Unsupported(format!("no {id:?} decoder in FFmpeg")))?;
        let mut ctx = ff::codec::Context::new_with_codec(codec);
        ctx.set_threading(ff::threading::Config::count(1));
        let dec = ctx.decoder().open_as(codec)?.video()?;
        let frames = timed_frames(track);
        let mut ended_us = track.ended_us.map(|e| e as i64);
        if restarted && let Some(last) = frames.last() {
            let cut = last.wall_us + HOLD_US;
            ended_us = Some(ended_us.map_or(cut, |e| e.min(cut)));
        }
        Ok(VideoTrack {
            session_id: &track.meta.session_id,
            source: track.meta.source,
            frames,
            next: 0,
            ended_us,
            dec,
            decoded: ff::frame::Video::empty(),
            picture: None,
            serial: 0,
            last_wall: i64::MIN,
            need_key: true,
            bad_frames: 0,
            scaled: None,
        })
    }

    /// Wall clock of the first and just after the last frame.
    pub(crate) fn span(&self) -> Option<(i64, i64)> {
        Some((
            self.frames.first()?.wall_us,
            self.frames.last()?.wall_us + 100_000,
        ))
    }

    /// Decodes every frame up to `now`.
    pub(crate) fn advance(&mut self, now: i64) {
        while let Some(f) = self.frames.get(self.next).copied() {
            if f.wall_us > now {
                break;
            }
            self.next += 1;
            self.last_wall = f.wall_us;
            if self.need_key && !f.keyframe {
                continue;
            }
            match self.decode(f.data) {
                Ok(true) => self.need_key = false,
                Ok(false) => {}
                Err(e) => {
                    self.bad_frames += 1;
                    self.need_key = true;
                    tracing::warn!(error = %e, "recording: video frame left out; frozen until a keyframe");
                }
            }
        }
    }

    fn decode(&mut self, data: &[u8]) -> Result<bool, RecordError> {
        let pkt = ff::Packet::copy(data);
        self.dec
            .send_packet(&pkt)
            .map_err(|e| RecordError::BadFrame(format!("video: {e}")))?;
        let mut got = false;
        loop {
            match self.dec.receive_frame(&mut self.decoded) {
                Ok(()) => {
                    if self.decoded.is_corrupt() {
                        return Err(RecordError::BadFrame("video: corrupt picture".into()));
                    }
                    std::mem::swap(
                        self.picture.get_or_insert_with(ff::frame::Video::empty),
                        &mut self.decoded,
                    );
                    self.serial += 1;
                    got = true;
                }
                Err(ff::Error::Other {
                    errno: ff::error::EAGAIN,
                })
                | Err(ff::Error::Eof) => break,
                Err(e) => return Err(RecordError::BadFrame(format!("video: {e}"))),
            }
        }
        Ok(got)
    }

    /// Whether the track has something to show at `now`.
    pub(crate) fn live(&self, now: i64) -> bool {
        let hold = if self.source == Source::Screen {
            SCREEN_HOLD_US
        } else {
            HOLD_US
        };
        self.picture.is_some()
            && now - self.last_wall <= hold
            && self.ended_us.is_none_or(|e| now < e)
    }

    /// The picture scaled to fit `w`×`h` (aspect kept), scaled only when
    /// the picture or the size changed.
    fn fitted(&mut self, w: u32, h: u32) -> Result<Option<&ff::frame::Video>, RecordError> {
        let Some(pic) = &self.picture else {
            return Ok(None);
        };
        let (sw, sh) = (pic.width().max(1), pic.height().max(1));
        let (dw, dh) = fit(sw, sh, w, h);
        let src = (pic.format(), sw, sh);
        let fresh = self
            .scaled
            .as_ref()
            .is_some_and(|s| s.serial == self.serial && s.w == dw && s.h == dh && s.src == src);
        if !fresh {
            let reuse = self
                .scaled
                .take()
                .filter(|s| s.w == dw && s.h == dh && s.src == src);
            let mut s = match reuse {
                Some(s) => s,
                None => Scaled {
                    serial: 0,
                    w: dw,
                    h: dh,
                    frame: ff::frame::Video::new(ff::format::Pixel::YUV420P, dw, dh),
                    sws: ff::software::scaling::Context::get(
                        src.0,
                        sw,
                        sh,
                        ff::format::Pixel::YUV420P,
                        dw,
                        dh,
                        ff::software::scaling::Flags::FAST_BILINEAR,
                    )
                    .map_err(|source| RecordError::FfmpegAt {
                        what: "set up scaling",
                        source,
                    })?,
                    src,
                },
            };
            s.sws
                .run(pic, &mut s.frame)
                .map_err(|source| RecordError::FfmpegAt {
                    what: "scale",
                    source,
                })?;
            s.serial = self.serial;
            self.scaled = Some(s);
        }
        Ok(self.scaled.as_ref().map(|s| &s.frame))
    }
}

/// The largest even size with the source's aspect inside `w`×`h`.
fn fit(sw: u32, sh: u32, w: u32, h: u32) -> (u32, u32) {
    let (dw, dh) = if u64::from(sw) * u64::from(h) > u64::from(sh) * u64::from(w) {
        (w, (u64::from(sh) * u64::from(w) / u64::from(sw)) as u32)
    } else {
        ((u64::from(sw) * u64::from(h) / u64::from(sh)) as u32, h)
    };
    ((dw & !1).max(2), (dh & !1).max(2))
}

/// What one output frame shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shown {
    Dark,
    /// One track, full frame.
    Full(usize),
    /// A screen share large and a camera small.
    ScreenAndSpeaker(usize, Option<usize>),
}

/// Paints `shown` into `canvas` (YUV 4:2:0, even size).
pub(crate) fn paint(
    canvas: &mut ff::frame::Video,
    tracks: &mut [VideoTrack<'_>],
    shown: Shown,
) -> Result<(), RecordError> {
    // SAFETY: `canvas` is a valid frame; this copies its buffer first if an
    // encoder still holds a reference to it.
    let rc = unsafe { ff::ffi::av_frame_make_writable(canvas.as_mut_ptr()) };
    if rc < 0 {
        return Err(RecordError::Ffmpeg(ff::Error::from(rc)));
    }
    for (p, v) in BLACK.iter().enumerate() {
        canvas.data_mut(p).fill(*v);
    }
    let (w, h) = (canvas.width(), canvas.height());
    match shown {
        Shown::Dark => {}
        Shown::Full(t) => {
            if let Some(pic) = tracks[t].fitted(w, h)? {
                blit(
                    canvas,
                    pic,
                    ((w - pic.width()) / 2) & !1,
                    ((h - pic.height()) / 2) & !1,
                );
            }
        }
        Shown::ScreenAndSpeaker(screen, cam) => {
            if let Some(pic) = tracks[screen].fitted(w, h)? {
                blit(
                    canvas,
                    pic,
                    ((w - pic.width()) / 2) & !1,
                    ((h - pic.height()) / 2) & !1,
                );
            }
            if let Some(c) = cam {
                let (bw, bh) = (w / 4, h / 4);
                let margin = (w / 64) & !1;
                if let Some(pic) = tracks[c].fitted(bw, bh)? {
                    let x = (w - pic.width() - margin) & !1;
                    let y = (h - pic.height() - margin) & !1;
                    blit(canvas, pic, x, y);
                }
            }
        }
    }
    Ok(())
}

fn blit(dst: &mut ff::frame::Video, src: &ff::frame::Video, x: u32, y: u32) {
    for p in 0..3 {
        let shift = u32::from(p > 0);
        let (px, py) = ((x >> shift) as usize, (y >> shift) as usize);
        let rows = (src.height() >> shift) as usize;
        let cols = (src.width() >> shift) as usize;
        let (ss, ds) = (src.stride(p), dst.stride(p));
        let dh = (dst.height() >> shift) as usize;
        let dwid = (dst.width() >> shift) as usize;
        let cols = cols.min(dwid.saturating_sub(px));
        let s = src.data(p);
        let d = dst.data_mut(p);
        for r in 0..rows.min(dh.saturating_sub(py)) {
            d[(py + r) * ds + px..(py + r) * ds + px + cols]
                .copy_from_slice(&s[r * ss..r * ss + cols]);
        }
    }
}
