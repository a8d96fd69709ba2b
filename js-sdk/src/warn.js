// Console warnings for the site's developers: what is misconfigured and what to do about it.

// The warnings given so far on this page: each is given once.
const given = new Set();

/** Warns with `text` in the console, once per page, unless the site set `quiet`. */
export function warn(options, text) {
  if (options.quiet || given.has(text)) return;
  given.add(text);
  console.warn('Seatguard: ' + text);
}
