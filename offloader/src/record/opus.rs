//! Opus packets: their length from the TOC byte (RFC 6716 §3.1), a streaming
//! decoder to mono PCM, and the decimation live captions need.

use ffmpeg_next as ff;

use super::RecordError;

/// Opus always runs at 48 kHz inside.
pub const OPUS_RATE: u32 = 48_000;

/// A 20 ms CELT fullband packet that decodes to silence: fills gaps in
/// copied streams so positions stay on the wall clock.
pub const SILENCE_20MS: [u8; 3] = [0xF8, 0xFF, 0xFE];

/// Samples at 48 kHz one Opus packet holds, or `None` when the packet is not
/// a valid Opus packet (empty, bad frame count, over 120 ms).
pub fn packet_samples(data: &[u8]) -> Option<u32> {
    let toc = *data.first()?;
    let config = toc >> 3;
    let per_frame: u32 = match config {
        0..=11 => [480, 960, 1920, 2880][(config % 4) as usize],
        12..=15 => [480, 960][(config % 2) as usize],
        _ => [120, 240, 480, 960][(config % 4) as usize],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => {
            let n = u32::from(*data.get(1)? & 0x3F);
            if n == 0 {
                return None;
            }
            n
        }
    };
    let total = per_frame * frames;
    // RFC 6716: a packet lasts at most 120 ms; code 1 needs an even payload.
    if total > 5760 || (toc & 3 == 1 && !(data.len() - 1).is_multiple_of(2)) {
        return None;
    }
    Some(total)
}

/// Decodes one track's Opus packets into mono `f32` PCM at a chosen rate.
///
/// For live captions: feed packets as they arrive; each call returns the PCM
/// of that packet (empty for a packet the decoder rejects: the error says why).
pub struct OpusDecoder {
    dec: ff::decoder::Audio,
    frame: ff::frame::Audio,
    decimate: Decimator,
    pcm: Vec<f32>,
}

impl OpusDecoder {
    /// A decoder whose output rate is `out_rate`: 48000 or an integer
    /// fraction of it (24000, 16000, 12000, 8000).
    pub fn new(out_rate: u32) -> Result<Self, RecordError> {
        if out_rate == 0 || !OPUS_RATE.is_multiple_of(out_rate) || OPUS_RATE / out_rate > 6 {
            return Err(RecordError::Unsupported(format!(
                "Opus output rate {out_rate}"
            )));
        }
        super::init_ffmpeg()?;
        let codec = ff::decoder::find_by_name("libopus")
            .or_else(|| ff::decoder::find(ff::codec::Id::OPUS))
            .ok_or_else(|| RecordError::Unsupported("no Opus decoder in FFmpeg".into()))?;
        let mut ctx = ff::codec::Context::new_with_codec(codec).decoder();
        // Mono: a stereo packet is downmixed by the decoder itself.
        // SAFETY: the context is not yet opened; FFmpeg 5.1 reads the legacy
        // `channels`/`channel_layout` fields when it opens.
        unsafe {
            let p = ctx.as_mut_ptr();
            (*p).sample_rate = OPUS_RATE as i32;
            #[allow(deprecated)]
            {
                (*p).channels = 1;
                (*p).channel_layout = ff::ChannelLayout::MONO.bits();
            }
        }
        let dec = ctx.open_as(codec)?.audio()?;
        Ok(OpusDecoder {
            dec,
            frame: ff::frame::Audio::empty(),
            decimate: Decimator::new((OPUS_RATE / out_rate) as usize),
            pcm: Vec::new(),
        })
    }

    /// Decodes one packet to mono PCM at the output rate.
    pub fn decode(&mut self, packet: &[u8]) -> Result<Vec<f32>, RecordError> {
        self.pcm.clear();
        self.decode_48k(packet)?;
        Ok(self.decimate.run(&self.pcm))
    }

