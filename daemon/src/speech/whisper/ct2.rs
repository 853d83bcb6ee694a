//! Reader for CTranslate2 `model.bin` files, and the renaming of a `WhisperSpec` model's
//! variables into the names `candle_transformers::models::whisper` loads.
//!
//! We ship Whisper as CTranslate2 weights (what faster-whisper uses), so this turns that
//! layout into candle tensors instead of needing a second copy of the model on disk.
//!
//! Layout (little-endian): u32 version, u16-length spec name, u32 revision, u32 variable
//! count; per variable a u16-length name, u8 rank, u32 dims\[rank\], u8 dtype, u32 byte
//! count and the raw data; then u32 alias count and per alias two u16-length names
//! (alias, target). Strings are NUL-terminated inside their length.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::whisper::Config;

/// Oldest and newest `model.bin` format versions this reader understands.
const MIN_VERSION: u32 = 3;
const MAX_VERSION: u32 = 6;

/// Element type of a stored variable, as CTranslate2 numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ct2Dtype {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl Ct2Dtype {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::F32,
            1 => Self::I8,
            2 => Self::I16,
            3 => Self::I32,
            4 => Self::F16,
            5 => Self::Bf16,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 | Self::F16 | Self::Bf16 => 2,
            Self::F32 | Self::I32 => 4,
        }
    }
}

/// One stored variable, borrowing its data from the file buffer.
#[derive(Debug, Clone)]
pub struct Variable<'a> {
    pub dims: Vec<usize>,
    pub dtype: Ct2Dtype,
    pub data: &'a [u8],
}

impl Variable<'_> {
    fn elements(&self) -> usize {
        self.dims.iter().product()
    }

    /// The value of a rank-0 integer variable (e.g. `decoder/num_heads`).
    pub fn scalar_int(&self) -> Option<i64> {
        if self.elements() != 1 {
            return None;
        }
        let d = self.data;
        Some(match self.dtype {
            Ct2Dtype::I8 => i64::from(i8::from_le_bytes([*d.first()?])),
            Ct2Dtype::I16 => i64::from(i16::from_le_bytes(d.get(..2)?.try_into().ok()?)),
            Ct2Dtype::I32 => i64::from(i32::from_le_bytes(d.get(..4)?.try_into().ok()?)),
            _ => return None,
        })
    }

    /// The variable as an f32 candle tensor (f16/bf16 are widened; integers are refused).
    pub fn to_f32_tensor(&self, device: &Device) -> Result<Tensor, String> {
        let dtype = match self.dtype {
            Ct2Dtype::F32 => DType::F32,
            Ct2Dtype::F16 => DType::F16,
            Ct2Dtype::Bf16 => DType::BF16,
            other => return Err(format!("expected a float tensor, found {other:?}")),
        };
        // Rank-0 tensors are stored as shape [] with one element.
        let t = Tensor::from_raw_buffer(self.data, dtype, &self.dims, device)
            .map_err(|e| e.to_string())?;
        t.to_dtype(DType::F32).map_err(|e| e.to_string())
    }
}

/// A parsed `model.bin`: header, variables (aliases resolved) in file order.
#[derive(Debug)]
pub struct Ct2File<'a> {
    pub version: u32,
    pub spec: String,
    pub revision: u32,
    pub variables: HashMap<String, Variable<'a>>,
}

impl<'a> Ct2File<'a> {
    pub fn get(&self, name: &str) -> Result<&Variable<'a>, String> {
        self.variables
            .get(name)
            .ok_or_else(|| format!("missing tensor {name:?}"))
    }
}

/// Bounds-checked little-endian cursor over the file.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("file truncated while reading {what} at byte {}", self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, String> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A u16-length string, with its trailing NUL(s) removed.
    fn string(&mut self, what: &str) -> Result<String, String> {
        let n = usize::from(self.u16(what)?);
        let b = self.take(n, what)?;
        let b = b.split(|&c| c == 0).next().unwrap_or(b);
        String::from_utf8(b.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }
}

