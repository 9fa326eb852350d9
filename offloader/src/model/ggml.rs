//! whisper.cpp's legacy `ggml` model file: the tensor mapping from a
//! CTranslate2 Whisper model and the writer.
//!
//! File layout (little-endian `i32`s): magic `ggml`, the eleven
//! hyperparameters, the mel filterbank (rows, columns, f32 data), the
//! ordinary tokens (count, then length + bytes each), then every tensor as
//! rank, name length, type (0 f32, 1 f16), dimensions innermost first, name
//! and data.

use std::io::Write;

use super::ModelError;
use super::ct2::{Ct2Model, Dtype, Variable};

const MAGIC: i32 = 0x6767_6d6c;
/// ggml's tensor types used here.
const TYPE_F32: i32 = 0;
const TYPE_F16: i32 = 1;

/// Whisper's dimensions, read from the tensors' shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hparams {
    pub n_vocab: usize,
    pub n_audio_ctx: usize,
    pub n_state: usize,
    pub n_audio_head: usize,
    pub n_audio_layer: usize,
    pub n_text_ctx: usize,
    pub n_text_head: usize,
    pub n_text_layer: usize,
    pub n_mels: usize,
}

/// A slice of rows of a CTranslate2 variable, under whisper.cpp's name.
pub struct Tensor<'m> {
    pub name: String,
    pub var: &'m Variable,
    /// Rows `rows.0..rows.1` of the leading dimension (fused weights are split).
    pub rows: (usize, usize),
    /// Shape written to the file (outermost first), e.g. a bias as a column.
    pub shape: Vec<usize>,
    pub f32_out: bool,
}

/// Scalars that describe the architecture; read (head counts) or implied
/// by the tensor mapping, never written as tensors.
pub const CONFIG_VARIABLES: &[&str] = &[
    "encoder/num_heads",
    "decoder/num_heads",
    "decoder/activation",
    "decoder/alibi",
    "decoder/alignment_heads",
    "decoder/alignment_layer",
    "decoder/pre_norm",
    "decoder/scale_embeddings",
    "decoder/start_from_zero_embedding",
    "encoder/activation",
    "encoder/pre_norm",
];

fn count_layers(m: &Ct2Model, prefix: &str) -> usize {
    let mut n = 0;
    while m
        .variables
        .keys()
        .any(|k| k.starts_with(&format!("{prefix}/layer_{n}/")))
    {
        n += 1;
    }
    n
}

fn dim(m: &Ct2Model, name: &str, rank: usize, axis: usize) -> Result<usize, ModelError> {
    let v = m.get(name)?;
    if v.shape.len() != rank {
        return Err(ModelError::BadShape {
            name: name.to_owned(),
            detail: format!("expected rank {rank}, found {:?}", v.shape),
        });
    }
    Ok(v.shape[axis])
}

/// Reads the dimensions from the model's shapes.
pub fn hparams(m: &Ct2Model) -> Result<Hparams, ModelError> {
    let head = |name: &str| -> Result<usize, ModelError> {
        let n = m.scalar(name)?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| ModelError::BadShape {
                name: name.to_owned(),
                detail: format!("head count {n}"),
            })
    };
    Ok(Hparams {
        n_vocab: dim(m, "decoder/embeddings/weight", 2, 0)?,
        n_state: dim(m, "decoder/embeddings/weight", 2, 1)?,
        n_audio_ctx: dim(m, "encoder/position_encodings/encodings", 2, 0)?,
        n_text_ctx: dim(m, "decoder/position_encodings/encodings", 2, 0)?,
        n_mels: dim(m, "encoder/conv1/weight", 3, 1)?,
        n_audio_head: head("encoder/num_heads")?,
        n_text_head: head("decoder/num_heads")?,
        n_audio_layer: count_layers(m, "encoder"),
        n_text_layer: count_layers(m, "decoder"),
    })
}

struct Mapper<'m> {
    m: &'m Ct2Model,
    out: Vec<Tensor<'m>>,
}

impl<'m> Mapper<'m> {
    /// Whole variable, or rows `part` of `parts` equal slices of it.
    fn add_part(
        &mut self,
        dst: String,
        src: &str,
        part: usize,
        parts: usize,
    ) -> Result<(), ModelError> {
        let var = self.m.get(src)?;
        let Some(&lead) = var.shape.first() else {
            return Err(ModelError::BadShape {
                name: src.to_owned(),
                detail: "a scalar where a tensor was expected".to_owned(),
            });
        };
        if lead % parts != 0 {
            return Err(ModelError::BadShape {
                name: src.to_owned(),
                detail: format!("{lead} rows do not split into {parts}"),
            });
        }
        let n = lead / parts;
        let mut shape = var.shape.clone();
        shape[0] = n;
        // Positional tables and conv biases stay f32 (whisper.cpp adds them
        // to f32 activations); other vectors too; matrices go f16.
        let f32_out = shape.len() < 2
            || matches!(
                dst.as_str(),
                "encoder.positional_embedding" | "decoder.positional_embedding"
            );
        self.out.push(Tensor {
            name: dst,
            var,
            rows: (part * n, part * n + n),
            shape,
            f32_out,
        });
        Ok(())
    }

