// Reconnect delays: full-jitter exponential backoff, a pure function of the attempt number.
// See https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/

export const BASE_MS = 500;
export const CAP_MS = 15000;
// Floor (and base) after 1012/1013: the server asked us to come back later.
export const LATER_MS = 5000;

/**
 * Milliseconds to wait before reconnect attempt `attempt` (0 for the first retry), drawn with
 * `random`: uniform in [floor, floor + min(cap, base * 2^attempt)).
 */
export const delay = (attempt, random = Math.random, base = BASE_MS, floor = 0, cap = CAP_MS) =>
  floor + Math.floor(random() * Math.min(cap, base * 2 ** Math.max(0, attempt)));
