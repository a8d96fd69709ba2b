// Overlay texts in en, fr, es, de. Placeholders: {n} is the seat limit, {unit} what holds a
// seat (browser(s) or device(s), by {n}) and {one} its singular (browser or device).

/**
 * English, which also names the keys. Block texts by reason: limit uses blockTitle and
 * blockText, evicted evictedTitle/evictedText, taken_over takenOverTitle/takenOverText,
 * challenge blockTitle and challengeText. useHere labels the take-over button, continueHere
 * for challenge. Expiry: idleText or absoluteText by reason, else expiredText (always under
 * expiredTitle).
 */
const EN = {
  blockTitle: 'This account is in use elsewhere',
  blockText: 'Your plan allows {n} {unit} at once. This page will continue when a seat frees up.',
  evictedTitle: 'This account was opened on another {one}',
  evictedText: 'Your plan allows {n} {unit} at once. Use it here again, or wait until a seat frees up.',
  takenOverTitle: 'This account is now in use on another {one}',
  takenOverText: 'Use it here again, or wait until a seat frees up.',
  challengeText: 'Continue here to use it on this {one}; the other {one} will be paused.',
  useHere: 'Use here',
  continueHere: 'Continue here',
  browser: 'browser',
  browsers: 'browsers',
  device: 'device',
  devices: 'devices',
  endedTitle: 'Signed out',
  endedText: 'You have been signed out on this browser.',
  revokedTitle: 'You have been signed out',
  revokedText: 'The site signed this browser out. Sign in again to continue.',
  expiredTitle: 'Session expired',
  expiredText: 'Your session has expired. Sign in again to continue.',
  idleText: 'Your session ended after a period of inactivity.',
  absoluteText: 'Your session reached its maximum length. Sign in again to continue.',
};

// The other languages as lists in the order of EN's keys, so the keys are written once: the
// SDK must stay small. Texts of one language share phrases on purpose (gzip finds them).
const OTHERS = {
  fr: [
    'Ce compte est utilisé ailleurs',
    'Votre abonnement permet {n} {unit} à la fois. Cette page reprendra dès qu’une place se libère.',
    'Ce compte a été ouvert sur un autre {one}',
    'Votre abonnement permet {n} {unit} à la fois. Reprenez-le ici, ou attendez qu’une place se libère.',
    'Ce compte est maintenant utilisé sur un autre {one}',
    'Reprenez-le ici, ou attendez qu’une place se libère.',
    'Continuer ici mettra l’autre {one} en pause.',
    'Utiliser ici',
    'Continuer ici',
    'navigateur',
    'navigateurs',
    'appareil',
    'appareils',
    'Déconnecté',
    'Vous avez été déconnecté sur ce navigateur.',
    'Vous avez été déconnecté',
    'Le site a déconnecté ce navigateur. Reconnectez-vous pour continuer.',
    'Session expirée',
    'Votre session a expiré. Reconnectez-vous pour continuer.',
    'Votre session a expiré après une période d’inactivité.',
    'Votre session a atteint sa durée maximale. Reconnectez-vous pour continuer.',
  ],
  es: [
    'Esta cuenta se está usando en otro lugar',
    'Tu plan permite {n} {unit} a la vez. Esta página continuará cuando quede una plaza libre.',
    'Esta cuenta se abrió en otro {one}',
    'Tu plan permite {n} {unit} a la vez. Úsala aquí o espera a que quede una plaza libre.',
    'Esta cuenta se está usando ahora en otro {one}',
    'Úsala aquí o espera a que quede una plaza libre.',
    'Continuar aquí pausará el otro {one}.',
    'Usar aquí',
    'Continuar aquí',
    'navegador',
    'navegadores',
    'dispositivo',
    'dispositivos',
    'Sesión cerrada',
    'Se ha cerrado tu sesión en este navegador.',
    'Se ha cerrado tu sesión',
    'El sitio ha cerrado la sesión en este navegador. Inicia sesión de nuevo para continuar.',
    'Sesión caducada',
    'Tu sesión ha caducado. Inicia sesión de nuevo para continuar.',
    'Tu sesión ha caducado por inactividad.',
    'Tu sesión ha alcanzado su duración máxima. Inicia sesión de nuevo para continuar.',
  ],
  de: [
    'Dieses Konto wird gerade anderswo genutzt',
    'Ihr Tarif erlaubt {n} {unit} gleichzeitig. Diese Seite geht weiter, sobald ein Platz frei wird.',
    'Dieses Konto wurde auf einem anderen {one} geöffnet',
    'Ihr Tarif erlaubt {n} {unit} gleichzeitig. Nutzen Sie es hier oder warten Sie, bis ein Platz frei wird.',
    'Dieses Konto wird jetzt auf einem anderen {one} genutzt',
    'Nutzen Sie es hier oder warten Sie, bis ein Platz frei wird.',
    'Hier fortfahren pausiert es auf dem anderen {one}.',
    'Hier nutzen',
    'Hier fortfahren',
    'Browser',
    'Browser',
    'Gerät',
    'Geräte',
    'Abgemeldet',
    'Sie wurden in diesem Browser abgemeldet.',
    'Sie wurden abgemeldet',
    'Die Website hat diesen Browser abgemeldet. Melden Sie sich erneut an, um fortzufahren.',
    'Sitzung abgelaufen',
    'Ihre Sitzung ist abgelaufen. Melden Sie sich erneut an, um fortzufahren.',
    'Ihre Sitzung ist wegen Inaktivität abgelaufen.',
    'Ihre Sitzung hat ihre Höchstdauer erreicht. Melden Sie sich erneut an, um fortzufahren.',
  ],
};

/** The texts per language: `TEXTS.fr.blockTitle`. */
export const TEXTS = { en: EN };
const KEYS = Object.keys(EN);
for (const lang in OTHERS) TEXTS[lang] = Object.fromEntries(KEYS.map((key, i) => [key, OTHERS[lang][i]]));

// The first supported language among `lang` and the browser's languages, else English.
export function pickLanguage(lang, languages) {
  for (const tag of [lang, ...(languages || [])]) {
    const base = String(tag || '').slice(0, 2).toLowerCase();
    if (TEXTS[base]) return base;
  }
  return 'en';
}

// The texts for a language, with the site's per-key overrides on top.
export const textsFor = (lang, languages, overrides) =>
  Object.assign({}, TEXTS.en, TEXTS[pickLanguage(lang, languages)], overrides);

// Fills {name} placeholders from `values`, leaving unknown ones as they are.
export const format = (text, values) =>
  String(text).replace(/\{(\w+)\}/g, (whole, key) => (key in values ? values[key] : whole));
