// Pointing at a patch (mouse, or the arrow keys on the picture) shows what
// it attends to: the chosen layer's full attention, read from the worker
// once per image and layer (`current.rows`, a cache of the image shown).
import { run } from './models.js';
import { notify, state, update } from './store.js';
import { $ } from './dom.js';


/** Points at patch `p` (-1: the class token): drawn at once, its own map once its layer's rows are here. */
function showPatch(p) {
  if (state.current) update({ patch: p });
}

/** Reads the chosen layer's full attention when a patch is pointed at and the image shown lacks it. */
export async function ensureRows() {
  const mine = state.current;
  const { layer } = state.view;
  if (!mine || state.patch < 0 || mine.rows[layer] || mine.pendingRows.has(layer)) return;
  mine.pendingRows.add(layer);
  try {
    const { layerAttention, layerMean } = await run({ type: 'attention', layer });
    mine.rows[layer] = { layerAttention, layerMean };
  } catch (e) {
    notify({ error: `Could not read layer ${layer}'s attention: ${e.message}` });
    return;
  } finally {
    mine.pendingRows.delete(layer);
  }
  if (mine === state.current) update({ current: mine }); // its cache was filled
}

function patchAt(event) {
  const [rows, cols] = state.current.result.grid;
  const box = $('stage').getBoundingClientRect();
  const x = Math.floor(((event.clientX - box.left) / box.width) * cols);
  const y = Math.floor(((event.clientY - box.top) / box.height) * rows);
  return x >= 0 && y >= 0 && x < cols && y < rows ? y * cols + x : -1;
}

/** The picture's pointer and keys. */
export function setupPointer() {
  $('stage').addEventListener('pointermove', (e) => {
    if (!state.current) return;
    const p = patchAt(e);
    if (p !== state.patch) showPatch(p);
  });
  $('stage').addEventListener('pointerleave', () => { if (state.current && state.patch >= 0) showPatch(-1); });
  $('stage').addEventListener('keydown', (e) => {
    if (!state.current) return;
    const [rows, cols] = state.current.result.grid;
    const { patch } = state;
    let p = patch < 0 ? Math.floor(rows / 2) * cols + Math.floor(cols / 2) : patch;
    const moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (e.key === 'Escape') p = -1;
    else if (moves[e.key] && patch >= 0) {
      const [dx, dy] = moves[e.key];
      const x = Math.min(cols - 1, Math.max(0, (p % cols) + dx));
      const y = Math.min(rows - 1, Math.max(0, Math.floor(p / cols) + dy));
      p = y * cols + x;
    } else if (!moves[e.key]) return;
    e.preventDefault();
    showPatch(p);
  });
}
