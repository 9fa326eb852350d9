//! The few codec facts an SFU needs without decoding: does this RTP payload
//! start a keyframe? Simulcast layer switches and mid-stream joins wait for
//! one.

use str0m::format::Codec;

/// True when `payload` is the first packet of a keyframe.
/// Malformed payloads are never keyframes.
pub(crate) fn is_keyframe_start(codec: Codec, payload: &[u8]) -> bool {
    match codec {
        Codec::Vp8 => vp8(payload),
        Codec::Vp9 => vp9(payload),
        Codec::H264 => h264(payload),
        Codec::Av1 => av1(payload),
        _ => false,
    }
}

/// RFC 7741 §4.2: descriptor, then the VP8 payload header whose P bit is 0
/// on keyframes. Only the start of partition 0 carries it.
fn vp8(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    let start_of_partition = b0 & 0x10 != 0;
    let partition_index = b0 & 0x07;
    if !start_of_partition || partition_index != 0 {
        return false;
    }
    let mut at = 1;
    if b0 & 0x80 != 0 {
        let Some(&x) = p.get(at) else { return false };
        at += 1;
        if x & 0x80 != 0 {
            // Picture ID: 7 or 15 bits.
            let Some(&pid) = p.get(at) else { return false };
            at += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            at += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            at += 1; // TID/Y/KEYIDX
        }
    }
    p.get(at).is_some_and(|h| h & 0x01 == 0)
}

/// RFC 9628 §4.2: B (start of frame) set and P (inter-picture predicted) clear.
fn vp9(p: &[u8]) -> bool {
    p.first().is_some_and(|b| b & 0x08 != 0 && b & 0x40 == 0)
}

const H264_IDR: u8 = 5;
const H264_SPS: u8 = 7;

/// RFC 6184: an IDR slice or SPS alone, in a STAP-A, or starting a FU-A.
fn h264(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    match b0 & 0x1F {
        t @ 1..=23 => t == H264_IDR || t == H264_SPS,
        24 => {
            let mut at = 1;
            while at + 2 < p.len() {
                let size = u16::from_be_bytes([p[at], p[at + 1]]) as usize;
                let t = p[at + 2] & 0x1F;
                if t == H264_IDR || t == H264_SPS {
                    return true;
                }
                at += 2 + size;
            }
            false
        }
        28 => p.get(1).is_some_and(|fu| {
            let t = fu & 0x1F;
            fu & 0x80 != 0 && (t == H264_IDR || t == H264_SPS)
        }),
        _ => false,
    }
}

/// AV1 RTP payload: the N bit of the aggregation header marks the first
/// packet of a coded video sequence, which starts with a keyframe.
fn av1(p: &[u8]) -> bool {
    p.first().is_some_and(|b| b & 0x08 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keyframes() {
        // S=1 PID=0, no extension, payload header P=0.
        assert!(is_keyframe_start(Codec::Vp8, &[0x10, 0x00, 0x9d, 0x01]));
        // Same with an extension and a 15-bit picture id.
        assert!(is_keyframe_start(
            Codec::Vp8,
            &[0x90, 0x80, 0x81, 0x23, 0x00]
        ));
        // Interframe.
        assert!(!is_keyframe_start(Codec::Vp8, &[0x10, 0x01]));
        // Not the start of a partition.
        assert!(!is_keyframe_start(Codec::Vp8, &[0x00, 0x00]));
        // Truncated.
        assert!(!is_keyframe_start(Codec::Vp8, &[0x90, 0x80, 0x81]));
        assert!(!is_keyframe_start(Codec::Vp8, &[]));
    }

    #[test]
    fn h264_keyframes() {
        assert!(is_keyframe_start(Codec::H264, &[0x65, 0x88]));
        assert!(is_keyframe_start(Codec::H264, &[0x67, 0x42]));
        assert!(!is_keyframe_start(Codec::H264, &[0x41, 0x9a]));
        // STAP-A with SPS then PPS.
        assert!(is_keyframe_start(
            Codec::H264,
            &[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68]
        ));
        // FU-A start of an IDR, and its continuation.
        assert!(is_keyframe_start(Codec::H264, &[0x7c, 0x85]));
        assert!(!is_keyframe_start(Codec::H264, &[0x7c, 0x05]));
        // STAP-A whose size runs off the end.
        assert!(!is_keyframe_start(Codec::H264, &[0x78, 0xff, 0xff, 0x41]));
    }

    #[test]
    fn vp9_and_av1_keyframes() {
        assert!(is_keyframe_start(Codec::Vp9, &[0x08]));
        assert!(!is_keyframe_start(Codec::Vp9, &[0x48]));
        assert!(is_keyframe_start(Codec::Av1, &[0x18]));
        assert!(!is_keyframe_start(Codec::Av1, &[0x10]));
        assert!(!is_keyframe_start(Codec::Opus, &[0xff]));
    }
}
