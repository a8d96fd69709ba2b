// Event listeners added in one place and removed all at once (destroy, a final end).

/** `_on(target, type, fn, options)` adds a listener; `_off()` removes every one added so far. */
export function listeners() {
  const offs = [];
  return {
    _on(target, type, fn, options) {
      target.addEventListener(type, fn, options);
      offs.push(() => target.removeEventListener(type, fn, options));
    },
    _off: () => offs.splice(0).forEach((off) => off()),
  };
}
