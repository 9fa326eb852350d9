//! Whisper's mel filterbank, which whisper.cpp reads from the model file.
//!
//! Slaney-style mel scale and area normalisation (librosa's `filters.mel`
//! with `htk=False, norm="slaney"`), the filters Whisper was trained with.
//! Computed in f64 in the same order of operations as the reference
//! implementation and rounded to f32 at the end, so the bytes are
//! reproducible.

const F_SP: f64 = 200.0 / 3.0;
const MIN_LOG_HZ: f64 = 1000.0;

fn logstep() -> f64 {
    6.4f64.ln() / 27.0
}

fn min_log_mel() -> f64 {
    MIN_LOG_HZ / F_SP
}

fn hz_to_mel(f: f64) -> f64 {
    if f < MIN_LOG_HZ {
        f / F_SP
    } else {
        min_log_mel() + (f / MIN_LOG_HZ).ln() / logstep()
    }
}

/// `n_mels` × (`n_fft`/2 + 1) filter weights, row-major.
pub fn filterbank(sample_rate: u32, n_fft: usize, n_mels: usize) -> Vec<f32> {
    let sr = f64::from(sample_rate);
    let n_bins = n_fft / 2 + 1;
    // rfftfreq: bin index times 1/(n·d), d = 1/sr.
    let val = 1.0 / (n_fft as f64 * (1.0 / sr));
    let fft_freqs: Vec<f64> = (0..n_bins).map(|i| i as f64 * val).collect();

    // linspace(hz_to_mel(0), hz_to_mel(sr/2), n_mels + 2), last point exact.
    let start = hz_to_mel(0.0);
    let stop = hz_to_mel(sr / 2.0);
    let n = n_mels + 2;
    let step = (stop - start) / (n - 1) as f64;
    let mut mels: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
    mels[n - 1] = stop;

    let freqs: Vec<f64> = mels
        .iter()
        .map(|&m| {
            if m >= min_log_mel() {
                MIN_LOG_HZ * (logstep() * (m - min_log_mel())).exp()
            } else {
                F_SP * m
            }
        })
        .collect();

    let mut out = Vec::with_capacity(n_mels * n_bins);
    for i in 0..n_mels {
        let lower_width = freqs[i + 1] - freqs[i];
        let upper_width = freqs[i + 2] - freqs[i + 1];
        let enorm = 2.0 / (freqs[i + 2] - freqs[i]);
        for &f in &fft_freqs {
            let lower = -(freqs[i] - f) / lower_width;
            let upper = (freqs[i + 2] - f) / upper_width;
            // Written out rather than f64::min/max: on a tie (+0 vs −0) the
            // reference keeps the second operand (x86 minpd/maxpd), and the
            // bytes must match (the first weight is −0).
            let m = if lower < upper { lower } else { upper };
            let w = if 0.0 > m { 0.0 } else { m };
            out.push((w * enorm) as f32);
        }
    }
    out
}
