// Check a Seatguard seat token in Node, offline, with the `jose` library.
//
//   import { seatVerifier } from './verify.js';
//   const verifySeat = seatVerifier({
//     jwksUrl: 'https://seats.example.com/.well-known/jwks.json',
//     issuer: 'https://seats.example.com', // the server's public_url
//     audience: 'pk_...',                  // the site key
//   });
//   const seat = await verifySeat(request.headers['seatguard-seat']); // throws if refused
//
// `jose` caches the key set and fetches it again for an unknown `kid`, at most every 30 s.
// The checks are those of seatguard.verify in Python: ES256 only, `typ` seat+jwt, `iss`,
// `aud`, `exp`/`iat`/`nbf` with a few seconds of leeway, a lifetime of at most 15 minutes,
// and the claims a seat token always has.
import { createRemoteJWKSet, jwtVerify } from 'jose';

const MAX_TTL = 900; // seconds: the longest a seat token lives
const REQUIRED = ['iss', 'aud', 'sub', 'sid', 'did', 'iat', 'exp', 'jti'];

export function seatVerifier({ jwksUrl, issuer, audience, leeway = 5, keys }) {
  const keySet = keys ?? createRemoteJWKSet(new URL(jwksUrl), { cooldownDuration: 30_000 });
  return async function verifySeat(token) {
    if (typeof token !== 'string' || token === '') throw new Error('no seat token');
    const { payload } = await jwtVerify(token, keySet, {
      algorithms: ['ES256'],
      typ: 'seat+jwt',
      issuer,
      audience,
      clockTolerance: leeway,
      maxTokenAge: MAX_TTL + leeway,
      requiredClaims: REQUIRED,
    });
    if (payload.exp - payload.iat > MAX_TTL) throw new Error('seat token lives too long');
    for (const name of ['sub', 'sid', 'did', 'jti']) {
      if (typeof payload[name] !== 'string') throw new Error(`seat token claim ${name} is not a string`);
    }
    return payload; // sub: user, sid: browser session, did: device, org and role if any
  };
}
