//! Sample-rate conversion to Whisper's 16 kHz.
//!
//! Rational polyphase resampling with a Kaiser-windowed sinc: the low-pass
//! sits below the lower of the two Nyquist frequencies, so downsampling
//! (48 kHz Opus → 16 kHz) removes what would alias instead of dropping
//! samples. One filter per output phase is computed up front.

use super::SAMPLE_RATE;

/// Zero crossings of the sinc on each side: the filter's length, and so its
/// steepness.
const ZERO_CROSSINGS: usize = 16;
/// Passband edge as a share of the lower Nyquist frequency.
const CUTOFF: f64 = 0.92;
/// Kaiser window shape: about 85 dB stopband.
const KAISER_BETA: f64 = 8.5;

/// `pcm` (mono, `rate` Hz) resampled to 16 kHz. `rate` 0 yields nothing.
pub fn resample_to_16k(pcm: &[f32], rate: u32) -> Vec<f32> {
    resample(pcm, rate, SAMPLE_RATE)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Modified Bessel function of the first kind, order 0 (series).
fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let q = x * x / 4.0;
    for k in 1..64 {
        term *= q / (k * k) as f64;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

fn resample(pcm: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == 0 || pcm.is_empty() {
        return Vec::new();
    }
    if from == to {
        return pcm.to_vec();
    }
    let g = gcd(u64::from(from), u64::from(to));
    // Output sample n sits at input position n·step/up.
    let (up, step) = ((u64::from(to) / g) as usize, (u64::from(from) / g) as usize);
    // Cutoff in cycles per input sample.
    let fc = 0.5 * CUTOFF * (up as f64 / step as f64).min(1.0);
    let half = (ZERO_CROSSINGS as f64 / (2.0 * fc)).ceil() as isize;
    let taps = (2 * half + 1) as usize;
    let i0_beta = bessel_i0(KAISER_BETA);
    let kernel = |t: f64| -> f64 {
        let r = t / half as f64;
        if r.abs() >= 1.0 {
            return 0.0;
        }
        let x = 2.0 * fc * t;
        let sinc = if x == 0.0 {
            1.0
        } else {
            (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x)
        };
        2.0 * fc * sinc * bessel_i0(KAISER_BETA * (1.0 - r * r).sqrt()) / i0_beta
    };
    // phases[p][j]: weight of input sample (i + j − half) for an output at
    // fractional position p/up past input sample i. Each phase is scaled to
    // unit DC gain.
    let phases: Vec<Vec<f32>> = (0..up)
        .map(|p| {
            let frac = p as f64 / up as f64;
            let w: Vec<f64> = (0..taps)
                .map(|j| kernel(frac - (j as isize - half) as f64))
                .collect();
            let sum: f64 = w.iter().sum();
            w.iter().map(|&v| (v / sum) as f32).collect()
        })
        .collect();
    let out_len = (pcm.len() * up).div_ceil(step);
    let mut out = Vec::with_capacity(out_len);
    for n in 0..out_len {
        let pos = n * step;
        let (i, p) = ((pos / up) as isize, pos % up);
        let w = &phases[p];
        let first = i - half;
        let mut acc = 0.0f32;
        if first >= 0 && (first as usize + taps) <= pcm.len() {
            let x = &pcm[first as usize..first as usize + taps];
            for (a, b) in x.iter().zip(w) {
                acc += a * b;
            }
        } else {
            for (j, b) in w.iter().enumerate() {
                let k = first + j as isize;
                if k >= 0 && (k as usize) < pcm.len() {
                    acc += pcm[k as usize] * b;
                }
            }
        }
        out.push(acc);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f64, secs: f64) -> Vec<f32> {
        let n = (f64::from(rate) * secs) as usize;
        (0..n)
            .map(|i| {
                (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate)).sin() as f32 * 0.5
            })
            .collect()
    }

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
    }

    #[test]
    fn passband_kept_and_alias_removed() {
        for rate in [48_000, 44_100, 22_050, 8_000] {
            let out = resample_to_16k(&sine(rate, 1000.0, 1.0), rate);
            assert_eq!(out.len(), 16_000, "{rate}");
            let mid = &out[2000..14_000];
            let want = 0.5 / 2f32.sqrt();
            assert!((rms(mid) - want).abs() < 0.01, "{rate}: {}", rms(mid));
            // Phase and frequency right: compare with the ideal 16 kHz sine.
            let ideal = sine(16_000, 1000.0, 1.0);
            let err: Vec<f32> = mid
                .iter()
                .zip(&ideal[2000..14_000])
                .map(|(a, b)| a - b)
                .collect();
            assert!(rms(&err) < 0.01, "{rate}: error {}", rms(&err));
        }
        // 12 kHz at 48 kHz would fold to 4 kHz if samples were only dropped.
        let out = resample_to_16k(&sine(48_000, 12_000.0, 1.0), 48_000);
        assert!(
            rms(&out[2000..14_000]) < 0.001,
            "{}",
            rms(&out[2000..14_000])
        );
    }

    #[test]
    fn edge_cases() {
        assert!(resample_to_16k(&[], 48_000).is_empty());
        assert!(resample_to_16k(&[1.0; 10], 0).is_empty());
        assert_eq!(resample_to_16k(&[0.25; 10], 16_000), vec![0.25; 10]);
    }
}
