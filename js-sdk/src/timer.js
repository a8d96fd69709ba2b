// A tiny one-shot timer over injected setTimeout/clearTimeout, so tests can drive time.

// The browser's clock and timers, wrapped so they can be called as methods of any object.
export const realTimers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id),
};

export class Timer {
  constructor(timers) {
    this._timers = timers;
    this._id = null;
  }

  // Runs `fn` once after `ms`, cancelling any run still pending.
  start(ms, fn) {
    this.stop();
    this._id = this._timers.setTimeout(() => {
      this._id = null;
      fn();
    }, ms);
  }

  // Cancels the pending run, if any.
  stop() {
    if (this._id !== null) this._timers.clearTimeout(this._id);
    this._id = null;
  }
}
