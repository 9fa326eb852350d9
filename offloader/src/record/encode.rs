//! The composed file: one video encoder, one or more audio encoders, and
//! the muxer they write to. Encoders are single-threaded: a recording job
//! shares the node with others, and one thread per job spends the least CPU
//! per recorded minute.

use std::path::Path;

use ffmpeg_next as ff;

use super::RecordError;
use super::opus::OPUS_RATE;

/// Video codec settings of one output.
pub(crate) struct VideoSettings {
    pub codec: &'static str,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bit_rate: usize,
    pub options: Vec<(&'static str, String)>,
}

/// Audio codec settings of one output.
pub(crate) struct AudioSettings {
    pub codec: &'static str,
    pub bit_rate: usize,
    pub format: ff::format::Sample,
    /// Used when the encoder does not say (it takes any frame size).
    pub default_frame: usize,
}

struct AudioOut {
    enc: ff::encoder::Audio,
    stream: usize,
    frame_size: usize,
    fifo: Vec<f32>,
    /// Samples sent so far: the next frame's pts.
    sent: i64,
}

/// An open composed output.
pub(crate) struct Output {
    octx: ff::format::context::Output,
    video: ff::encoder::Video,
    video_stream: usize,
    video_tb: ff::Rational,
    audio: Vec<AudioOut>,
    audio_fmt: ff::format::Sample,
    packet: ff::Packet,
}

fn ffe(what: &'static str) -> impl Fn(ff::Error) -> RecordError {
    move |source| RecordError::FfmpegAt { what, source }
}

impl Output {
    /// Opens `path` as `format` with one video stream and `audio_names.len()`
    /// audio streams (the first is the mix), all of whose titles are given.
    pub(crate) fn create(
        path: &Path,
        format: &str,
        v: &VideoSettings,
        a: &AudioSettings,
        audio_names: &[String],
    ) -> Result<Self, RecordError> {
        let mut octx = ff::format::output_as(path, format).map_err(ffe("create the output"))?;
        let global = octx
            .format()
            .flags()
            .contains(ff::format::Flags::GLOBAL_HEADER);

        let vcodec = ff::encoder::find_by_name(v.codec)
            .ok_or_else(|| RecordError::Unsupported(format!("no {} encoder in FFmpeg", v.codec)))?;
        let mut venc = ff::codec::Context::new_with_codec(vcodec)
            .encoder()
            .video()?;
        venc.set_width(v.width);
        venc.set_height(v.height);
        venc.set_format(ff::format::Pixel::YUV420P);
        let video_tb = ff::Rational::new(1, v.fps as i32);
        venc.set_time_base(video_tb);
        venc.set_frame_rate(Some(ff::Rational::new(v.fps as i32, 1)));
        venc.set_bit_rate(v.bit_rate);
        venc.set_gop(v.fps * 4);
        if global {
            venc.set_flags(ff::codec::Flags::GLOBAL_HEADER);
        }
        let mut opts = ff::Dictionary::new();
        for (k, val) in &v.options {
            opts.set(k, val);
        }
        let video = venc
            .open_as_with(vcodec, opts)
            .map_err(ffe("open the video encoder"))?;
        let video_stream = {
            let mut s = octx
                .add_stream(vcodec)
                .map_err(ffe("add the video stream"))?;
            s.set_parameters(&video);
            s.set_time_base(video_tb);
            s.set_avg_frame_rate(ff::Rational::new(v.fps as i32, 1));
            s.index()
        };

        let acodec = ff::encoder::find_by_name(a.codec)
            .ok_or_else(|| RecordError::Unsupported(format!("no {} encoder in FFmpeg", a.codec)))?;
        let mut audio = Vec::new();
        for name in audio_names {
            let mut aenc = ff::codec::Context::new_with_codec(acodec)
                .encoder()
                .audio()?;
            aenc.set_rate(OPUS_RATE as i32);
            aenc.set_channel_layout(ff::ChannelLayout::MONO);
            aenc.set_channels(1);
            aenc.set_format(a.format);
            aenc.set_bit_rate(a.bit_rate);
            aenc.set_time_base(ff::Rational::new(1, OPUS_RATE as i32));
            if global {
                aenc.set_flags(ff::codec::Flags::GLOBAL_HEADER);
            }
            let enc = aenc.open_as(acodec).map_err(ffe("open an audio encoder"))?;
            let frame_size = match enc.frame_size() as usize {
                0 => a.default_frame,
                n => n,
            };
            let mut s = octx
                .add_stream(acodec)
                .map_err(ffe("add an audio stream"))?;
            s.set_parameters(&enc);
            s.set_time_base(ff::Rational::new(1, OPUS_RATE as i32));
            let mut meta = ff::Dictionary::new();
            meta.set("title", name);
            s.set_metadata(meta);
            audio.push(AudioOut {
                enc,
                stream: s.index(),
                frame_size,
                fifo: Vec::new(),
                sent: 0,
            });
        }
        octx.write_header().map_err(ffe("write the header"))?;
        Ok(Output {
            octx,
            video,
            video_stream,
            video_tb,
            audio,
            audio_fmt: a.format,
            packet: ff::Packet::empty(),
        })
    }