    /// Decodes one packet at 48 kHz into `self.pcm` (appending).
    pub(crate) fn decode_48k(&mut self, packet: &[u8]) -> Result<&[f32], RecordError> {
        let start = self.pcm.len();
        if packet_samples(packet).is_none() {
            return Err(RecordError::BadFrame("not an Opus packet".into()));
        }
        let pkt = ff::Packet::copy(packet);
        self.dec
            .send_packet(&pkt)
            .map_err(|e| RecordError::BadFrame(format!("Opus: {e}")))?;
        loop {
            match self.dec.receive_frame(&mut self.frame) {
                Ok(()) => mono_f32(&self.frame, &mut self.pcm)?,
                Err(ff::Error::Other {
                    errno: ff::error::EAGAIN,
                })
                | Err(ff::Error::Eof) => break,
                Err(e) => return Err(RecordError::BadFrame(format!("Opus: {e}"))),
            }
        }
        Ok(&self.pcm[start..])
    }

    /// Empties the 48 kHz buffer `decode_48k` appends to.
    pub(crate) fn take_48k(&mut self) -> Vec<f32> {
        std::mem::take(&mut self.pcm)
    }
}

/// Appends channel 0 of a decoded audio frame as `f32`.
pub(crate) fn mono_f32(frame: &ff::frame::Audio, out: &mut Vec<f32>) -> Result<(), RecordError> {
    use ff::format::Sample as S;
    use ff::format::sample::Type::{Packed, Planar};
    let n = frame.samples();
    let ch = usize::from(frame.channels().max(1));
    let data = frame.data(0);
    match frame.format() {
        S::F32(t) => {
            let stride = if t == Planar { 1 } else { ch };
            out.extend((0..n).map(|i| {
                let o = i * stride * 4;
                f32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]])
            }));
        }
        S::I16(t) => {
            let stride = if t == Packed { ch } else { 1 };
            out.extend((0..n).map(|i| {
                let o = i * stride * 2;
                f32::from(i16::from_le_bytes([data[o], data[o + 1]])) / 32768.0
            }));
        }
        other => {
            return Err(RecordError::Unsupported(format!(
                "decoded sample format {other:?}"
            )));
        }
    }
    Ok(())
}

/// Integer-factor decimation with a windowed-sinc low-pass, streaming.
pub(crate) struct Decimator {
    factor: usize,
    taps: Vec<f32>,
    history: Vec<f32>,
    phase: usize,
}

impl Decimator {
    pub(crate) fn new(factor: usize) -> Self {
        let taps = if factor <= 1 {
            vec![1.0]
        } else {
            lowpass(factor)
        };
        Decimator {
            factor: factor.max(1),
            history: vec![0.0; taps.len()],
            taps,
            phase: 0,
        }
    }

    pub(crate) fn run(&mut self, input: &[f32]) -> Vec<f32> {
        if self.factor == 1 {
            return input.to_vec();
        }
        let mut out = Vec::with_capacity(input.len() / self.factor + 1);
        let n = self.taps.len();
        for &x in input {
            self.history.rotate_left(1);
            self.history[n - 1] = x;
            self.phase += 1;
            if self.phase == self.factor {
                self.phase = 0;
                out.push(
                    self.history
                        .iter()
                        .zip(&self.taps)
                        .map(|(a, b)| a * b)
                        .sum(),
                );
            }
        }
        out
    }
}

/// A Blackman-windowed sinc at 0.45 of the output band, unity gain at DC.
fn lowpass(factor: usize) -> Vec<f32> {
    let n = 16 * factor + 1;
    let fc = 0.45 / factor as f64;
    let mid = (n / 2) as f64;
    let mut taps: Vec<f64> = (0..n)
        .map(|i| {
            let x = i as f64 - mid;
            let sinc = if x == 0.0 {
                2.0 * fc
            } else {
                (2.0 * std::f64::consts::PI * fc * x).sin() / (std::f64::consts::PI * x)
            };
            let w = 0.42 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64).cos()
                + 0.08 * (4.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64).cos();
            sinc * w
        })
        .collect();
    let sum: f64 = taps.iter().sum();
    taps.iter_mut().for_each(|t| *t /= sum);
    taps.into_iter().map(|t| t as f32).collect()
}
