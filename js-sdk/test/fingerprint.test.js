import test from 'node:test';
import assert from 'node:assert/strict';
import { fingerprint, fnv1a, traits } from '../src/fingerprint.js';

// A window of one machine as a given browser sees it.
const machine = (overrides = {}) => ({
  screen: { width: 1920, height: 1080, colorDepth: 24 },
  devicePixelRatio: 1,
  navigator: {
    hardwareConcurrency: 8,
    maxTouchPoints: 0,
    platform: 'Win32',
    userAgent: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36',
    vendor: 'Google Inc.',
    deviceMemory: 8,
    languages: ['en-US'],
    ...overrides.navigator,
  },
  ...overrides.window,
});

test('the fingerprint is stable and well formed', () => {
  const fp = fingerprint(machine());
  assert.equal(fingerprint(machine()), fp);
  assert.match(fp, /^[A-Za-z0-9_-]{4,64}$/);
});

test('another browser brand on the same machine gives the same fingerprint', () => {
  const firefox = machine({
    navigator: {
      userAgent: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0',
      vendor: '',
      deviceMemory: undefined,
      languages: ['fr-FR', 'en'],
    },
  });
  assert.equal(fingerprint(firefox), fingerprint(machine()));
});

test('a rotated screen is the same device', () => {
  const rotated = machine({ window: { screen: { width: 1080, height: 1920, colorDepth: 24 } } });
  assert.equal(fingerprint(rotated), fingerprint(machine()));
});

test('another machine gives another fingerprint', () => {
  const others = [
    machine({ window: { screen: { width: 2560, height: 1440, colorDepth: 24 } } }),
    machine({ window: { devicePixelRatio: 2 } }),
    machine({ navigator: { hardwareConcurrency: 4 } }),
    machine({ navigator: { maxTouchPoints: 5 } }),
    machine({ navigator: { platform: 'MacIntel' } }),
  ];
  const values = new Set([fingerprint(machine()), ...others.map(fingerprint)]);
  assert.equal(values.size, others.length + 1);
});

test('the time zone is one of the traits', () => {
  const zone = new Intl.DateTimeFormat().resolvedOptions().timeZone;
  assert.ok(traits(machine()).includes(zone));
  const elsewhere = machine({ window: { Intl: { DateTimeFormat: class { resolvedOptions() { return { timeZone: 'Pacific/Chatham' }; } } } } });
  assert.notEqual(fingerprint(elsewhere), fingerprint(machine()));
});

test('a window with missing traits still yields a valid fingerprint', () => {
  assert.match(fingerprint({}), /^[A-Za-z0-9_-]{4,64}$/);
});

test('fnv1a matches the reference 32-bit values', () => {
  assert.equal(fnv1a(''), (0x811c9dc5).toString(36));
  assert.equal(fnv1a('a'), (0xe40c292c).toString(36));
  assert.equal(fnv1a('foobar'), (0xbf9cf968).toString(36));
});
