//! Pictures sent with a message: checked, downscaled and re-encoded before anything
//! stores them or sends them to a model.
//!
//! Input is hostile: the encoded size is bounded before decoding, the pixel count is
//! read from the header before any pixel is decoded (a decompression bomb is refused
//! without allocating it), and the decoder's own allocation limit is set as well. The
//! work is CPU-heavy, so [`prepare_all`] runs it on the blocking pool.

use std::io::Cursor;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use image::{DynamicImage, ImageFormat, ImageReader, Limits};
use sha2::{Digest, Sha256};
use vtuber_shared::{ErrorBody, ErrorCode, ImageInput};

/// Largest encoded image accepted (before base64).
pub const MAX_IMAGE_BYTES: usize = 20 * 1024 * 1024;
/// Largest image accepted, in pixels (width × height, from the header).
pub const MAX_IMAGE_PIXELS: u64 = 40_000_000;
/// Longest side after downscaling: what the vision APIs use at most anyway (Anthropic
/// scales larger images down to about this), so more would only cost upload and tokens.
pub const MAX_SIDE: u32 = 1568;
/// Most pictures on one message.
pub const MAX_IMAGES_PER_MESSAGE: usize = 8;
/// JPEG quality of re-encoded pictures.
const JPEG_QUALITY: u8 = 85;

/// Why a picture was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("image {index}: not valid base64")]
    Base64 { index: usize },
    #[error("image {index} is {bytes} bytes; the limit is {MAX_IMAGE_BYTES}")]
    TooManyBytes { index: usize, bytes: usize },
    #[error("image {index} is {width}×{height} pixels; the limit is {MAX_IMAGE_PIXELS} pixels")]
    TooManyPixels {
        index: usize,
        width: u32,
        height: u32,
    },
    #[error("image {index} cannot be read as PNG, JPEG, WebP or GIF: {reason}")]
    Undecodable { index: usize, reason: String },
    #[error("image {index} could not be re-encoded: {reason}")]
    Encode { index: usize, reason: String },
    #[error("{count} images on one message; the limit is {MAX_IMAGES_PER_MESSAGE}")]
    TooMany { count: usize },
    #[error("image check failed: {0}")]
    Task(String),
}

impl ImageError {
    pub fn to_body(&self) -> ErrorBody {
        let hint = match self {
            Self::TooManyBytes { .. } | Self::TooManyPixels { .. } => {
                "send a smaller picture (it is scaled down to 1568 px anyway)"
            }
            Self::TooMany { .. } => "send fewer pictures at once",
            Self::Task(_) | Self::Encode { .. } => "see the daemon log",
            Self::Base64 { .. } | Self::Undecodable { .. } => {
                "send a PNG, JPEG, WebP or GIF file, base64-encoded"
            }
        };
        ErrorBody::new(ErrorCode::InvalidArgument, self.to_string()).with_hint(hint)
    }
}

/// A checked picture, ready to store and send: PNG when it has transparency, else JPEG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedImage {
    /// SHA-256 of `bytes`, lower-case hex: the file's name in the store.
    pub sha256: String,
    pub mime_type: &'static str,
    pub bytes: Vec<u8>,
}

impl PreparedImage {
    pub fn base64(&self) -> String {
        BASE64.encode(&self.bytes)
    }
}

/// The file extension for a MIME type this module produces.
pub fn extension(mime_type: &str) -> &'static str {
    match mime_type {
        "image/png" => "png",
        _ => "jpg",
    }
}

/// Checks and converts every picture of a message on the blocking pool.
pub async fn prepare_all(inputs: Vec<ImageInput>) -> Result<Vec<PreparedImage>, ImageError> {
    if inputs.is_empty() {
        return Ok(Vec::new());
    }
    if inputs.len() > MAX_IMAGES_PER_MESSAGE {
        return Err(ImageError::TooMany {
            count: inputs.len(),
        });
    }
    tokio::task::spawn_blocking(move || {
        inputs
            .iter()
            .enumerate()
            .map(|(index, input)| prepare(index, input))
            .collect()
    })
    .await
    .map_err(|e| ImageError::Task(e.to_string()))?
}