    fn add(&mut self, dst: impl Into<String>, src: &str) -> Result<(), ModelError> {
        self.add_part(dst.into(), src, 0, 1)
    }

    /// Conv biases are written as (channels, 1) columns in f32.
    fn add_column(&mut self, dst: &str, src: &str) -> Result<(), ModelError> {
        self.add(dst, src)?;
        let t = self.out.last_mut().expect("just pushed");
        t.shape.push(1);
        t.f32_out = true;
        Ok(())
    }

    fn norm(&mut self, dst: &str, src: &str) -> Result<(), ModelError> {
        self.add(format!("{dst}.weight"), &format!("{src}/gamma"))?;
        self.add(format!("{dst}.bias"), &format!("{src}/beta"))
    }

    fn linear(&mut self, dst: &str, src: &str) -> Result<(), ModelError> {
        self.add(format!("{dst}.weight"), &format!("{src}/weight"))?;
        self.add(format!("{dst}.bias"), &format!("{src}/bias"))
    }

    fn ffn(&mut self, dst: &str, src: &str) -> Result<(), ModelError> {
        self.norm(&format!("{dst}.mlp_ln"), &format!("{src}/ffn/layer_norm"))?;
        self.linear(&format!("{dst}.mlp.0"), &format!("{src}/ffn/linear_0"))?;
        self.linear(&format!("{dst}.mlp.2"), &format!("{src}/ffn/linear_1"))
    }

    /// CTranslate2 fuses query, key and value into one matrix; Whisper's key
    /// projection has no bias, so that third of the fused bias is dropped.
    fn self_attn(&mut self, dst: &str, src: &str) -> Result<(), ModelError> {
        let s = format!("{src}/self_attention");
        self.norm(&format!("{dst}.attn_ln"), &format!("{s}/layer_norm"))?;
        let (w, b) = (format!("{s}/linear_0/weight"), format!("{s}/linear_0/bias"));
        for (i, p) in ["query", "key", "value"].iter().enumerate() {
            self.add_part(format!("{dst}.attn.{p}.weight"), &w, i, 3)?;
        }
        self.add_part(format!("{dst}.attn.query.bias"), &b, 0, 3)?;
        self.add_part(format!("{dst}.attn.value.bias"), &b, 2, 3)?;
        self.linear(&format!("{dst}.attn.out"), &format!("{s}/linear_1"))
    }

    /// Cross-attention: query separate, key and value fused (key without bias).
    fn cross_attn(&mut self, dst: &str, src: &str) -> Result<(), ModelError> {
        let s = format!("{src}/attention");
        self.norm(&format!("{dst}.cross_attn_ln"), &format!("{s}/layer_norm"))?;
        self.linear(&format!("{dst}.cross_attn.query"), &format!("{s}/linear_0"))?;
        let (w, b) = (format!("{s}/linear_1/weight"), format!("{s}/linear_1/bias"));
        self.add_part(format!("{dst}.cross_attn.key.weight"), &w, 0, 2)?;
        self.add_part(format!("{dst}.cross_attn.value.weight"), &w, 1, 2)?;
        self.add_part(format!("{dst}.cross_attn.value.bias"), &b, 1, 2)?;
        self.linear(&format!("{dst}.cross_attn.out"), &format!("{s}/linear_2"))
    }
}

/// Every tensor whisper.cpp loads, in the order the file carries them.
pub fn tensors<'m>(m: &'m Ct2Model, hp: &Hparams) -> Result<Vec<Tensor<'m>>, ModelError> {
    let mut t = Mapper { m, out: Vec::new() };
    t.add(
        "encoder.positional_embedding",
        "encoder/position_encodings/encodings",
    )?;
    for c in ["conv1", "conv2"] {
        t.add(
            format!("encoder.{c}.weight"),
            &format!("encoder/{c}/weight"),
        )?;
        t.add_column(&format!("encoder.{c}.bias"), &format!("encoder/{c}/bias"))?;
    }
    t.norm("encoder.ln_post", "encoder/layer_norm")?;
    t.add(
        "decoder.positional_embedding",
        "decoder/position_encodings/encodings",
    )?;
    t.add(
        "decoder.token_embedding.weight",
        "decoder/embeddings/weight",
    )?;
    t.norm("decoder.ln", "decoder/layer_norm")?;
    for i in 0..hp.n_audio_layer {
        let (d, s) = (format!("encoder.blocks.{i}"), format!("encoder/layer_{i}"));
        t.ffn(&d, &s)?;
        t.self_attn(&d, &s)?;
    }
    for i in 0..hp.n_text_layer {
        let (d, s) = (format!("decoder.blocks.{i}"), format!("decoder/layer_{i}"));
        t.ffn(&d, &s)?;
        t.self_attn(&d, &s)?;
        t.cross_attn(&d, &s)?;
    }
    Ok(t.out)
}

