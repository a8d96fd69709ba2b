// One table of close and reason codes, mirrored in backend/seatguard/protocol.py
// (tests/unit/test_protocol.py keeps the two equal).
export const PROTOCOL_VERSION = 1;

export const CLOSE = {
  normal: 1000,
  going_away: 1001,
  protocol_error: 1002,
  unsupported_data: 1003,
  invalid_data: 1007,
  too_big: 1009,
  internal_error: 1011,
  service_restart: 1012,
  try_again_later: 1013,
  bad_message: 4000,
  protocol_order: 4001,
  unsupported_version: 4002,
  unknown_site: 4003,
  origin_not_allowed: 4004,
  heartbeat_timeout: 4008,
  logged_out: 4009,
  revoked: 4010,
  expired: 4011,
  identity_required: 4012,
  identity_invalid: 4013,
  device_proof_invalid: 4014,
  suspended: 4015,
};

// Single codes on their own, so the bundle needs no copy of the whole table.
export const LOGGED_OUT = 4009;
export const REVOKED = 4010;
export const EXPIRED = 4011;
export const SUSPENDED = 4015;

// Close codes after which the SDK reconnects (with backoff).
export const RETRY = [1001, 1006, 1011, 1012, 1013, 4008];
// Of those, the ones that ask to come back later (longer backoff floor).
export const RETRY_LATER = [1012, 1013];

export const BLOCK_REASONS = ['limit', 'evicted', 'challenge', 'taken_over', 'policy', 'verify'];

// SDK release, exposed as Seatguard.version.
export const SDK_VERSION = '1.0.0';

// Client states; every client is in exactly one of them.
export const STATE = {
  connecting: 'connecting',
  admitted: 'admitted',
  blocked: 'blocked',
  reconnecting: 'reconnecting',
  ended: 'ended',
  revoked: 'revoked',
  expired: 'expired',
  suspended: 'suspended',
  error: 'error',
  destroyed: 'destroyed',
};

// States in which the client is still talking to the server (or trying to).
export const LIVE_STATES = ['connecting', 'admitted', 'blocked', 'reconnecting'];
