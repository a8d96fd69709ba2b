import test from 'node:test';
import assert from 'node:assert/strict';
import { defaultEndpoint, fromScript, resolve, socketUrl } from '../src/config.js';

// A script element with attributes.
const script = (attributes) => ({ ...attributes, getAttribute: (name) => (name in attributes ? attributes[name] : null) });
const page = { origin: 'https://shop.test', href: 'https://shop.test/watch' };

test('data-* attributes become options', () => {
  const tag = script({ 'data-site': 'pk_1', 'data-user': 'alice', 'data-mode': 'device-limit', 'data-limit': '2', 'data-policy': 'evict-oldest', 'data-lang': 'de', 'data-overlay': 'false' });
  assert.deepEqual(fromScript(tag), { site: 'pk_1', userId: 'alice', mode: 'device-limit', limit: '2', policy: 'evict-oldest', lang: 'de', overlay: false });
  assert.deepEqual(fromScript(null), {});
  assert.deepEqual(fromScript(script({ 'data-site': '' })), {});
});

test('the endpoint is derived from the script URL: http -> ws, https -> wss, path /ws/v1', () => {
  assert.equal(defaultEndpoint('https://sg.example.com/sdk/v1/seatguard.js', page), 'wss://sg.example.com/ws/v1');
  assert.equal(defaultEndpoint('http://127.0.0.1:8000/sdk/v1/seatguard.js', page), 'ws://127.0.0.1:8000/ws/v1');
  assert.equal(defaultEndpoint('/sdk/v1/seatguard.js', page), 'wss://shop.test/ws/v1');
  // No script URL (inline or unknown): the page's origin.
  assert.equal(defaultEndpoint(undefined, page), 'wss://shop.test/ws/v1');
  assert.equal(defaultEndpoint('', { origin: 'http://localhost:3000', href: 'http://localhost:3000/' }), 'ws://localhost:3000/ws/v1');
});

test('load() options win over data-* attributes; limit becomes a number', () => {
  const tag = script({ src: 'https://sg.example.com/sdk/v1/seatguard.js', 'data-mode': 'device-limit', 'data-limit': '3' });
  const options = resolve('pk_1', { userId: 42, limit: '2', mode: undefined }, tag, page);
  assert.equal(options.site, 'pk_1');
  assert.equal(options.userId, '42');
  assert.equal(options.mode, 'device-limit');
  assert.equal(options.limit, 2);
  assert.equal(options.endpoint, 'wss://sg.example.com/ws/v1');
});

test('an explicit endpoint is used, http(s) turned into ws(s)', () => {
  assert.equal(resolve('pk', { userId: 'u', endpoint: 'https://x.test/ws/v1' }, null, page).endpoint, 'wss://x.test/ws/v1');
  assert.equal(resolve('pk', { userId: 'u', endpoint: 'ws://x.test/ws/v1' }, null, page).endpoint, 'ws://x.test/ws/v1');
});

test('endpoint forms: an http(s) or ws(s) origin gets /ws/v1, a path is kept, a fragment dropped', () => {
  const forms = {
    'http://localhost:8123': 'ws://localhost:8123/ws/v1',
    'http://localhost:8123/': 'ws://localhost:8123/ws/v1',
    'https://sg.example.com': 'wss://sg.example.com/ws/v1',
    'HTTPS://SG.example.com:443': 'wss://sg.example.com/ws/v1',
    'ws://10.0.0.2:9000': 'ws://10.0.0.2:9000/ws/v1',
    'wss://sg.example.com': 'wss://sg.example.com/ws/v1',
    'wss://sg.example.com/ws/v1': 'wss://sg.example.com/ws/v1',
    'wss://edge.example.com/seatguard/ws/v1?x=1': 'wss://edge.example.com/seatguard/ws/v1?x=1',
    'https://edge.example.com/seatguard/ws/v1#top': 'wss://edge.example.com/seatguard/ws/v1',
  };
  for (const [given, want] of Object.entries(forms)) {
    assert.equal(socketUrl(given), want, given);
    assert.equal(resolve('pk', { userId: 'u', endpoint: given }, null, page).endpoint, want, given);
  }
});

test('hostile endpoints: no scheme, another scheme or no URL at all is undefined, with one warning each', (t) => {
  const seen = [];
  t.mock.method(console, 'warn', (text) => seen.push(text));
  const bad = ['localhost:8000', 'sg.example.com', '/ws/v1', 'ftp://sg.test', 'javascript:alert(1)', 'file:///etc/passwd', 'wss://', 'http://[::1', ' '];
  for (const endpoint of bad) {
    assert.equal(socketUrl(endpoint), undefined, endpoint);
    assert.equal(resolve('pk', { userId: 'u', endpoint }, null, page).endpoint, undefined, endpoint);
  }
  assert.equal(seen.length, bad.length);
  assert.ok(seen.every((text) => text.startsWith('Seatguard: endpoint ') && text.endsWith(' is not an http(s) or ws(s) URL: no connection')));
  // The same cause again is not warned twice; `quiet` says nothing.
  resolve('pk', { userId: 'u', endpoint: 'localhost:8000' }, null, page);
  resolve('pk', { userId: 'u', endpoint: 'gopher://x', quiet: true }, null, page);
  assert.equal(seen.length, bad.length);
});

test('link options: http(s) URLs, relative ones against the page; others left out', (t) => {
  t.mock.method(console, 'warn', () => {});
  const options = resolve('pk', { userId: 'u', upgradeUrl: '/plans?from=seatguard', helpUrl: 'http://help.test/a', signInUrl: 'vbscript:x', signOutUrl: '//shop.test/out' }, null, page);
  assert.equal(options.upgradeUrl, 'https://shop.test/plans?from=seatguard');
  assert.equal(options.helpUrl, 'http://help.test/a');
  assert.equal(options.signInUrl, undefined);
  assert.equal(options.signOutUrl, 'https://shop.test/out');
});

test('a missing site key, or neither a user id nor a token, is a TypeError', () => {
  assert.throws(() => resolve('', { userId: 'u' }, null, page), TypeError);
  assert.throws(() => resolve('pk', {}, null, page), TypeError);
  assert.throws(() => resolve('pk', undefined, null, page), TypeError);
  assert.throws(() => resolve('pk', { userId: '', token: '' }, null, page), TypeError);
});

test('a token stands in for the user id: string or function, kept as given', () => {
  const token = () => 'jwt';
  assert.equal(resolve('pk', { token }, null, page).token, token);
  const options = resolve('pk', { token: 'jwt', org: 'acme', role: 'staff' }, null, page);
  assert.equal(options.userId, undefined);
  assert.equal(options.token, 'jwt');
  assert.equal(options.org, 'acme');
  assert.equal(resolve('pk', { userId: 7, token: 'jwt' }, null, page).userId, '7');
});