/// Parses a CTranslate2 `model.bin` held in memory. Errors name what was wrong.
pub fn parse(buf: &[u8]) -> Result<Ct2File<'_>, String> {
    let mut r = Reader { buf, pos: 0 };
    let version = r.u32("format version")?;
    if !(MIN_VERSION..=MAX_VERSION).contains(&version) {
        return Err(format!(
            "unsupported CTranslate2 model version {version} (bad magic or version; expected {MIN_VERSION}..={MAX_VERSION})"
        ));
    }
    let spec = r.string("spec name")?;
    let revision = r.u32("spec revision")?;
    let count = r.u32("variable count")?;
    let mut variables = HashMap::new();
    for i in 0..count {
        let name = r.string("variable name")?;
        let rank = r.u8("rank")?;
        let mut dims = Vec::with_capacity(usize::from(rank));
        for _ in 0..rank {
            dims.push(r.u32("dimension")? as usize);
        }
        let code = r.u8("dtype")?;
        let dtype = Ct2Dtype::from_code(code)
            .ok_or_else(|| format!("variable {name:?} has unknown dtype {code}"))?;
        let nbytes = r.u32("byte count")? as usize;
        let expected = dims
            .iter()
            .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("variable {name:?} has absurd dimensions {dims:?}"))?;
        if nbytes != expected {
            return Err(format!(
                "variable {name:?} (#{i}) claims {nbytes} bytes but shape {dims:?} of {dtype:?} needs {expected}"
            ));
        }
        let data = r.take(nbytes, "variable data")?;
        variables.insert(name, Variable { dims, dtype, data });
    }
    // Aliases came with version 2; files without the section end here.
    if r.pos < buf.len() {
        let n = r.u32("alias count")?;
        for _ in 0..n {
            let alias = r.string("alias name")?;
            let target = r.string("alias target")?;
            let v = variables
                .get(&target)
                .cloned()
                .ok_or_else(|| format!("alias {alias:?} points at missing tensor {target:?}"))?;
            variables.insert(alias, v);
        }
    }
    Ok(Ct2File {
        version,
        spec,
        revision,
        variables,
    })
}

/// Counts `{prefix}/layer_N/...` layers.
fn count_layers(file: &Ct2File, prefix: &str) -> usize {
    (0..)
        .take_while(|i| {
            file.variables
                .contains_key(&format!("{prefix}/layer_{i}/ffn/linear_0/weight"))
        })
        .count()
}

fn scalar(file: &Ct2File, name: &str) -> Result<usize, String> {
    file.get(name)?
        .scalar_int()
        .and_then(|v| usize::try_from(v).ok())
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("{name} is not a positive integer scalar"))
}

fn dim(file: &Ct2File, name: &str, axis: usize) -> Result<usize, String> {
    file.get(name)?
        .dims
        .get(axis)
        .copied()
        .ok_or_else(|| format!("{name} has no axis {axis}"))
}

/// Builds candle's Whisper config from the tensor shapes and stored scalars.
pub fn whisper_config(file: &Ct2File, suppress_tokens: Vec<u32>) -> Result<Config, String> {
    if file.spec != "WhisperSpec" {
        return Err(format!("spec is {:?}, not a Whisper model", file.spec));
    }
    let cfg = Config {
        num_mel_bins: dim(file, "encoder/conv1/weight", 1)?,
        max_source_positions: dim(file, "encoder/position_encodings/encodings", 0)?,
        d_model: dim(file, "encoder/conv1/weight", 0)?,
        encoder_attention_heads: scalar(file, "encoder/num_heads")?,
        encoder_layers: count_layers(file, "encoder"),
        vocab_size: dim(file, "decoder/embeddings/weight", 0)?,
        max_target_positions: dim(file, "decoder/position_encodings/encodings", 0)?,
        decoder_attention_heads: scalar(file, "decoder/num_heads")?,
        decoder_layers: count_layers(file, "decoder"),
        suppress_tokens,
    };
    if cfg.encoder_layers == 0 || cfg.decoder_layers == 0 {
        return Err("model has no encoder or decoder layers".into());
    }
    if !cfg.d_model.is_multiple_of(cfg.encoder_attention_heads)
        || !cfg.d_model.is_multiple_of(cfg.decoder_attention_heads)
    {
        return Err(format!(
            "d_model {} is not divisible by the head count",
            cfg.d_model
        ));
    }
    Ok(cfg)
}

