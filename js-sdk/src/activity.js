// User activity in this tab between two heartbeats: any input counts, mouse moves throttled.

const INPUTS = ['pointerdown', 'keydown', 'wheel', 'scroll', 'touchstart'];
// Mouse moves closer together than this count once.
const MOVE_THROTTLE_MS = 1000;
const OPTIONS = { capture: true, passive: true };

/**
 * Listens for user input on `win` with `listen` (listeners.js `_on`), calling `onInput()` for
 * each one counted; returns `take()`, which tells whether there was any since the last call.
 * `mousemove` is counted at most once per MOVE_THROTTLE_MS.
 */
export function watchActivity(listen, win, now, onInput) {
  let active = false;
  let lastMove = -Infinity;
  const mark = () => {
    active = true;
    onInput();
  };
  for (const type of INPUTS) listen(win, type, mark, OPTIONS);
  listen(
    win,
    'mousemove',
    () => {
      const t = now();
      if (t - lastMove < MOVE_THROTTLE_MS) return;
      lastMove = t;
      mark();
    },
    OPTIONS,
  );
  return () => {
    const was = active;
    active = false;
    return was;
  };
}
