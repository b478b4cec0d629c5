// Seeded prompt text shared by the end-to-end tests and bench/compression_gateway: the same seed
// gives the same bytes on every run, so compressed results and cache behaviour are reproducible.
// Token counts are npm tiktoken's (o200k_base unless an encoder is given), over all message text,
// as terse counts a route's budget.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { get_encoding } = require('tiktoken');
export const o200k = get_encoding('o200k_base');  // gpt-4o* models

// mulberry32: a small seeded generator of numbers in [0, 1).
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// The vocabulary of the prose: river towns, trade and weather.
export const kWords = ('the council of the river towns met each spring to set the price of grain and salt ' +
  'while merchants from distant harbors argued about tolls on the old stone bridge that farmers ' +
  'crossed with carts of barley wool and timber after the long winter storms had closed the roads ' +
  'teachers kept careful notes on weather tides and harvests so that children could learn numbers ' +
  'from real accounts of trade between the northern valleys and the southern coast').split(' ');

// Prose of exactly `words` words: sentences of 14 words, an occasional comma.
export function prose(words, seed) {
  const next = rng(seed);
  const out = [];
  for (let i = 0; i < words; i++) {
    let w = kWords[Math.floor(next() * kWords.length)];
    if (out.length === 0 || out.at(-1).endsWith('.')) w = w[0].toUpperCase() + w.slice(1);
    if (i % 14 === 13 || i === words - 1) w += '.';
    else if (next() < 0.06) w += ',';
    out.push(w);
  }
  return out.join(' ');
}

// Prose of about `tokens` o200k tokens (whole sentences of 8 to 19 words, until the count is
// reached), drawn from `vocabulary`.
export function proseOfTokens(tokens, seed, vocabulary = kWords) {
  const next = rng(seed);
  const sentences = [];
  let count = 0;
  while (count < tokens) {
    const words = [];
    const n = 8 + Math.floor(next() * 12);
    for (let i = 0; i < n; i++) words.push(vocabulary[Math.floor(next() * vocabulary.length)]);
    const s = `${words.join(' ')}.`;
    const sentence = s[0].toUpperCase() + s.slice(1);
    sentences.push(sentence);
    count += o200k.encode(` ${sentence}`).length;
  }
  return sentences.join(' ');
}

// Target tokens of every text of `messages` (a string content, or each text part).
export function tokens(messages, enc = o200k) {
  const texts = (c) => (typeof c === 'string' ? [c] : Array.isArray(c) ? c.filter((p) => p.type === 'text').map((p) => p.text) : []);
  return messages.flatMap((m) => texts(m.content)).reduce((n, t) => n + enc.encode(t).length, 0);
}
