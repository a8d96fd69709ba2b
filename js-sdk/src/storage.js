// Guarded Web Storage: private modes and blocked cookies make storage throw, so fall back to memory.

const PROBE = 'seatguard:probe';

/**
 * Wraps the Storage returned by `open()` (which may itself throw) in get/set/del that never
 * throw. Values are mirrored in memory, which answers once the storage has failed.
 */
export function guardStorage(open) {
  const memory = new Map();
  let store = null;
  try {
    store = open();
    store.setItem(PROBE, '1');
    store.removeItem(PROBE);
  } catch {
    store = null;
  }
  // Runs `fn` on the storage; on failure, uses memory from then on.
  const use = (fn) => {
    try {
      return store && fn(store);
    } catch {
      store = null;
    }
  };
  return {
    get(key) {
      const value = use((s) => s.getItem(key));
      return store ? value : (memory.get(key) ?? null);
    },
    set(key, value) {
      memory.set(key, String(value));
      use((s) => s.setItem(key, String(value)));
    },
    del(key) {
      memory.delete(key);
      use((s) => s.removeItem(key));
    },
  };
}
