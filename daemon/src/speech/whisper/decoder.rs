//! Whisper's text decoder with a self-attention key/value cache.
//!
//! candle-transformers' `TextDecoder` caches only the cross-attention keys and values
//! and always starts positions at 0, so greedy decoding must feed it the whole token
//! prefix at every step: work grows with the square of the text length. This decoder
//! keeps each layer's self-attention keys and values in a [`DecoderCache`], so a step
//! runs only the new tokens (at positions offset by the cached length) and attends to
//! the cached ones.
//!
//! Same weights (the Hugging Face names `Whisper::load` reads, shared with it, not
//! copied) and the same math as candle's decoder, down to its tanh GELU and scaling
//! both queries and keys by `head_dim^-¼`: token + learned positional embedding,
//! pre-LayerNorm residual blocks of masked self-attention, cross-attention over the
//! audio features and an MLP, a final LayerNorm, and logits against the token
//! embedding.

use candle_core::{Device, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, Module, VarBuilder};
use candle_transformers::models::whisper::Config;

fn layer_norm(size: usize, vb: VarBuilder) -> Result<LayerNorm> {
    let weight = vb.get(size, "weight")?;
    let bias = vb.get(size, "bias")?;
    Ok(LayerNorm::new(weight, bias, 1e-5))
}

/// Query, key, value and output projections of one attention layer.
#[derive(Debug, Clone)]
struct Attention {
    query: Linear,
    key: Linear,
    value: Linear,
    out: Linear,
    n_head: usize,
    /// `head_dim^-¼`, applied to queries and to keys.
    scale: f64,
}

impl Attention {
    fn load(n_state: usize, n_head: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            query: candle_nn::linear(n_state, n_state, vb.pp("q_proj"))?,
            key: candle_nn::linear_no_bias(n_state, n_state, vb.pp("k_proj"))?,
            value: candle_nn::linear(n_state, n_state, vb.pp("v_proj"))?,
            out: candle_nn::linear(n_state, n_state, vb.pp("out_proj"))?,
            n_head,
            scale: ((n_state / n_head) as f64).powf(-0.25),
        })
    }

    /// (1, n, d) → (1, heads, n, head_dim), contiguous.
    fn heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, n, d) = x.dims3()?;
        x.reshape((b, n, self.n_head, d / self.n_head))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// Scaled keys and values of `x`, split into heads.
    fn keys_values(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let k = (self.heads(&self.key.forward(x)?)? * self.scale)?;
        let v = self.heads(&self.value.forward(x)?)?;
        Ok((k, v))
    }

    /// Attention of `x`'s queries over keys `k` and values `v` (from
    /// [`Self::keys_values`]); `mask` (n, keys) is added to the scores.
    fn attend(&self, x: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let q = (self.heads(&self.query.forward(x)?)? * self.scale)?;
        let mut scores = q.matmul(&k.t()?)?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let wv = weights.matmul(v)?.transpose(1, 2)?.flatten_from(2)?;
        self.out.forward(&wv)
    }
}

/// One pre-LayerNorm residual block: self-attention, cross-attention, MLP.
#[derive(Debug, Clone)]
struct Block {
    attn: Attention,
    attn_ln: LayerNorm,
    cross_attn: Attention,
    cross_attn_ln: LayerNorm,
    mlp_linear1: Linear,
    mlp_linear2: Linear,
    mlp_ln: LayerNorm,
}

impl Block {
    fn load(n_state: usize, n_head: usize, vb: VarBuilder) -> Result<Self> {
        let n_mlp = n_state * 4;
        Ok(Self {
            attn: Attention::load(n_state, n_head, vb.pp("self_attn"))?,
            attn_ln: layer_norm(n_state, vb.pp("self_attn_layer_norm"))?,
            cross_attn: Attention::load(n_state, n_head, vb.pp("encoder_attn"))?,
            cross_attn_ln: layer_norm(n_state, vb.pp("encoder_attn_layer_norm"))?,
            mlp_linear1: candle_nn::linear(n_state, n_mlp, vb.pp("fc1"))?,
            mlp_linear2: candle_nn::linear(n_mlp, n_state, vb.pp("fc2"))?,
            mlp_ln: layer_norm(n_state, vb.pp("final_layer_norm"))?,
        })
    }

