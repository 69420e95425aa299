// @ts-check
// Figures to take away, for slides and papers: the view (the picture with
// its map) or any figure of the Figures panel, as PNG or SVG, with a
// caption naming the model, the image and what the map shows (layer, head,
// kind), at 1×, 2× or 4× the size shown. Scaling is nearest-neighbour, so
// a blocky map keeps one sharp block per patch; the SVG's caption is text.
import { $ } from './dom.js';
import { notify, state } from './store.js';

const FONT = 14;
const LINE = 18;
const PAD = 10;
const GAP = 6;

/**
 * A picture: canvases side by side, each a stack drawn over one another
 * (with its opacity), at `width`×`height` pixels.
 * @typedef {{ layers: { canvas: HTMLCanvasElement | OffscreenCanvas, alpha: number }[], width: number, height: number }} Panel
 */

/**
 * `text` broken into lines no wider than `width` pixels in `ctx`'s font.
 * @param {OffscreenCanvasRenderingContext2D} ctx
 * @param {string} text
 * @param {number} width
 */
export function wrapLines(ctx, text, width) {
  const out = [];
  for (const paragraph of text.split('\n')) {
    let line = '';
    for (const word of paragraph.split(/\s+/).filter(Boolean)) {
      const next = line ? `${line} ${word}` : word;
      if (line && ctx.measureText(next).width > width) {
        out.push(line);
        line = word;
      } else {
        line = next;
      }
    }
    out.push(line);
  }
  return out;
}

/** The panels side by side, scaled by `scale` with no smoothing. @param {Panel[]} panels @param {number} scale */
function drawPanels(panels, scale) {
  const width = panels.reduce((w, p) => w + p.width * scale, 0) + GAP * (panels.length - 1);
  const height = Math.max(...panels.map((p) => p.height * scale));
  const picture = new OffscreenCanvas(Math.round(width), Math.round(height));
  const ctx = /** @type {OffscreenCanvasRenderingContext2D} */ (picture.getContext('2d'));
  ctx.imageSmoothingEnabled = false;
  let x = 0;
  for (const p of panels) {
    for (const { canvas, alpha } of p.layers) {
      ctx.globalAlpha = alpha;
      ctx.drawImage(canvas, x, 0, p.width * scale, p.height * scale);
    }
    ctx.globalAlpha = 1;
    x += p.width * scale + GAP;
  }
  return picture;
}

/** The caption's lines for a picture `width` pixels wide. @param {string} caption @param {number} width */
function captionLines(caption, width) {
  const ctx = /** @type {OffscreenCanvasRenderingContext2D} */ (new OffscreenCanvas(1, 1).getContext('2d'));
  ctx.font = `${FONT}px sans-serif`;
  return wrapLines(ctx, caption, Math.max(width, 320));
}

/**
 * The picture with its caption below, as a PNG.
 * @param {Panel[]} panels
 * @param {string} caption
 * @param {number} scale
 */
export async function pngOf(panels, caption, scale) {
  const picture = drawPanels(panels, scale);
  const lines = captionLines(caption, picture.width);
  const width = Math.max(picture.width, 320) + 2 * PAD;
  const out = new OffscreenCanvas(width, picture.height + 2 * PAD + lines.length * LINE + PAD);
  const ctx = /** @type {OffscreenCanvasRenderingContext2D} */ (out.getContext('2d'));
  ctx.fillStyle = 'white';
  ctx.fillRect(0, 0, out.width, out.height);
  ctx.drawImage(picture, PAD, PAD);
  ctx.fillStyle = '#111';
  ctx.font = `${FONT}px sans-serif`;
  ctx.textBaseline = 'top';
  lines.forEach((line, i) => ctx.fillText(line, PAD, picture.height + 2 * PAD + i * LINE));
  return out.convertToBlob({ type: 'image/png' });
}

const escapeXml = (/** @type {string} */ s) => s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * The picture (embedded as a PNG) with its caption below as text, as SVG.
 * @param {Panel[]} panels
 * @param {string} caption
 * @param {number} scale
 */
export async function svgOf(panels, caption, scale) {
  const picture = drawPanels(panels, scale);
  const bytes = new Uint8Array(await (await picture.convertToBlob({ type: 'image/png' })).arrayBuffer());
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  const lines = captionLines(caption, picture.width);
  const width = Math.max(picture.width, 320) + 2 * PAD;
  const height = picture.height + 2 * PAD + lines.length * LINE + PAD;
  const text = lines.map((line, i) => `<text x="${PAD}" y="${picture.height + 2 * PAD + i * LINE + FONT}">${escapeXml(line)}</text>`);
  return new Blob([
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">\n`,
    `<title>${escapeXml(caption)}</title>\n`,
    `<rect width="100%" height="100%" fill="white"/>\n`,
    `<image x="${PAD}" y="${PAD}" width="${picture.width}" height="${picture.height}" style="image-rendering:pixelated" href="data:image/png;base64,${btoa(binary)}"/>\n`,
    `<g font-family="sans-serif" font-size="${FONT}" fill="#111">\n${text.join('\n')}\n</g>\n</svg>\n`,
  ], { type: 'image/svg+xml' });
}

