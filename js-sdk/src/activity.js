// User activity in this tab between two heartbeats: any input counts, mouse moves throttled.

const INPUTS = ['pointerdown', 'keydown', 'wheel', 'scroll', 'touchstart'];
const OPTIONS = { capture: true, passive: true };

/**
 * Listens for user input on `win`, calling `onInput()` for each one counted; `take()` tells
 * whether there was any since the last call. `mousemove` is counted at most once per
 * `throttle` ms.
 */
export function watchActivity(win, now, onInput, throttle = 1000) {
  let active = false;
  let lastMove = -Infinity;
  const mark = () => {
    active = true;
    onInput();
  };
  const move = () => {
    const t = now();
    if (t - lastMove < throttle) return;
    lastMove = t;
    mark();
  };
  for (const type of INPUTS) win.addEventListener(type, mark, OPTIONS);
  win.addEventListener('mousemove', move, OPTIONS);
  return {
    take() {
      const was = active;
      active = false;
      return was;
    },
    stop() {
      for (const type of INPUTS) win.removeEventListener(type, mark, OPTIONS);
      win.removeEventListener('mousemove', move, OPTIONS);
    },
  };
}
