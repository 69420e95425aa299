// What the user gives, made into pixels: the format a file's bytes
// announce (whatever its name says), truncated files caught before the
// browser's decoder, decoding upright, and scaling down to what wasm gets.

/** The image format a file's first bytes announce, whatever its name says. */
export function sniff(head) {
  const starts = (...bytes) => bytes.every((b, i) => head[i] === b);
  const ascii = (from, text) => [...text].every((ch, i) => head[from + i] === ch.charCodeAt(0));
  if (starts(0x89, 0x50, 0x4e, 0x47)) return 'PNG';
  if (starts(0xff, 0xd8, 0xff)) return 'JPEG';
  if (ascii(0, 'GIF8')) return 'GIF';
  if (ascii(0, 'RIFF') && ascii(8, 'WEBP')) return 'WebP';
  if (ascii(0, 'BM')) return 'BMP';
  if (starts(0x49, 0x49, 0x2a, 0) || starts(0x4d, 0x4d, 0, 0x2a)) return 'TIFF';
  if (ascii(4, 'ftyp')) return 'ISO media (AVIF or HEIC)';
  return null;
}

/** Why a PNG or JPEG stops before its image does (a truncated download, a cut file), or null. */
export async function truncation(blob, format) {
  if (format !== 'PNG' && format !== 'JPEG') return null;
  const tail = new Uint8Array(await blob.slice(Math.max(0, blob.size - 4096)).arrayBuffer());
  if (format === 'JPEG') {
    for (let i = tail.length - 2; i >= 0; i--) if (tail[i] === 0xff && tail[i + 1] === 0xd9) return null;
    return 'its JPEG data stops before the end-of-image marker';
  }
  const iend = [0x49, 0x45, 0x4e, 0x44];
  for (let i = tail.length - 4; i >= 0; i--) if (iend.every((b, k) => tail[i + k] === b)) return null;
  return 'its PNG data stops before the closing IEND chunk';
}

/** Decodes a file or blob upright (EXIF orientation applied), or says why it cannot be. */
export async function decode(blob, name) {
  const format = sniff(new Uint8Array(await blob.slice(0, 16).arrayBuffer()));
  if (format === 'TIFF') throw new Error(`${name} is a TIFF image, which browsers cannot decode. Save it as PNG or JPEG and try again.`);
  const cut = await truncation(blob, format);
  if (cut) throw new Error(`${name} is truncated or corrupt: ${cut}.`);
  try {
    return await createImageBitmap(blob, { imageOrientation: 'from-image' });
  } catch {
    throw new Error(format
      ? `${name} looks like a ${format} image, but this browser could not decode it: the file is corrupt, or too large for this browser.`
      : `${name} is not an image this browser can decode (PNG, JPEG, GIF, WebP, BMP and AVIF work).`);
  }
}

/**
 * Draws `bitmap` onto a canvas no larger than `maxSide` on its longer side;
 * returns the canvas, its size and the scale applied (1 when it fitted).
 */
export function fitCanvas(bitmap, maxSide, [width, height] = [bitmap.width, bitmap.height]) {
  const scale = Math.min(1, maxSide / Math.max(width, height));
  const w = Math.max(1, Math.round(width * scale));
  const h = Math.max(1, Math.round(height * scale));
  const canvas = new OffscreenCanvas(w, h);
  canvas.getContext('2d').drawImage(bitmap, 0, 0, w, h);
  return { canvas, w, h, scale };
}
