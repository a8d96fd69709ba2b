import test from 'node:test';
import assert from 'node:assert/strict';
import { delay, BASE_MS, CAP_MS, LATER_MS } from '../src/backoff.js';
import { retryDelay, retryable } from '../src/connection.js';

test('full jitter: the delay is uniform in [0, min(cap, base * 2^attempt))', () => {
  assert.equal(delay(0, () => 0), 0);
  assert.equal(delay(0, () => 0.999999), BASE_MS - 1);
  assert.equal(delay(0, () => 0.5), BASE_MS / 2);
  assert.equal(delay(3, () => 0.5), (BASE_MS * 8) / 2);
  // The window stops growing at the cap.
  assert.equal(delay(30, () => 0.999999), CAP_MS - 1);
  assert.equal(delay(1000, () => 0.5), CAP_MS / 2);
});

test('jitter: different random draws give different delays within the bounds', () => {
  let seed = 0;
  const random = () => (seed = (seed * 9301 + 49297) % 233280) / 233280;
  const draws = Array.from({ length: 200 }, () => delay(4, random));
  assert.ok(draws.every((ms) => ms >= 0 && ms < BASE_MS * 16));
  assert.ok(new Set(draws).size > 100, 'delays are spread, not equal');
});

test('a floor shifts the whole window up', () => {
  assert.equal(delay(0, () => 0, BASE_MS, 5000), 5000);
  assert.equal(delay(0, () => 0.999999, 5000, 5000), 9999);
  // A smaller cap stops the window sooner.
  assert.equal(delay(10, () => 0.5, BASE_MS, 0, 2000), 1000);
});

test('after 1012/1013 the delay is never under the later floor', () => {
  for (const code of [1012, 1013]) {
    for (const attempt of [0, 1, 5, 50]) {
      for (const r of [0, 0.3, 0.999999]) {
        const ms = retryDelay(code, attempt, () => r);
        assert.ok(ms >= LATER_MS, `${code} attempt ${attempt}: ${ms}`);
        assert.ok(ms < LATER_MS + CAP_MS);
      }
    }
  }
  // Other retryable codes start small.
  assert.ok(retryDelay(1006, 0, () => 0.999999) < BASE_MS);
});

test('retryable codes: RETRY and 1006 only', () => {
  for (const code of [1001, 1006, 1011, 1012, 1013, 4008]) assert.ok(retryable(code), code);
  for (const code of [1000, 1003, 1009, 4000, 4001, 4002, 4003, 4004, 4009, 4010, 4999]) assert.ok(!retryable(code), code);
});
