//! Real encoded media for the recording tests: Opus tones from libopus and
//! VP8 moving patterns from libvpx, through FFmpeg.
#![allow(dead_code)]

use ffmpeg_next as ff;

/// 20 ms of 48 kHz audio.
pub const OPUS_FRAME: usize = 960;

/// Opus packets (20 ms each) of a `freq` Hz tone at amplitude 0.2 lasting
/// `secs`, with a loud 10 ms click starting at each time in `clicks_s`.
pub fn opus_tone(freq: f32, secs: f32, clicks_s: &[f32]) -> Vec<Vec<u8>> {
    ff::init().unwrap();
    let codec = ff::encoder::find_by_name("libopus").expect("libopus encoder");
    let mut enc = ff::codec::Context::new_with_codec(codec)
        .encoder()
        .audio()
        .unwrap();
    enc.set_rate(48_000);
    enc.set_channel_layout(ff::ChannelLayout::MONO);
    enc.set_channels(1);
    enc.set_format(ff::format::Sample::I16(ff::format::sample::Type::Packed));
    enc.set_bit_rate(48_000);
    enc.set_time_base(ff::Rational::new(1, 48_000));
    let mut enc = enc.open_as(codec).unwrap();
    let total = (secs * 48_000.0) as usize / OPUS_FRAME * OPUS_FRAME;
    let mut out = Vec::new();
    let mut pkt = ff::Packet::empty();
    let mut drain = |enc: &mut ff::encoder::Audio, out: &mut Vec<Vec<u8>>| {
        while enc.receive_packet(&mut pkt).is_ok() {
            out.push(pkt.data().unwrap_or(&[]).to_vec());
        }
    };
    for start in (0..total).step_by(OPUS_FRAME) {
        let mut frame = ff::frame::Audio::new(
            ff::format::Sample::I16(ff::format::sample::Type::Packed),
            OPUS_FRAME,
            ff::ChannelLayout::MONO,
        );
        frame.set_rate(48_000);
        frame.set_pts(Some(start as i64));
        let data = frame.data_mut(0);
        for i in 0..OPUS_FRAME {
            let n = start + i;
            let t = n as f32 / 48_000.0;
            let click = clicks_s.iter().any(|&c| t >= c && t < c + 0.01);
            let v = if click {
                if (n / 24) % 2 == 0 { 0.95 } else { -0.95 }
            } else {
                0.2 * (2.0 * std::f32::consts::PI * freq * t).sin()
            };
            let s = (v * 32767.0) as i16;
            data[2 * i..2 * i + 2].copy_from_slice(&s.to_le_bytes());
        }
        enc.send_frame(&frame).unwrap();
        drain(&mut enc, &mut out);
    }
    enc.send_eof().unwrap();
    drain(&mut enc, &mut out);
    // The encoder's look-ahead adds a trailing packet; one packet per 20 ms.
    out.truncate(total / OPUS_FRAME);
    out
}

/// VP8 frames (data, keyframe) of a `w`×`h` moving pattern at `fps` for
/// `secs`; the frames at the times in `flashes_s` are all white.
pub fn vp8_pattern(w: u32, h: u32, fps: u32, secs: f32, flashes_s: &[f32]) -> Vec<(Vec<u8>, bool)> {
    ff::init().unwrap();
    let codec = ff::encoder::find_by_name("libvpx").expect("libvpx encoder");
    let mut enc = ff::codec::Context::new_with_codec(codec)
        .encoder()
        .video()
        .unwrap();
    enc.set_width(w);
    enc.set_height(h);
    enc.set_format(ff::format::Pixel::YUV420P);
    enc.set_time_base(ff::Rational::new(1, fps as i32));
    enc.set_frame_rate(Some(ff::Rational::new(fps as i32, 1)));
    enc.set_bit_rate(300_000);
    enc.set_gop(fps * 2);
    let mut opts = ff::Dictionary::new();
    opts.set("deadline", "realtime");
    opts.set("cpu-used", "8");
    opts.set("lag-in-frames", "0");
    let mut enc = enc.open_as_with(codec, opts).unwrap();
    let n = (secs * fps as f32) as usize;
    let mut out = Vec::new();
    let mut pkt = ff::Packet::empty();
    let mut drain = |enc: &mut ff::encoder::Video, out: &mut Vec<(Vec<u8>, bool)>| {
        while enc.receive_packet(&mut pkt).is_ok() {
            out.push((pkt.data().unwrap_or(&[]).to_vec(), pkt.is_key()));
        }
    };
    for i in 0..n {
        let t = i as f32 / fps as f32;
        let flash = flashes_s
            .iter()
            .any(|&f| (f * fps as f32).round() as usize == i);
        let mut frame = ff::frame::Video::new(ff::format::Pixel::YUV420P, w, h);
        frame.set_pts(Some(i as i64));
        let stride = frame.stride(0);
        let y = frame.data_mut(0);
        for row in 0..h as usize {
            for col in 0..w as usize {
                y[row * stride + col] = if flash {
                    235
                } else {
                    // Dark moving bars: bright only on a flash.
                    (20 + ((col + i * 4) / 16 % 2) * 40 + row * 20 / h as usize) as u8
                };
            }
        }
        for p in 1..3 {
            let s = frame.stride(p);
            let d = frame.data_mut(p);
            for row in 0..(h as usize).div_ceil(2) {
                for col in 0..(w as usize).div_ceil(2) {
                    d[row * s + col] = 128 + if flash { 0 } else { (t * 10.0) as u8 % 20 };
                }
            }
        }
        enc.send_frame(&frame).unwrap();
        drain(&mut enc, &mut out);
    }
    enc.send_eof().unwrap();
    drain(&mut enc, &mut out);
    assert_eq!(out.len(), n, "one VP8 frame per input frame");
    out
}

