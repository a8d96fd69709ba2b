// The Node example verifies tokens the Python server code signs, against its JWKS served
// over HTTP. Python: SEATGUARD_PYTHON, else the repository's .venv (as `make test` sets up).
import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { seatVerifier } from './verify.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const PYTHON = process.env.SEATGUARD_PYTHON ?? `${ROOT}.venv/bin/python`;
const ISSUE = `
import json, time, jwt
from seatguard.seat import SeatKeyRing, SeatKeySet, SeatTokens
from seatguard.seat.keyset import new_key
key = new_key(time.time())
tokens = SeatTokens(SeatKeyRing(SeatKeySet((key,))), "https://seats.example")
seat = dict(user="alice", session="s1", device="d1")
token = tokens.issue(site="pk_site", org="acme", **seat).token
claims = jwt.decode(token, options={"verify_signature": False})
print(json.dumps({
    "jwks": tokens.jwks(),
    "token": token,
    "other_site": tokens.issue(site="pk_other", **seat).token,
    "plain_jwt": jwt.encode(claims, key.private_key, "ES256", headers={"kid": key.kid}),
}))
`;

const made = JSON.parse(execFileSync(PYTHON, ['-c', ISSUE], { cwd: ROOT, encoding: 'utf8' }));

async function serving(body, run) {
  let fetches = 0;
  const server = createServer((request, response) => {
    fetches += 1;
    response.writeHead(200, { 'content-type': 'application/jwk-set+json' });
    response.end(JSON.stringify(body));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const url = `http://127.0.0.1:${server.address().port}/.well-known/jwks.json`;
    return await run(url, () => fetches);
  } finally {
    server.close();
  }
}

test('a token from the Python server verifies against its JWKS', async () => {
  await serving(made.jwks, async (jwksUrl, fetches) => {
    const verify = seatVerifier({ jwksUrl, issuer: 'https://seats.example', audience: 'pk_site' });
    const seat = await verify(made.token);
    assert.deepEqual([seat.sub, seat.sid, seat.did, seat.org], ['alice', 's1', 'd1', 'acme']);
    await verify(made.token);
    assert.equal(fetches(), 1);
  });
});

test('another site, another issuer, a tampered token, a plain JWT or alg none is refused', async () => {
  await serving(made.jwks, async (jwksUrl) => {
    const verify = seatVerifier({ jwksUrl, issuer: 'https://seats.example', audience: 'pk_site' });
    await assert.rejects(verify(made.other_site), /aud/);
    const elsewhere = seatVerifier({ jwksUrl, issuer: 'https://evil.example', audience: 'pk_site' });
    await assert.rejects(elsewhere(made.token), /iss/);
    const [head, body, signature] = made.token.split('.');
    const claims = JSON.parse(Buffer.from(body, 'base64url'));
    const tampered = Buffer.from(JSON.stringify({ ...claims, sub: 'mallory' })).toString('base64url');
    await assert.rejects(verify(`${head}.${tampered}.${signature}`), /signature/);
    await assert.rejects(verify(made.plain_jwt), /"typ"/); // well signed, but typ JWT
    const header = JSON.parse(Buffer.from(head, 'base64url'));
    const none = Buffer.from(JSON.stringify({ ...header, alg: 'none' })).toString('base64url');
    await assert.rejects(verify(`${none}.${body}.`));
    await assert.rejects(verify(''), /no seat token/);
  });
});
