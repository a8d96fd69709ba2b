// Frames of protocol v1 (docs/protocol.md): JSON text, one object per frame, typed by `t`.
import { PROTOCOL_VERSION } from './constants.js';

// Serialises one frame to the JSON text that goes on the wire.
export const encode = (frame) => JSON.stringify(frame);

// Parses one incoming frame; returns null for anything that is not a typed JSON object.
export function decode(data) {
  try {
    const frame = JSON.parse(data);
    return frame && typeof frame.t === 'string' ? frame : null;
  } catch {
    return null;
  }
}

// The first frame of a tab, from `fields` (anything else in it is left out): site, session,
// tab and device, then the optional fields that were given. `user` may be left out when a
// signed identity `token` names the user; `key` and `proof` are the device key's (device.js).
export function hello(fields) {
  const frame = { t: 'hello', v: PROTOCOL_VERSION };
  for (const key of ['site', 'session', 'tab', 'device', 'user', 'token', 'org', 'role', 'fp', 'mode', 'limit', 'policy', 'touch', 'key', 'proof']) {
    if (fields[key] != null && fields[key] !== '') frame[key] = fields[key];
  }
  return frame;
}

// A heartbeat with its ref and whether the user touched this tab since the last one.
export const heartbeat = (ref, active) => ({ t: 'hb', ref, active: !!active });

// The tab is going away; `next` is close, reload or navigate.
export const bye = (next) => ({ t: 'bye', next });

// The user signed out on this browser.
export const logout = () => ({ t: 'logout' });

// A blocked browser asks for a seat ("use here", "continue here").
export const takeover = () => ({ t: 'takeover' });
