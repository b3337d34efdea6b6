//! Telling text from images and other binary data by a file's first bytes, so that Read
//! shows text, names images, and refuses the rest instead of dumping noise.

use std::fmt;

/// How many leading bytes decide whether a file is text.
pub(crate) const SNIFF_LEN: usize = 8 * 1024;

/// An image format recognised by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ImageKind {
    /// Portable Network Graphics.
    Png,
    /// JPEG (JFIF/EXIF).
    Jpeg,
    /// GIF 87a/89a.
    Gif,
    /// WebP (RIFF container).
    Webp,
}

impl fmt::Display for ImageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImageKind::Png => "PNG",
            ImageKind::Jpeg => "JPEG",
            ImageKind::Gif => "GIF",
            ImageKind::Webp => "WebP",
        })
    }
}

/// What a file's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sniffed {
    /// UTF-8 text without NUL bytes (as far as the head shows).
    Text,
    /// An image, with its width and height when the head holds them.
    Image(ImageKind, Option<(u32, u32)>),
    /// Binary data: a NUL byte at this offset.
    Nul(usize),
    /// Binary data: bytes that are not UTF-8 at this offset.
    NotUtf8(usize),
}

/// Classifies a file by its head (its first [`SNIFF_LEN`] bytes, or all of a shorter file).
pub(crate) fn sniff(head: &[u8]) -> Sniffed {
    if let Some(kind) = image_kind(head) {
        return Sniffed::Image(kind, image_size(kind, head));
    }
    if let Some(at) = memchr_nul(head) {
        return Sniffed::Nul(at);
    }
    match std::str::from_utf8(head) {
        Ok(_) => Sniffed::Text,
        // A character cut by the end of the head is not an error (error_len is None).
        Err(e) if e.error_len().is_none() => Sniffed::Text,
        Err(e) => Sniffed::NotUtf8(e.valid_up_to()),
    }
}

/// The offset of the first NUL byte.
fn memchr_nul(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == 0)
}

/// The image format the magic bytes name.
fn image_kind(head: &[u8]) -> Option<ImageKind> {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageKind::Png)
    } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageKind::Jpeg)
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        Some(ImageKind::Gif)
    } else if head.len() >= 12 && head.starts_with(b"RIFF") && &head[8..12] == b"WEBP" {
        Some(ImageKind::Webp)
    } else {
        None
    }
}

/// Two bytes big-endian at `at`.
fn be16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
    ])))
}

/// Two bytes little-endian at `at`.
fn le16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_le_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
    ])))
}

/// Three bytes little-endian at `at`.
fn le24(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        0,
    ]))
}

/// Width and height from the image header, when it lies in the head.
fn image_size(kind: ImageKind, b: &[u8]) -> Option<(u32, u32)> {
    match kind {
        ImageKind::Png => {
            // The IHDR chunk always comes first: width and height at 16 and 20.
            let w = u32::from_be_bytes(b.get(16..20)?.try_into().ok()?);
            let h = u32::from_be_bytes(b.get(20..24)?.try_into().ok()?);
            Some((w, h))
        }
        ImageKind::Gif => Some((le16(b, 6)?, le16(b, 8)?)),
        ImageKind::Webp => match b.get(12..16)? {
            b"VP8 " => Some((le16(b, 26)? & 0x3FFF, le16(b, 28)? & 0x3FFF)),
            b"VP8L" => {
                let bits = u32::from_le_bytes(b.get(21..25)?.try_into().ok()?);
                Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
            }
            b"VP8X" => Some((le24(b, 24)? + 1, le24(b, 27)? + 1)),
            _ => None,
        },
        ImageKind::Jpeg => jpeg_size(b),
    }
}

/// Walks JPEG segments to the first start-of-frame marker (which holds the size).
fn jpeg_size(b: &[u8]) -> Option<(u32, u32)> {
    let mut at = 2;
    loop {
        if *b.get(at)? != 0xFF {
            return None;
        }
        let marker = *b.get(at + 1)?;
        match marker {
            // Fill bytes before a marker.
            0xFF => at += 1,
            // Standalone markers without a length.
            0x01 | 0xD0..=0xD7 => at += 2,
            // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC).
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                return Some((be16(b, at + 7)?, be16(b, at + 5)?));
            }
            _ => at += 2 + usize::try_from(be16(b, at + 2)?).ok()?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_cut_characters_are_text() {
        assert_eq!(sniff(b"hello\nworld\n"), Sniffed::Text);
        assert_eq!(sniff(b""), Sniffed::Text);
        // "é" cut in half at the end of the head.
        assert_eq!(sniff(&[b'a', 0xC3]), Sniffed::Text);
    }

    #[test]
    fn nul_and_invalid_utf8_are_binary() {
        assert_eq!(sniff(b"ab\0cd"), Sniffed::Nul(2));
        assert_eq!(sniff(&[b'a', 0xFF, b'b']), Sniffed::NotUtf8(1));
    }

    #[test]
    fn images_are_named_with_their_size() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&800u32.to_be_bytes());
        png.extend_from_slice(&600u32.to_be_bytes());
        assert_eq!(
            sniff(&png),
            Sniffed::Image(ImageKind::Png, Some((800, 600)))
        );
        let gif = b"GIF89a\x40\x01\xf0\x00";
        assert_eq!(sniff(gif), Sniffed::Image(ImageKind::Gif, Some((320, 240))));
        // SOI, an APP0 segment of length 4, then SOF0 with height 0x10 and width 0x20.
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00,
            0x10, 0x00, 0x20,
        ];
        assert_eq!(
            sniff(&jpeg),
            Sniffed::Image(ImageKind::Jpeg, Some((32, 16)))
        );
        let mut webp = b"RIFF\0\0\0\0WEBPVP8X\0\0\0\0\0\0\0\0".to_vec();
        webp.extend_from_slice(&[99, 0, 0, 49, 0, 0]);
        assert_eq!(
            sniff(&webp),
            Sniffed::Image(ImageKind::Webp, Some((100, 50)))
        );
        assert_eq!(sniff(b"GIF89a"), Sniffed::Image(ImageKind::Gif, None));
    }
}