    /// Runs new positions `x` (1, n, d), appending their keys and values to `cache`.
    fn forward(&self, x: &Tensor, cache: &mut LayerCache, mask: Option<&Tensor>) -> Result<Tensor> {
        let h = self.attn_ln.forward(x)?;
        let (k, v) = self.attn.keys_values(&h)?;
        let (k, v) = match cache.this.take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
            None => (k, v),
        };
        let attn = self.attn.attend(&h, &k, &v, mask)?;
        cache.this = Some((k, v));
        let x = (x + attn)?;
        let h = self.cross_attn_ln.forward(&x)?;
        let x = (&x
            + self
                .cross_attn
                .attend(&h, &cache.audio.0, &cache.audio.1, None)?)?;
        let mlp = self.mlp_linear2.forward(
            &self
                .mlp_linear1
                .forward(&self.mlp_ln.forward(&x)?)?
                .gelu()?,
        )?;
        x + mlp
    }
}

/// One layer's cached keys and values, split into heads, keys scaled.
#[derive(Debug, Clone)]
struct LayerCache {
    /// Cross-attention over the audio features: fixed for the window.
    audio: (Tensor, Tensor),
    /// Self-attention over the tokens run so far: grows by the new tokens each step.
    this: Option<(Tensor, Tensor)>,
}

/// The decoding state of one window: start a new one (with [`TextDecoder::start`]) for
/// each window or retry.
#[derive(Debug, Clone)]
pub struct DecoderCache {
    layers: Vec<LayerCache>,
    /// Tokens run so far: the position of the next one.
    len: usize,
}

impl DecoderCache {
    /// Tokens run so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Whisper's text decoder, run incrementally.
#[derive(Debug, Clone)]
pub struct TextDecoder {
    token_embedding: Embedding,
    positional_embedding: Tensor,
    blocks: Vec<Block>,
    ln: LayerNorm,
    device: Device,
}

impl TextDecoder {
    /// Loads from `vb` prefixed as candle's decoder (`model.decoder`).
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let n_state = cfg.d_model;
        let n_head = cfg.decoder_attention_heads;
        let token_embedding = candle_nn::embedding(cfg.vocab_size, n_state, vb.pp("embed_tokens"))?;
        let positional_embedding = vb.get(
            (cfg.max_target_positions, n_state),
            "embed_positions.weight",
        )?;
        let blocks = (0..cfg.decoder_layers)
            .map(|i| Block::load(n_state, n_head, vb.pp(format!("layers.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let ln = layer_norm(n_state, vb.pp("layer_norm"))?;
        Ok(Self {
            token_embedding,
            positional_embedding,
            blocks,
            ln,
            device: vb.device().clone(),
        })
    }

    /// A fresh cache for decoding over `features` (1, audio frames, d), the encoder's
    /// output: computes each layer's cross-attention keys and values once.
    pub fn start(&self, features: &Tensor) -> Result<DecoderCache> {
        let layers = self
            .blocks
            .iter()
            .map(|b| {
                Ok(LayerCache {
                    audio: b.cross_attn.keys_values(features)?,
                    this: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DecoderCache { layers, len: 0 })
    }

    /// Runs `tokens`, the ones following those already in `cache`, and adds them to it.
    /// Returns their final hidden states (1, tokens, d), for [`Self::logits`].
    pub fn forward(&self, tokens: &[u32], cache: &mut DecoderCache) -> Result<Tensor> {
        let n = tokens.len();
        let start = cache.len;
        let max = self.positional_embedding.dim(0)?;
        if n == 0 || start + n > max {
            candle_core::bail!(
                "decoder input of {n} tokens after {start} does not fit its {max} positions"
            );
        }
        let ids = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let positions = self.positional_embedding.narrow(0, start, n)?;
        let mut x = self
            .token_embedding
            .forward(&ids)?
            .broadcast_add(&positions)?;
        // A token sees the cached ones and the new ones up to itself.
        let mask = if n > 1 {
            let mask: Vec<f32> = (0..n)
                .flat_map(|i| {
                    (0..start + n).map(move |j| {
                        if j > start + i {
                            f32::NEG_INFINITY
                        } else {
                            0.0
                        }
                    })
                })
                .collect();
            Some(Tensor::from_vec(mask, (n, start + n), &self.device)?)
        } else {
            None
        };
        for (block, layer) in self.blocks.iter().zip(&mut cache.layers) {
            x = block.forward(&x, layer, mask.as_ref())?;
        }
        cache.len += n;
        self.ln.forward(&x)
    }

    /// Logits (vocabulary) of the hidden state at `position` of `hidden` (1, n, d).
    pub fn logits(&self, hidden: &Tensor, position: usize) -> Result<Tensor> {
        let x = hidden.narrow(1, position, 1)?.flatten_all()?.unsqueeze(0)?;
        let w = self.token_embedding.embeddings();
        x.matmul(&w.t()?)?.squeeze(0)
    }
}
