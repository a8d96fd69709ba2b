// A tiny one-shot timer over injected setTimeout/clearTimeout, so tests can drive time.

// The browser's clock and timers, wrapped so they can be called as methods of any object
// (Date.now needs no `this`).
export const realTimers = {
  now: Date.now,
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id),
};

/**
 * `_start(ms, fn)` runs `fn` once after `ms`, cancelling any run still pending; `_stop()`
 * cancels it. Only the id of a pending run is ever cleared (clearing null is a no-op).
 */
export function timer(timers) {
  let id = null;
  const stop = () => {
    timers.clearTimeout(id);
    id = null;
  };
  return {
    _start(ms, fn) {
      stop();
      id = timers.setTimeout(() => {
        id = null;
        fn();
      }, ms);
    },
    _stop: stop,
  };
}
