//! Image files → upright RGBA pixels (native: the CLI and the tests; the
//! page lets the browser decode).
//!
//! PNG, JPEG, GIF (first frame), BMP and WebP, with the EXIF orientation
//! applied. Decoding stays within the image crate's allocation limit
//! (512 MiB), so a header that claims a gigapixel image is refused before
//! its buffer is allocated, and so is an image over
//! [`preprocess::MAX_PIXELS`](crate::preprocess::MAX_PIXELS).

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits};

use crate::preprocess::MAX_PIXELS;

/// Decodes the bytes of an image file, whatever its extension says.
pub fn decode_image(bytes: &[u8]) -> Result<image::RgbaImage, String> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    if reader.format().is_none() {
        return Err("not an image in a supported format (PNG, JPEG, GIF, BMP, WebP)".into());
    }
    reader.limits(Limits::default());
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| format!("cannot decode: {e}"))?;
    let (width, height) = decoder.dimensions();
    if width as u64 * height as u64 > MAX_PIXELS {
        return Err(format!(
            "the image is {width}×{height} pixels, more than the {} megapixels vitrine reads",
            MAX_PIXELS / (1024 * 1024)
        ));
    }
    let orientation = decoder
        .orientation()
        .map_err(|e| format!("cannot decode: {e}"))?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| format!("cannot decode: {e}"))?;
    img.apply_orientation(orientation);
    Ok(img.to_rgba8())
}