/// Collects the tensors candle's `Whisper::load` asks for, under its (Hugging Face) names.
struct Mapper<'f, 'a> {
    file: &'f Ct2File<'a>,
    device: Device,
    d_model: usize,
    out: HashMap<String, Tensor>,
}

impl Mapper<'_, '_> {
    fn tensor(&self, name: &str) -> Result<Tensor, String> {
        self.file
            .get(name)?
            .to_f32_tensor(&self.device)
            .map_err(|e| format!("{name}: {e}"))
    }

    fn put(&mut self, to: String, t: Tensor) {
        self.out.insert(to, t);
    }

    fn copy(&mut self, from: &str, to: &str) -> Result<(), String> {
        let t = self.tensor(from)?;
        self.put(to.to_string(), t);
        Ok(())
    }

    fn linear(&mut self, from: &str, to: &str) -> Result<(), String> {
        self.copy(&format!("{from}/weight"), &format!("{to}.weight"))?;
        self.copy(&format!("{from}/bias"), &format!("{to}.bias"))
    }

    fn layer_norm(&mut self, from: &str, to: &str) -> Result<(), String> {
        self.copy(&format!("{from}/gamma"), &format!("{to}.weight"))?;
        self.copy(&format!("{from}/beta"), &format!("{to}.bias"))
    }

    /// Splits a fused projection (rows stacked as `names`) into separate linears.
    /// A `None` bias slot is a projection without bias (Whisper's key), whose bias
    /// rows CTranslate2 stores as zeros.
    fn split(&mut self, from: &str, names: &[(&str, bool)]) -> Result<(), String> {
        let w = self.tensor(&format!("{from}/weight"))?;
        let b = self.tensor(&format!("{from}/bias"))?;
        let d = self.d_model;
        let rows = w.dims().first().copied().unwrap_or(0);
        if rows != d * names.len() || b.dims() != [rows] {
            return Err(format!(
                "{from} has shape {:?}, expected {} fused rows of {d}",
                w.dims(),
                names.len()
            ));
        }
        for (i, (to, has_bias)) in names.iter().enumerate() {
            let wi = w.narrow(0, i * d, d).and_then(|t| t.contiguous());
            self.put(format!("{to}.weight"), wi.map_err(|e| e.to_string())?);
            if *has_bias {
                let bi = b.narrow(0, i * d, d).and_then(|t| t.contiguous());
                self.put(format!("{to}.bias"), bi.map_err(|e| e.to_string())?);
            }
        }
        Ok(())
    }

    fn block(&mut self, from: &str, to: &str, cross: bool) -> Result<(), String> {
        let sa = format!("{from}/self_attention");
        self.layer_norm(
            &format!("{sa}/layer_norm"),
            &format!("{to}.self_attn_layer_norm"),
        )?;
        self.split(
            &format!("{sa}/linear_0"),
            &[
                (&format!("{to}.self_attn.q_proj"), true),
                (&format!("{to}.self_attn.k_proj"), false),
                (&format!("{to}.self_attn.v_proj"), true),
            ],
        )?;
        self.linear(
            &format!("{sa}/linear_1"),
            &format!("{to}.self_attn.out_proj"),
        )?;
        if cross {
            let ca = format!("{from}/attention");
            self.layer_norm(
                &format!("{ca}/layer_norm"),
                &format!("{to}.encoder_attn_layer_norm"),
            )?;
            self.linear(
                &format!("{ca}/linear_0"),
                &format!("{to}.encoder_attn.q_proj"),
            )?;
            self.split(
                &format!("{ca}/linear_1"),
                &[
                    (&format!("{to}.encoder_attn.k_proj"), false),
                    (&format!("{to}.encoder_attn.v_proj"), true),
                ],
            )?;
            self.linear(
                &format!("{ca}/linear_2"),
                &format!("{to}.encoder_attn.out_proj"),
            )?;
        }
        self.layer_norm(
            &format!("{from}/ffn/layer_norm"),
            &format!("{to}.final_layer_norm"),
        )?;
        self.linear(&format!("{from}/ffn/linear_0"), &format!("{to}.fc1"))?;
        self.linear(&format!("{from}/ffn/linear_1"), &format!("{to}.fc2"))
    }
}

