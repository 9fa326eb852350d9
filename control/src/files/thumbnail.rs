//! Thumbnails and previews of uploaded images (JPEG), made once at upload.
//!
//! Decoding untrusted images is where decompression bombs live: a few KiB
//! of PNG can declare a 100 000 × 100 000 canvas. The header is read first
//! and the image refused when it has more than `max_pixels`; the decoder
//! also runs under an allocation limit. Call [`make`] off the async
//! runtime (`spawn_blocking`): decoding is CPU work.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::{DynamicImage, ImageReader, Limits};

/// The box a thumbnail fits in (what chat clients show in a post).
pub const THUMBNAIL: (u32, u32) = (120, 100);
/// The box a preview fits in (what a client shows full screen).
pub const PREVIEW: (u32, u32) = (1920, 1080);
const JPEG_QUALITY: u8 = 85;

pub struct Thumbs {
    pub width: u32,
    pub height: u32,
    pub thumbnail: Vec<u8>,
    pub preview: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ThumbError {
    #[error("image of {0} × {1} pixels is larger than the limit")]
    TooManyPixels(u32, u32),
    #[error("image: {0}")]
    Image(#[from] image::ImageError),
    #[error("reading the image: {0}")]
    Io(#[from] std::io::Error),
}

fn reader(bytes: &[u8]) -> Result<ImageReader<Cursor<&[u8]>>, ThumbError> {
    Ok(ImageReader::new(Cursor::new(bytes)).with_guessed_format()?)
}

/// Decodes `bytes` (PNG, JPEG, GIF's first frame, WebP) and renders the
/// thumbnail and the preview.
pub fn make(bytes: &[u8], max_pixels: u64) -> Result<Thumbs, ThumbError> {
    let (width, height) = reader(bytes)?.into_dimensions()?;
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(ThumbError::TooManyPixels(width, height));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    // RGBA at 16 bits per channel, plus room for the decoder's own buffers.
    limits.max_alloc = Some(max_pixels.saturating_mul(8).saturating_add(64 << 20));
    let mut r = reader(bytes)?;
    r.limits(limits);
    let img = r.decode()?;
    let thumbnail = jpeg(&img.thumbnail(THUMBNAIL.0, THUMBNAIL.1))?;
    let preview = if width > PREVIEW.0 || height > PREVIEW.1 {
        jpeg(&img.resize(PREVIEW.0, PREVIEW.1, FilterType::Triangle))?
    } else {
        jpeg(&img)?
    };
    Ok(Thumbs {
        width,
        height,
        thumbnail,
        preview,
    })
}

fn jpeg(img: &DynamicImage) -> Result<Vec<u8>, ThumbError> {
    let mut out = Vec::new();
    // JPEG has no alpha: flatten to RGB.
    DynamicImage::ImageRgb8(img.to_rgb8())
        .write_with_encoder(JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbaImage::from_fn(w, h, |x, y| image::Rgba([x as u8, y as u8, 90, 255]));
        let mut out = Vec::new();
        DynamicImage::ImageRgba8(img)
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn thumbnails_fit_their_box_and_keep_the_aspect() {
        let t = make(&png(600, 300), 1 << 20).unwrap();
        assert_eq!((t.width, t.height), (600, 300));
        let th = image::load_from_memory(&t.thumbnail).unwrap();
        assert_eq!((th.width(), th.height()), (120, 60));
        let pv = image::load_from_memory(&t.preview).unwrap();
        assert_eq!(
            (pv.width(), pv.height()),
            (600, 300),
            "small images keep their size"
        );
    }

    #[test]
    fn too_many_pixels_are_refused_from_the_header() {
        assert!(matches!(
            make(&png(600, 300), 100_000),
            Err(ThumbError::TooManyPixels(600, 300))
        ));
        // A header claiming 100 000 × 100 000 pixels: refused at once.
        let mut bomb = png(1, 1);
        bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let started = std::time::Instant::now();
        assert!(make(&bomb, 40_000_000).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(matches!(
            make(b"not an image", 1 << 20),
            Err(ThumbError::Image(_))
        ));
    }
}
