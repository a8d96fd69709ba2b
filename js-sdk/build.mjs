// Bundles js-sdk/src into one minified strict-mode IIFE and prints its raw and gzip size.
// esbuild bundles and minifies; terser then squeezes out a few hundred more bytes.
// Also writes the language packs (src/packs.js) as static/lang/{lang}.json, checked against
// the English texts, which alone are built in.
import { build } from 'esbuild';
import { minify } from 'terser';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { EN, LANGUAGES } from './src/texts.js';
import { PACKS } from './src/packs.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outfile = join(root, 'backend/seatguard/static/seatguard.js');
const langDir = join(root, 'backend/seatguard/static/lang');
const deviceFile = join(root, 'backend/seatguard/static/device.js');
// Size budget (gzip): the SDK is at most 7,450 bytes, every feature included; the bench's
// goal is the same number (SDK_GZIP_GOAL in backend/seatguard/bench/report.py, kept equal by
// tests/unit/test_sdk.py). It holds the English overlay texts only: French, Spanish and German
// (about 1 KB gzipped together) are the language packs written below, of which a page
// fetches at most the one it needs. It was 6,000 until the overlay's actions (the site's
// links, sign out, sign in again, the action event), its redraw, the opaque backdrop, the
// integrator's console warnings and the endpoint forms took some 920 bytes, and where the
// seat is held, the take-over cooldown, "Reconnecting…" and the idle countdown some 560
// more (issue 14; docs/performance.md).
const GZIP_BUDGET = 7450;
// The device module (src/device.js: the fingerprint, the device key and its proof) is built
// on its own as an ES module that the SDK imports while its socket opens, within this budget.
const DEVICE_GZIP_BUDGET = 1500;

// Every pack has exactly the English keys, and texts.js knows every pack.
const fail = (message) => {
  console.error(message);
  process.exit(1);
};
if (Object.keys(PACKS).join() !== LANGUAGES.join()) fail(`texts.js LANGUAGES (${LANGUAGES}) differ from packs.js`);
for (const [lang, pack] of Object.entries(PACKS)) {
  const keys = Object.keys(pack);
  if (keys.join() !== Object.keys(EN).join()) fail(`packs.js ${lang}: keys differ from EN in texts.js`);
  if (!keys.every((key) => typeof pack[key] === 'string' && pack[key])) fail(`packs.js ${lang}: empty text`);
}

// One entry point bundled and minified as `format` (iife or esm).
const bundled = (entry, format) =>
  build({
    entryPoints: [join(root, 'js-sdk/src', entry)],
    bundle: true,
    write: false,
    minify: true,
    format,
    target: ['es2020'],
    charset: 'utf8',
    legalComments: 'none',
    // Private members (leading underscore) are renamed; nothing outside the bundle reads them.
    mangleProps: /^_/,
    logLevel: 'warning',
  });
const bundle = await bundled('index.js', 'iife');
// unsafe_arrows and unsafe_methods hold because no function of the SDK is called with `new`
// or reads `this`; pure_getters because no getter it reads has a side effect. Terser runs
// again on its own output while that shrinks: a second run turns some of the methods the
// first one left (`m(){return x}`) into arrows (`m:()=>x`).
const TERSER = {
  ecma: 2020,
  compress: { passes: 5, unsafe_arrows: true, unsafe_methods: true, pure_getters: true },
  mangle: true,
};
async function squeeze(text, module = false) {
  let minified = (await minify(text, { ...TERSER, module })).code;
  for (;;) {
    const again = (await minify(minified, { ...TERSER, module })).code;
    if (again.length >= minified.length) return minified;
    minified = again;
  }
}
const minified = await squeeze(bundle.outputFiles[0].text);

mkdirSync(dirname(outfile), { recursive: true });
const code = Buffer.from('"use strict";\n' + minified + '\n');
writeFileSync(outfile, code);
const gzip = gzipSync(code, { level: 9 }).length;
mkdirSync(langDir, { recursive: true });
for (const [lang, pack] of Object.entries(PACKS)) writeFileSync(join(langDir, lang + '.json'), JSON.stringify(pack) + '\n');
console.log(`${relative(root, outfile)}: ${code.length} bytes, ${gzip} bytes gzipped`);
console.log(`${relative(root, langDir)}: ${LANGUAGES.map((lang) => lang + '.json').join(', ')}`);
if (gzip > GZIP_BUDGET) fail(`seatguard.js is over its ${GZIP_BUDGET}-byte gzip budget`);

const deviceCode = Buffer.from((await squeeze((await bundled('device.js', 'esm')).outputFiles[0].text, true)) + '\n');
writeFileSync(deviceFile, deviceCode);
const deviceGzip = gzipSync(deviceCode, { level: 9 }).length;
console.log(`${relative(root, deviceFile)}: ${deviceCode.length} bytes, ${deviceGzip} bytes gzipped`);
if (deviceGzip > DEVICE_GZIP_BUDGET) fail(`device.js is over its ${DEVICE_GZIP_BUDGET}-byte gzip budget`);

// The interactive API docs (`/api/docs`): Swagger UI's bundle and stylesheet, from the
// `swagger-ui-dist` package, served by the server itself (no third-party script at runtime).
const apiDocsDir = join(root, 'backend/seatguard/static/apidocs');
const swaggerDir = join(root, 'node_modules/swagger-ui-dist');
mkdirSync(apiDocsDir, { recursive: true });
for (const file of ['swagger-ui-bundle.js', 'swagger-ui.css']) copyFileSync(join(swaggerDir, file), join(apiDocsDir, file));
console.log(`${relative(root, apiDocsDir)}: swagger-ui-bundle.js, swagger-ui.css (swagger-ui-dist)`);