/// All tensors of a Whisper model under the names candle's `Whisper::load` expects.
/// (candle computes the encoder's sinusoidal positions itself, so those are not copied.)
pub fn whisper_tensors(
    file: &Ct2File,
    cfg: &Config,
    device: &Device,
) -> Result<HashMap<String, Tensor>, String> {
    let mut m = Mapper {
        file,
        device: device.clone(),
        d_model: cfg.d_model,
        out: HashMap::new(),
    };
    m.linear("encoder/conv1", "model.encoder.conv1")?;
    m.linear("encoder/conv2", "model.encoder.conv2")?;
    for i in 0..cfg.encoder_layers {
        m.block(
            &format!("encoder/layer_{i}"),
            &format!("model.encoder.layers.{i}"),
            false,
        )?;
    }
    m.layer_norm("encoder/layer_norm", "model.encoder.layer_norm")?;
    m.copy(
        "decoder/embeddings/weight",
        "model.decoder.embed_tokens.weight",
    )?;
    m.copy(
        "decoder/position_encodings/encodings",
        "model.decoder.embed_positions.weight",
    )?;
    for i in 0..cfg.decoder_layers {
        m.block(
            &format!("decoder/layer_{i}"),
            &format!("model.decoder.layers.{i}"),
            true,
        )?;
    }
    m.layer_norm("decoder/layer_norm", "model.decoder.layer_norm")?;
    Ok(m.out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a CTranslate2 file the way the converter does.
    pub(crate) struct Ct2Writer {
        pub buf: Vec<u8>,
        count_at: usize,
        count: u32,
    }

    impl Ct2Writer {
        pub fn new(version: u32, spec: &str) -> Self {
            let mut w = Self {
                buf: Vec::new(),
                count_at: 0,
                count: 0,
            };
            w.buf.extend(version.to_le_bytes());
            w.string(spec);
            w.buf.extend(1u32.to_le_bytes());
            w.count_at = w.buf.len();
            w.buf.extend(0u32.to_le_bytes());
            w
        }

        fn string(&mut self, s: &str) {
            self.buf.extend(((s.len() + 1) as u16).to_le_bytes());
            self.buf.extend(s.as_bytes());
            self.buf.push(0);
        }

        pub fn var(&mut self, name: &str, dims: &[u32], dtype: u8, data: &[u8]) {
            self.string(name);
            self.buf.push(dims.len() as u8);
            for d in dims {
                self.buf.extend(d.to_le_bytes());
            }
            self.buf.push(dtype);
            self.buf.extend((data.len() as u32).to_le_bytes());
            self.buf.extend(data);
            self.count += 1;
            let c = self.count.to_le_bytes();
            self.buf[self.count_at..self.count_at + 4].copy_from_slice(&c);
        }

        pub fn f32(&mut self, name: &str, dims: &[u32], values: &[f32]) {
            let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.var(name, dims, 0, &data);
        }

        /// `bits` are IEEE half-precision bit patterns.
        pub fn f16(&mut self, name: &str, dims: &[u32], bits: &[u16]) {
            let data: Vec<u8> = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
            self.var(name, dims, 4, &data);
        }

        pub fn finish(mut self, aliases: &[(&str, &str)]) -> Vec<u8> {
            self.buf.extend((aliases.len() as u32).to_le_bytes());
            for (a, t) in aliases {
                self.string(a);
                self.string(t);
            }
            self.buf
        }
    }

    fn sample() -> Vec<u8> {
        let mut w = Ct2Writer::new(6, "WhisperSpec");
        // 1.0, -2.0, 0.5, 0.25, 1024.0, -0.125 in f16.
        w.f16(
            "a/weight",
            &[2, 3],
            &[0x3C00, 0xC000, 0x3800, 0x3400, 0x6400, 0xB000],
        );
        w.f32("a/bias", &[2], &[3.5, -1.5]);
        w.var("a/heads", &[], 2, &6i16.to_le_bytes());
        w.finish(&[("b/weight", "a/weight")])
    }

    #[test]
    fn round_trips_header_tensors_and_aliases() {
        let buf = sample();
        let f = parse(&buf).expect("parses");
        assert_eq!(
            (f.version, f.spec.as_str(), f.revision),
            (6, "WhisperSpec", 1)
        );
        assert_eq!(f.variables.len(), 4);
        let dev = Device::Cpu;
        let w = f.get("a/weight").expect("present");
        assert_eq!(
            (w.dims.as_slice(), w.dtype),
            ([2, 3].as_slice(), Ct2Dtype::F16)
        );
        let t = w.to_f32_tensor(&dev).expect("converts");
        assert_eq!(t.dtype(), DType::F32);
        assert_eq!(
            t.to_vec2::<f32>().expect("2d"),
            vec![vec![1.0, -2.0, 0.5], vec![0.25, 1024.0, -0.125]]
        );
        let b = f
            .get("a/bias")
            .expect("present")
            .to_f32_tensor(&dev)
            .expect("f32");
        assert_eq!(b.to_vec1::<f32>().expect("1d"), vec![3.5, -1.5]);
        assert_eq!(f.get("a/heads").expect("present").scalar_int(), Some(6));
        let alias = f.get("b/weight").expect("alias resolved");
        assert_eq!(alias.data, w.data);
        assert!(f.get("nope").is_err());
    }

    #[test]
    fn malformed_files_are_errors_not_panics() {
        let good = sample();
        // Every truncation fails cleanly (except cutting exactly before the alias section,
        // which older files legitimately lack, but then the alias is missing).
        for n in 0..good.len() {
            let _ = parse(&good[..n]);
        }
        assert!(parse(&good[..good.len() - 3]).is_err());
        let mut bad_version = good.clone();
        bad_version[0] = 99;
        assert!(parse(&bad_version).unwrap_err().contains("version"));
        assert!(parse(b"\x7fELF\x02\x01").is_err());
        // Unknown dtype code.
        let mut w = Ct2Writer::new(6, "WhisperSpec");
        w.var("x", &[1], 9, &[0]);
        assert!(parse(&w.finish(&[])).unwrap_err().contains("unknown dtype"));
        // Byte count that disagrees with the shape.
        let mut w = Ct2Writer::new(6, "WhisperSpec");
        w.var("x", &[4], 0, &[0; 8]);
        assert!(parse(&w.finish(&[])).is_err());
        // Alias to nothing.
        let w = Ct2Writer::new(6, "WhisperSpec");
        assert!(
            parse(&w.finish(&[("a", "b")]))
                .unwrap_err()
                .contains("missing")
        );
        // Integer tensors are not weights.
        let f = parse(&good).expect("parses");
        assert!(
            f.get("a/heads")
                .expect("present")
                .to_f32_tensor(&Device::Cpu)
                .is_err()
        );
    }

    #[test]
    fn config_needs_whisper_tensors() {
        let buf = sample();
        let f = parse(&buf).expect("parses");
        let err = whisper_config(&f, vec![]).unwrap_err();
        assert!(err.contains("missing tensor"), "{err}");
    }
}
