//! Reader for CTranslate2's `model.bin` (binary version 6).
//!
//! Layout, all integers little-endian: `u32` binary version, the spec name,
//! `u32` spec revision, `u32` variable count, then per variable its name,
//! `u8` rank, `u32` per dimension, `u8` dtype, `u32` byte count and the raw
//! data (row-major); then `u32` alias count and (alias, target) name pairs.
//! A name is a `u16` length that counts a trailing NUL, then the bytes.

use std::collections::BTreeMap;
use std::path::Path;

use super::ModelError;

/// The only layout this reader knows; other versions moved fields around.
pub const SUPPORTED_BINARY_VERSION: u32 = 6;

/// Element types as CTranslate2 numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl Dtype {
    fn from_code(code: u8) -> Option<Dtype> {
        Some(match code {
            0 => Dtype::F32,
            1 => Dtype::I8,
            2 => Dtype::I16,
            3 => Dtype::I32,
            4 => Dtype::F16,
            5 => Dtype::Bf16,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::I8 => 1,
            Dtype::I16 | Dtype::F16 | Dtype::Bf16 => 2,
            Dtype::F32 | Dtype::I32 => 4,
        }
    }
}

/// One variable: shape, element type and where its bytes are in the file.
#[derive(Clone, Debug)]
pub struct Variable {
    pub shape: Vec<usize>,
    pub dtype: Dtype,
    /// Byte range of the data within [`Ct2Model::bytes`].
    pub start: usize,
    pub len: usize,
}

/// A parsed `model.bin`: the file's bytes and an index into them.
pub struct Ct2Model {
    pub spec: String,
    pub bytes: Vec<u8>,
    pub variables: BTreeMap<String, Variable>,
    pub aliases: BTreeMap<String, String>,
}

impl Ct2Model {
    /// Reads and indexes `path`; every length is checked against the file's size.
    pub fn read(path: &Path) -> Result<Ct2Model, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        let mut r = Cursor {
            bytes: &bytes,
            pos: 0,
            path,
        };
        let version = r.u32("binary version")?;
        if version != SUPPORTED_BINARY_VERSION {
            return Err(ModelError::UnsupportedVersion {
                found: version,
                supported: SUPPORTED_BINARY_VERSION,
            });
        }
        let spec = r.name("spec name")?;
        // The spec revision changes nothing this converter reads.
        r.u32("spec revision")?;
        let count = r.u32("variable count")?;
        let mut variables = BTreeMap::new();
        for _ in 0..count {
            let name = r.name("variable name")?;
            let rank = r.u8("rank")?;
            let mut shape = Vec::with_capacity(rank.into());
            for _ in 0..rank {
                shape.push(r.u32("dimension")? as usize);
            }
            let code = r.u8("dtype")?;
            let dtype = Dtype::from_code(code).ok_or_else(|| ModelError::UnsupportedDtype {
                name: name.clone(),
                dtype: format!("code {code}"),
            })?;
            let len = r.u32("byte count")? as usize;
            let elements: usize = shape.iter().product();
            if elements.checked_mul(dtype.size()) != Some(len) {
                return Err(ModelError::BadShape {
                    name,
                    detail: format!("{len} bytes do not hold {shape:?} of {dtype:?}"),
                });
            }
            let start = r.pos;
            r.skip(len, &name)?;
            variables.insert(
                name,
                Variable {
                    shape,
                    dtype,
                    start,
                    len,
                },
            );
        }
        let alias_count = r.u32("alias count")?;
        let mut aliases = BTreeMap::new();
        for _ in 0..alias_count {
            let alias = r.name("alias")?;
            let target = r.name("alias target")?;
            aliases.insert(alias, target);
        }
        Ok(Ct2Model {
            spec,
            bytes,
            variables,
            aliases,
        })
    }

    /// A variable by name, following an alias if the name is one.
    pub fn get(&self, name: &str) -> Result<&Variable, ModelError> {
        let target = self.aliases.get(name).map_or(name, String::as_str);
        self.variables
            .get(target)
            .ok_or_else(|| ModelError::MissingVariable(name.to_owned()))
    }

    /// The raw bytes of a variable.
    pub fn data(&self, v: &Variable) -> &[u8] {
        &self.bytes[v.start..v.start + v.len]
    }

    /// A scalar integer variable (CTranslate2 stores head counts this way).
    pub fn scalar(&self, name: &str) -> Result<i64, ModelError> {
        let v = self.get(name)?;
        let d = self.data(v);
        let bad = || ModelError::BadShape {
            name: name.to_owned(),
            detail: format!(
                "expected an integer scalar, found {:?} {:?}",
                v.dtype, v.shape
            ),
        };
        if !v.shape.is_empty() {
            return Err(bad());
        }
        Ok(match v.dtype {
            Dtype::I8 => i64::from(d[0] as i8),
            Dtype::I16 => i64::from(i16::from_le_bytes([d[0], d[1]])),
            Dtype::I32 => i64::from(i32::from_le_bytes([d[0], d[1], d[2], d[3]])),
            _ => return Err(bad()),
        })
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], ModelError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(ModelError::Truncated {
                path: self.path.to_owned(),
                offset: self.pos as u64,
                needed: n as u64,
                what: what.to_owned(),
            });
        };
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn skip(&mut self, n: usize, what: &str) -> Result<(), ModelError> {
        self.take(n, what).map(|_| ())
    }

    fn u8(&mut self, what: &str) -> Result<u8, ModelError> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32, ModelError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn name(&mut self, what: &str) -> Result<String, ModelError> {
        let b = self.take(2, what)?;
        let n = usize::from(u16::from_le_bytes([b[0], b[1]]));
        let raw = self.take(n, what)?;
        // The count includes a trailing NUL.
        let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
        String::from_utf8(raw.to_vec()).map_err(|_| ModelError::BadShape {
            name: what.to_owned(),
            detail: format!("not UTF-8 at offset {}", self.pos - n),
        })
    }
}