/// f16 bits → f32 (exact).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: the mantissa counts units of 2^-24.
            let v = man as f32 * 2f32.powi(-24);
            return if sign == 0 { v } else { -v };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, _) => sign | 0x7fc0_0000 | (man << 13),
        _ => sign | ((exp + 112) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// f32 → f16 bits, rounding to nearest even (what numpy and ggml do).
fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rest = m & ((1 << shift) - 1);
        let mut r = m >> shift;
        if rest > half || (rest == half && r & 1 == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let rest = man & 0x1fff;
    let mut r = ((e as u32) << 10) | (man >> 13);
    if rest > 0x1000 || (rest == 0x1000 && r & 1 == 1) {
        // A carry into the exponent is correct rounding (up to infinity).
        r += 1;
    }
    sign | r as u16
}

/// Writes one tensor's elements, converting to the file's type.
fn write_data(w: &mut impl Write, t: &Tensor<'_>, raw: &[u8]) -> Result<(), ModelError> {
    let unsupported = || ModelError::UnsupportedDtype {
        name: t.name.clone(),
        dtype: format!("{:?}", t.var.dtype),
    };
    let row_elems: usize = t.var.shape[1..].iter().product();
    let size = t.var.dtype.size();
    let data = &raw[t.rows.0 * row_elems * size..t.rows.1 * row_elems * size];
    let as_f32 = |c: &[u8]| -> f32 {
        match t.var.dtype {
            Dtype::F16 => f16_to_f32(u16::from_le_bytes([c[0], c[1]])),
            Dtype::Bf16 => f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16),
            _ => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
        }
    };
    if !matches!(t.var.dtype, Dtype::F16 | Dtype::Bf16 | Dtype::F32) {
        return Err(unsupported());
    }
    let mut buf = Vec::with_capacity(data.len() * 2);
    match (t.var.dtype, t.f32_out) {
        (Dtype::F16, false) | (Dtype::F32, true) => buf.extend_from_slice(data),
        (_, true) => {
            for c in data.chunks_exact(size) {
                buf.extend_from_slice(&as_f32(c).to_le_bytes());
            }
        }
        (_, false) => {
            for c in data.chunks_exact(size) {
                buf.extend_from_slice(&f32_to_f16(as_f32(c)).to_le_bytes());
            }
        }
    }
    w.write_all(&buf).map_err(ModelError::write)
}

fn put(w: &mut impl Write, v: usize) -> Result<(), ModelError> {
    let v = i32::try_from(v).map_err(|_| ModelError::BadShape {
        name: "header".to_owned(),
        detail: format!("{v} does not fit the file's 32-bit fields"),
    })?;
    w.write_all(&v.to_le_bytes()).map_err(ModelError::write)
}

/// Writes the whole file.
pub fn write(
    w: &mut impl Write,
    m: &Ct2Model,
    hp: &Hparams,
    filters: &[f32],
    tokens: &[Vec<u8>],
    tensors: &[Tensor<'_>],
) -> Result<(), ModelError> {
    w.write_all(&MAGIC.to_le_bytes())
        .map_err(ModelError::write)?;
    for v in [
        hp.n_vocab,
        hp.n_audio_ctx,
        hp.n_state,
        hp.n_audio_head,
        hp.n_audio_layer,
        hp.n_text_ctx,
        hp.n_state,
        hp.n_text_head,
        hp.n_text_layer,
        hp.n_mels,
    ] {
        put(w, v)?;
    }
    // ftype: matrices are f16.
    put(w, 1)?;
    put(w, hp.n_mels)?;
    put(w, filters.len() / hp.n_mels)?;
    let mut buf = Vec::with_capacity(filters.len() * 4);
    for f in filters {
        buf.extend_from_slice(&f.to_le_bytes());
    }
    w.write_all(&buf).map_err(ModelError::write)?;
    put(w, tokens.len())?;
    for t in tokens {
        put(w, t.len())?;
        w.write_all(t).map_err(ModelError::write)?;
    }
    for t in tensors {
        put(w, t.shape.len())?;
        put(w, t.name.len())?;
        w.write_all(&(if t.f32_out { TYPE_F32 } else { TYPE_F16 }).to_le_bytes())
            .map_err(ModelError::write)?;
        for &d in t.shape.iter().rev() {
            put(w, d)?;
        }
        w.write_all(t.name.as_bytes()).map_err(ModelError::write)?;
        write_data(w, t, m.data(t.var))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_round_trip_and_rounding() {
        for h in [0u16, 0x3c00, 0xbc00, 0x0001, 0x03ff, 0x7bff, 0x7c00, 0x3555] {
            assert_eq!(f32_to_f16(f16_to_f32(h)), h, "{h:#x}");
        }
        // Halfway between 1.0 and the next f16 rounds to even (1.0).
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00);
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
        assert_eq!(f32_to_f16(1e6), 0x7c00);
    }
}
