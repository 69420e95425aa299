// @ts-check
// The presentation view: the picture, its map and its caption alone, full
// screen, in large type, for a class. The arrow keys step through the
// layers (← →), or a lesson's steps while one is open, and the Map menu
// (↑ ↓: the mean, rollout, each head); Escape leaves.
import { $, one } from './dom.js';
import { setView } from './controls.js';
import { state } from './store.js';

/** @param {{ lessons: { isOpen: () => boolean, move: (by: number) => void } }} options */
export function setupPresent({ lessons }) {
  const view = $('view');
  const leave = () => {
    document.body.classList.remove('presenting');
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  };
  $('present').addEventListener('click', () => {
    document.body.classList.add('presenting');
    one('.present-hint').textContent = `← → ${lessons.isOpen() ? 'step' : 'layer'} · ↑ ↓ map · Esc leaves`;
    // Full screen where the browser allows it; the page's own layout either way.
    view.requestFullscreen?.().catch(() => {});
    $('stage').focus();
  });
  document.addEventListener('fullscreenchange', () => {
    if (!document.fullscreenElement) document.body.classList.remove('presenting');
  });
  // Before the stage's own arrow keys (which point at patches).
  document.addEventListener('keydown', (e) => {
    if (!document.body.classList.contains('presenting') || !state.info) return;
    const menu = /** @type {HTMLSelectElement} */ ($('head'));
    const step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -1, ArrowDown: 1 }[e.key];
    if (e.key === 'Escape') leave();
    else if ((e.key === 'ArrowLeft' || e.key === 'ArrowRight') && lessons.isOpen()) lessons.move(/** @type {number} */ (step));
    else if (e.key === 'ArrowLeft' || e.key === 'ArrowRight') setView({ layer: state.view.layer + /** @type {number} */ (step) });
    else if (e.key === 'ArrowUp' || e.key === 'ArrowDown') {
      const at = Math.max(0, Math.min(menu.options.length - 1, menu.selectedIndex + /** @type {number} */ (step)));
      setView({ head: menu.options[at].value });
    } else return;
    e.preventDefault();
    e.stopPropagation();
  }, true);
}
