//! Pictures attached to a message (`vtuber say --image`, `/image` in the chat): read
//! from a file and sent base64-encoded; the daemon checks, downscales and stores them.

use std::path::Path;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use vtuber_shared::ImageInput;
use vtuber_shared::framing::MAX_FRAME_BYTES;

/// Largest file sent: base64 grows it by a third, and the whole request must fit one
/// protocol frame (the daemon scales every picture down to 1568 px anyway).
pub const MAX_FILE_BYTES: usize = (MAX_FRAME_BYTES - 64 * 1024) / 4 * 3;

/// The MIME type of a picture file, from its first bytes.
pub fn sniff_mime(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// Reads a picture file for a message.
pub fn read_image(path: &Path) -> Result<ImageInput> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.len() > MAX_FILE_BYTES as u64 {
        bail!(
            "{} is {} bytes; pictures up to {} bytes can be sent (scale it down first)",
            path.display(),
            meta.len(),
            MAX_FILE_BYTES
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let Some(mime) = sniff_mime(&bytes) else {
        bail!("{} is not a PNG, JPEG, GIF or WebP picture", path.display());
    };
    Ok(ImageInput::new(
        mime,
        base64::engine::general_purpose::STANDARD.encode(&bytes),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_types_are_sniffed() {
        assert_eq!(sniff_mime(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff_mime(&[0xff, 0xd8, 0xff, 0xe0]), Some("image/jpeg"));
        assert_eq!(sniff_mime(b"GIF89a.."), Some("image/gif"));
        assert_eq!(sniff_mime(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff_mime(b"hello"), None);
    }

    #[test]
    fn a_text_file_is_refused_and_a_png_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let txt = dir.path().join("a.txt");
        std::fs::write(&txt, "hello").unwrap();
        assert!(read_image(&txt).is_err());
        let png = dir.path().join("a.png");
        std::fs::write(&png, b"\x89PNG\r\n\x1a\nxx").unwrap();
        let input = read_image(&png).unwrap();
        assert_eq!(input.mime_type, "image/png");
        assert_eq!(input.data_base64, "iVBORw0KGgp4eA==");
    }
}