/** Hands `blob` to the browser as a download named `name`. @param {Blob} blob @param {string} name */
function save(blob, name) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

/** A file name's safe form of `text`. @param {string} text */
const slug = (text) => text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60);

/** The image's name for captions: a sample's, else "your image" (whose name stays here). */
function imageName() {
  const sample = state.current?.sample;
  return sample ? `the sample “${sample}”` : 'your image';
}

/** The view's caption: the model, the image, and what the map shows (the page's own caption). */
export function viewCaption() {
  return `${state.info?.name ?? 'vitrine'} on ${imageName()}. ${$('caption').textContent}\nvitrine: a Vision Transformer in the browser.`;
}

/** @param {'png' | 'svg'} kind @param {Panel[]} panels @param {string} caption @param {string} name */
async function download(kind, panels, caption, name) {
  const scale = Number(/** @type {HTMLSelectElement} */ ($('export-scale')).value) || 1;
  const blob = kind === 'png' ? await pngOf(panels, caption, scale) : await svgOf(panels, caption, scale);
  save(blob, `${name}.${kind}`);
}

/**
 * The view's two download buttons, and a PNG and an SVG button under each
 * figure of the Figures panel (its canvases at the size shown, its own
 * caption, the model and the image).
 */
export function setupExport() {
  for (const kind of /** @type {const} */ (['png', 'svg'])) {
    $(`download-${kind}`).addEventListener('click', () => {
      if (!state.current || !state.info) {
        notify({ error: 'Classify an image first: then its attention overlay can be downloaded.' });
        return;
      }
      const { view } = state;
      const image = /** @type {HTMLCanvasElement} */ ($('image'));
      const panels = [{ layers: [{ canvas: image, alpha: 1 }, { canvas: /** @type {HTMLCanvasElement} */ ($('overlay')), alpha: view.opacity }], width: image.width, height: image.height }];
      download(kind, panels, viewCaption(), `vitrine-${slug(state.info.name)}-layer${view.layer}-${view.head}${state.patch >= 0 ? `-patch${state.patch}` : ''}`);
    });
  }
  for (const figure of document.querySelectorAll('#figures figure')) {
    const row = document.createElement('div');
    row.className = 'row export';
    for (const kind of /** @type {const} */ (['png', 'svg'])) {
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = kind.toUpperCase();
      button.setAttribute('aria-label', `Download this figure as ${kind.toUpperCase()}`);
      button.addEventListener('click', () => {
        const canvases = /** @type {HTMLCanvasElement[]} */ ([...figure.querySelectorAll('canvas')]);
        if (!canvases.length || !state.info) return;
        const panels = canvases.map((canvas) => {
          const box = canvas.getBoundingClientRect();
          return { layers: [{ canvas, alpha: 1 }], width: box.width || canvas.width, height: box.height || canvas.height };
        });
        // The caption as it reads: each control by its chosen value.
        // (A clone keeps neither a menu's choice nor a box's tick: read from the original.)
        const original = figure.querySelector('figcaption') ?? document.createElement('span');
        const heading = /** @type {HTMLElement} */ (original.cloneNode(true));
        const chosen = [...original.querySelectorAll('select')].map((s) => s.selectedOptions[0]?.textContent ?? '');
        heading.querySelectorAll('select').forEach((s, i) => s.replaceWith(chosen[i]));
        // A box ticked reads as its label, one not as nothing.
        const ticked = [...original.querySelectorAll('input')].map((i) => i.checked);
        heading.querySelectorAll('input').forEach((i, k) => (ticked[k] ? i.remove() : (i.closest('label') ?? i).remove()));
        const title = heading.textContent?.replace(/\s+/g, ' ').trim() || 'A figure';
        const words = [...figure.querySelectorAll('p')].map((p) => p.textContent?.trim()).filter(Boolean).join(' ');
        const caption = `${title}: ${state.info.name} on ${imageName()}. ${words}\nvitrine: a Vision Transformer in the browser.`;
        download(kind, panels, caption, `vitrine-${slug(state.info.name)}-${slug(title).slice(0, 30)}`);
      });
      row.append(button);
    }
    figure.append(row);
  }
}