/// Strips a `data:<mime>;base64,` prefix if there is one (Open-LLM-VTuber sends data
/// URLs; the socket protocol sends bare base64).
fn strip_data_url(data: &str) -> &str {
    match data.strip_prefix("data:") {
        Some(rest) => rest.split_once(',').map_or(rest, |(_, b64)| b64),
        None => data,
    }
}

/// Checks, decodes, downscales and re-encodes one picture (blocking).
pub fn prepare(index: usize, input: &ImageInput) -> Result<PreparedImage, ImageError> {
    let b64 = strip_data_url(input.data_base64.trim());
    // Bound the decoded size before decoding the base64 itself.
    if b64.len() / 4 * 3 > MAX_IMAGE_BYTES + 3 {
        return Err(ImageError::TooManyBytes {
            index,
            bytes: b64.len() / 4 * 3,
        });
    }
    let encoded = BASE64
        .decode(b64.as_bytes())
        .map_err(|_| ImageError::Base64 { index })?;
    prepare_bytes(index, &encoded)
}

/// [`prepare`] for the encoded file itself.
pub fn prepare_bytes(index: usize, encoded: &[u8]) -> Result<PreparedImage, ImageError> {
    if encoded.len() > MAX_IMAGE_BYTES {
        return Err(ImageError::TooManyBytes {
            index,
            bytes: encoded.len(),
        });
    }
    let undecodable = |e: &dyn std::fmt::Display| ImageError::Undecodable {
        index,
        reason: e.to_string(),
    };
    let format = image::guess_format(encoded).map_err(|e| undecodable(&e))?;
    if !matches!(
        format,
        ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP | ImageFormat::Gif
    ) {
        return Err(undecodable(&format!("{format:?} is not supported")));
    }
    let reader = || {
        let mut r = ImageReader::with_format(Cursor::new(encoded), format);
        let mut limits = Limits::default();
        limits.max_alloc = Some(MAX_IMAGE_PIXELS * 8);
        r.limits(limits);
        r
    };
    // The header alone first: a bomb's size shows before its pixels are decoded.
    let (width, height) = reader().into_dimensions().map_err(|e| undecodable(&e))?;
    if u64::from(width) * u64::from(height) > MAX_IMAGE_PIXELS {
        return Err(ImageError::TooManyPixels {
            index,
            width,
            height,
        });
    }
    let decoded = reader().decode().map_err(|e| undecodable(&e))?;
    encode(index, downscale(decoded))
}

fn downscale(img: DynamicImage) -> DynamicImage {
    if img.width().max(img.height()) <= MAX_SIDE {
        img
    } else {
        img.resize(MAX_SIDE, MAX_SIDE, image::imageops::FilterType::Triangle)
    }
}