/// Runs a command and returns (status ok, stdout, stderr).
pub fn run(cmd: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .expect("run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `ffprobe` as JSON: format duration and the streams' codec names and types.
pub fn ffprobe(path: &std::path::Path) -> serde_json::Value {
    let (ok, out, err) = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "format=duration:stream=index,codec_name,codec_type,duration",
            "-of",
            "json",
            path.to_str().unwrap(),
        ],
    );
    assert!(ok, "ffprobe failed: {err}");
    serde_json::from_str(&out).unwrap()
}

/// `ffmpeg -v error -i path -f null -`: stderr must be empty for a file
/// whose every stream decodes cleanly.
pub fn decode_errors(path: &std::path::Path) -> String {
    let (ok, _, err) = run(
        "ffmpeg",
        &[
            "-nostdin",
            "-v",
            "error",
            "-i",
            path.to_str().unwrap(),
            "-f",
            "null",
            "-",
        ],
    );
    assert!(ok, "ffmpeg decode failed: {err}");
    err
}

pub mod scenario;

/// Decodes `path` and finds the flash (first video frame much brighter
/// than usual) and the click (first audio sample of the first audio stream
/// above 0.6), both in seconds of the file's timeline; and each picture's
/// time and mean luma.
pub fn flash_and_click(path: &std::path::Path) -> (f64, f64, Vec<(f64, f64)>) {
    ff::init().unwrap();
    let mut ictx = ff::format::input(path).unwrap();
    let v = ictx.streams().best(ff::media::Type::Video).unwrap();
    let a = ictx.streams().best(ff::media::Type::Audio).unwrap();
    let (vi, ai) = (v.index(), a.index());
    let (vtb, atb) = (f64::from(v.time_base()), f64::from(a.time_base()));
    let mut vdec = ff::codec::Context::from_parameters(v.parameters())
        .unwrap()
        .decoder()
        .video()
        .unwrap();
    let mut adec = ff::codec::Context::from_parameters(a.parameters())
        .unwrap()
        .decoder()
        .audio()
        .unwrap();
    let mut lumas: Vec<(f64, f64)> = Vec::new();
    let mut click: Option<f64> = None;
    let mut vf = ff::frame::Video::empty();
    let mut af = ff::frame::Audio::empty();
    let mut on_video = |dec: &mut ff::decoder::Video, lumas: &mut Vec<(f64, f64)>| {
        while dec.receive_frame(&mut vf).is_ok() {
            let (w, h, s) = (vf.width() as usize, vf.height() as usize, vf.stride(0));
            let y = vf.data(0);
            let sum: u64 = (0..h)
                .map(|r| {
                    y[r * s..r * s + w]
                        .iter()
                        .map(|&b| u64::from(b))
                        .sum::<u64>()
                })
                .sum();
            let t = vf.timestamp().or(vf.pts()).unwrap_or(0) as f64 * vtb;
            lumas.push((t, sum as f64 / (w * h) as f64));
        }
    };
    let mut on_audio = |dec: &mut ff::decoder::Audio, click: &mut Option<f64>| {
        while dec.receive_frame(&mut af).is_ok() {
            if click.is_some() {
                continue;
            }
            let t0 = af.timestamp().or(af.pts()).unwrap_or(0) as f64 * atb;
            let n = af.samples();
            let data = af.data(0);
            // F32 planar or packed, channel 0.
            let stride = if af.is_planar() {
                4
            } else {
                4 * usize::from(af.channels())
            };
            for k in 0..n {
                let o = k * stride;
                let x = f32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
                if x.abs() > 0.6 {
                    *click = Some(t0 + k as f64 / f64::from(af.rate()));
                    break;
                }
            }
        }
    };
    for (stream, packet) in ictx.packets() {
        if stream.index() == vi {
            vdec.send_packet(&packet).unwrap();
            on_video(&mut vdec, &mut lumas);
        } else if stream.index() == ai {
            adec.send_packet(&packet).unwrap();
            on_audio(&mut adec, &mut click);
        }
    }
    vdec.send_eof().unwrap();
    on_video(&mut vdec, &mut lumas);
    adec.send_eof().unwrap();
    on_audio(&mut adec, &mut click);
    assert!(
        matches!(adec.format(), ff::format::Sample::F32(_)),
        "audio decodes to f32"
    );
    let peak = lumas.iter().map(|l| l.1).fold(0.0, f64::max);
    let mut sorted: Vec<f64> = lumas.iter().map(|l| l.1).collect();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    assert!(
        peak > median + 40.0,
        "no flash found: peak {peak}, median {median}"
    );
    let flash = lumas
        .iter()
        .find(|l| l.1 > (peak + median) / 2.0)
        .unwrap()
        .0;
    (flash, click.expect("no click found"), lumas)
}