    /// Encodes one picture, `index` frames from the start.
    pub(crate) fn video_frame(
        &mut self,
        frame: &mut ff::frame::Video,
        index: i64,
    ) -> Result<(), RecordError> {
        frame.set_pts(Some(index));
        self.video.send_frame(frame).map_err(ffe("encode video"))?;
        self.drain_video()
    }

    /// Queues samples (mono, 48 kHz) for audio stream `i` and encodes what
    /// makes whole frames.
    pub(crate) fn audio_samples(&mut self, i: usize, pcm: &[f32]) -> Result<(), RecordError> {
        self.audio[i].fifo.extend_from_slice(pcm);
        while self.audio[i].fifo.len() >= self.audio[i].frame_size {
            self.encode_audio_frame(i)?;
        }
        Ok(())
    }

    fn encode_audio_frame(&mut self, i: usize) -> Result<(), RecordError> {
        let fmt = self.audio_fmt;
        let a = &mut self.audio[i];
        let n = a.frame_size.min(a.fifo.len());
        let mut frame = ff::frame::Audio::new(fmt, a.frame_size, ff::ChannelLayout::MONO);
        frame.set_rate(OPUS_RATE);
        frame.set_samples(n);
        frame.set_pts(Some(a.sent));
        {
            // Mono: packed and planar layouts are the same single plane.
            let data = frame.data_mut(0);
            for (k, s) in a.fifo[..n].iter().enumerate() {
                data[4 * k..4 * k + 4].copy_from_slice(&s.to_le_bytes());
            }
        }
        a.fifo.drain(..n);
        a.sent += n as i64;
        a.enc.send_frame(&frame).map_err(ffe("encode audio"))?;
        self.drain_audio(i)
    }

    /// Flushes the encoders and writes the trailer.
    pub(crate) fn finish(mut self) -> Result<(), RecordError> {
        for i in 0..self.audio.len() {
            if !self.audio[i].fifo.is_empty() {
                // A short last frame only where the encoder takes one;
                // otherwise pad it with silence.
                let caps = self.audio[i].enc.codec().map(|c| c.capabilities());
                let variable = caps.is_some_and(|c| {
                    c.contains(ff::codec::capabilities::Capabilities::SMALL_LAST_FRAME)
                });
                if !variable {
                    let pad = self.audio[i].frame_size - self.audio[i].fifo.len();
                    self.audio[i].fifo.extend(std::iter::repeat_n(0.0, pad));
                }
                self.encode_audio_frame(i)?;
            }
            self.audio[i].enc.send_eof().map_err(ffe("finish audio"))?;
            self.drain_audio(i)?;
        }
        self.video.send_eof().map_err(ffe("finish video"))?;
        self.drain_video()?;
        self.octx.write_trailer().map_err(ffe("finish the file"))
    }

    fn drain_video(&mut self) -> Result<(), RecordError> {
        let tb = self.octx.stream(self.video_stream).map(|s| s.time_base());
        let tb = tb.unwrap_or(self.video_tb);
        while self.video.receive_packet(&mut self.packet).is_ok() {
            self.packet.set_stream(self.video_stream);
            self.packet.rescale_ts(self.video_tb, tb);
            self.packet
                .write_interleaved(&mut self.octx)
                .map_err(ffe("write video"))?;
        }
        Ok(())
    }

    fn drain_audio(&mut self, i: usize) -> Result<(), RecordError> {
        let a = &mut self.audio[i];
        let src = ff::Rational::new(1, OPUS_RATE as i32);
        let tb = self
            .octx
            .stream(a.stream)
            .map(|s| s.time_base())
            .unwrap_or(src);
        while a.enc.receive_packet(&mut self.packet).is_ok() {
            self.packet.set_stream(a.stream);
            self.packet.rescale_ts(src, tb);
            self.packet
                .write_interleaved(&mut self.octx)
                .map_err(ffe("write audio"))?;
        }
        Ok(())
    }
}
