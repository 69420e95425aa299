// Pointing at a patch (mouse, or the arrow keys on the picture) shows what
// it attends to: the chosen layer's full attention, read from the worker
// once per image and layer (`current.rows`, a cache of the image shown).
import { layerNow } from './view.js';
import { run } from './models.js';
import { notify, state, update } from './store.js';
import { $ } from './dom.js';


/** Points at patch `p` (-1: the class token), reading its layer's attention if needed. */
export async function showPatch(p) {
  const mine = state.current;
  if (!mine) return;
  // Drawn at once; the patch's own map once its layer's rows are here.
  update({ patch: p });
  const layer = layerNow();
  if (p >= 0 && !mine.rows[layer]) {
    try {
      const { layerAttention, layerMean } = await run({ type: 'attention', layer });
      mine.rows[layer] = { layerAttention, layerMean };
    } catch (e) {
      notify({ error: `Could not read layer ${layer}'s attention: ${e.message}` });
      return;
    }
    if (mine === state.current) update({});
  }
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
