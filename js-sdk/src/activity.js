// User activity in this tab between two heartbeats: any input counts, mouse moves throttled.

const INPUTS = ['pointerdown', 'keydown', 'wheel', 'scroll', 'touchstart'];
const OPTIONS = { capture: true, passive: true };

/**
 * Listens for user input on `win` with `listen` (listeners.js `_on`), calling `onInput()` for
 * each one counted; returns `take()`, which tells whether there was any since the last call.
 * `mousemove` is counted at most once per `throttle` ms.
 */
export function watchActivity(listen, win, now, onInput, throttle = 1000) {
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
      if (t - lastMove < throttle) return;
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