/// PNG when any pixel is not opaque, else JPEG.
fn encode(index: usize, img: DynamicImage) -> Result<PreparedImage, ImageError> {
    let failed = |e: image::ImageError| ImageError::Encode {
        index,
        reason: e.to_string(),
    };
    let transparent = img.color().has_alpha() && img.to_rgba8().pixels().any(|p| p.0[3] < 255);
    let mut bytes = Vec::new();
    let mime_type = if transparent {
        img.to_rgba8()
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .map_err(failed)?;
        "image/png"
    } else {
        let rgb = img.to_rgb8();
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY);
        rgb.write_with_encoder(encoder).map_err(failed)?;
        "image/jpeg"
    };
    let sha256 = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(PreparedImage {
        sha256,
        mime_type,
        bytes,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use image::{Rgb, RgbImage, Rgba, RgbaImage};

    /// An encoded test picture of `w`×`h` in `format`.
    pub(crate) fn encoded(w: u32, h: u32, format: ImageFormat) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
        let mut out = Vec::new();
        DynamicImage::ImageRgb8(img)
            .write_to(&mut Cursor::new(&mut out), format)
            .unwrap();
        out
    }

    fn input(bytes: &[u8]) -> ImageInput {
        ImageInput::new("image/png", BASE64.encode(bytes))
    }

    #[test]
    fn a_small_png_becomes_a_jpeg_of_the_same_size() {
        let p = prepare(0, &input(&encoded(40, 30, ImageFormat::Png))).unwrap();
        assert_eq!(p.mime_type, "image/jpeg");
        let back = image::load_from_memory(&p.bytes).unwrap();
        assert_eq!((back.width(), back.height()), (40, 30));
        assert_eq!(p.sha256.len(), 64);
    }

    #[test]
    fn data_urls_and_every_format_are_read() {
        for format in [ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Gif] {
            let b64 = BASE64.encode(encoded(8, 8, format));
            let url = ImageInput::new("", format!("data:image/x;base64,{b64}"));
            assert!(prepare(0, &url).is_ok(), "{format:?}");
        }
    }

    #[test]
    fn transparency_keeps_png() {
        let img = RgbaImage::from_fn(10, 10, |x, _| Rgba([0, 0, 0, if x < 5 { 0 } else { 255 }]));
        let mut bytes = Vec::new();
        DynamicImage::ImageRgba8(img)
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .unwrap();
        let p = prepare_bytes(0, &bytes).unwrap();
        assert_eq!(p.mime_type, "image/png");
    }

    #[test]
    fn large_images_are_downscaled_to_the_long_side() {
        let p = prepare_bytes(0, &encoded(3000, 1000, ImageFormat::Png)).unwrap();
        let back = image::load_from_memory(&p.bytes).unwrap();
        assert_eq!(back.width(), MAX_SIDE);
        assert!((520..=524).contains(&back.height()), "{}", back.height());
    }

    #[test]
    fn garbage_and_bad_base64_are_refused() {
        assert!(matches!(
            prepare_bytes(1, b"not an image at all"),
            Err(ImageError::Undecodable { index: 1, .. })
        ));
        assert_eq!(
            prepare(2, &ImageInput::new("image/png", "!!!")),
            Err(ImageError::Base64 { index: 2 })
        );
        // A PNG cut short: the header reads, the pixels do not.
        let png = encoded(64, 64, ImageFormat::Png);
        assert!(prepare_bytes(0, &png[..png.len() / 2]).is_err());
    }

    #[test]
    fn a_pixel_bomb_is_refused_from_its_header() {
        // A valid PNG header claiming 10000×10000 pixels, with no pixel data at all.
        let mut png = encoded(1, 1, ImageFormat::Png);
        // IHDR's width and height sit at bytes 16..24; the CRC after them is not
        // checked before the size is (and a mismatch would also be refused).
        png[16..20].copy_from_slice(&10_000u32.to_be_bytes());
        png[20..24].copy_from_slice(&10_000u32.to_be_bytes());
        let crc = crc32(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            prepare_bytes(0, &png),
            Err(ImageError::TooManyPixels {
                index: 0,
                width: 10_000,
                height: 10_000
            })
        );
    }

    #[test]
    fn oversized_input_is_refused_before_decoding() {
        let big = "A".repeat(MAX_IMAGE_BYTES / 3 * 4 + 400);
        assert!(matches!(
            prepare(0, &ImageInput::new("image/png", big)),
            Err(ImageError::TooManyBytes { .. })
        ));
    }

    #[tokio::test]
    async fn too_many_images_are_refused() {
        let one = input(&encoded(2, 2, ImageFormat::Png));
        let r = prepare_all(vec![one; MAX_IMAGES_PER_MESSAGE + 1]).await;
        assert!(matches!(r, Err(ImageError::TooMany { .. })));
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
