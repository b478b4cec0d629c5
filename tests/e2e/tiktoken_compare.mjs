// The npm `tiktoken` side of the target-tokenizer comparison. Builds a varied, deterministic corpus
// (prose, code, JSON, numbers, Unicode, emoji, whitespace runs, random bytes, long texts, a sweep
// over every assigned code point) and writes, one JSON object per line, each text with its ids
// under cl100k_base and o200k_base. tests/compressor/target_tokenizer_test.cc runs this and
// requires identical ids from the C++ TargetTokenizer.
//
//   node tests/e2e/tiktoken_compare.mjs --out FILE     write the expectations
//   node tests/e2e/tiktoken_compare.mjs --bench DIR    write DIR/prose.txt and DIR/code.txt (the
//                                                      texts bench/target_tokenizer_bench reads)
//                                                      and print npm tiktoken's speed on them
//
// A line is {"text": "..."} or, for byte strings that are not UTF-8, {"hex": "..."} (the ids are
// then those of the WHATWG-decoded text, U+FFFD for each ill-formed subsequence), plus
// "cl100k_base": [ids] and "o200k_base": [ids].
import { createWriteStream, mkdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { once } from "node:events";

const require = createRequire(import.meta.url);
const { get_encoding } = require("tiktoken");

const kEncodings = ["cl100k_base", "o200k_base"];

// mulberry32: a small seeded generator, so every run writes the same corpus.
function Rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n) => Math.floor(next() * n),
    pick: (xs) => xs[Math.floor(next() * xs.length)],
    chance: (p) => next() < p,
  };
}

const kWords = (
  "the of and to a in that is was he for it with as his on be at by i this had not are but " +
  "from or have an they which one you were her all she there would their we him been has when " +
  "who will more no if out so said what up its about into than them can only other new some " +
  "could time these two may then do first any my now such like our over man me even most made " +
  "after also did many before must through back years where much your way well down should " +
  "because each just those people mr how too little state good very make world still own see " +
  "men work long get here between both life being under never day same another know while last " +
  "might us great old year off come since against go came right used take three compression " +
  "tokenizer gateway latency budget perplexity inference transformer quickly naturally " +
  "unbelievable antidisestablishmentarianism internationalization café naïve résumé coöperate"
).split(" ");
const kNames = ["Alice", "Bob", "McDonald", "O'Brien", "IBM", "NASA", "iPhone", "GPT-4o", "Paris",
  "Tokyo", "São Paulo", "Zürich", "Łódź", "DataFrame", "HTTPServer", "XMLHttpRequest"];
const kContractions = ["don't", "I'm", "you're", "we've", "she'll", "they'd", "it's", "DON'T",
  "I'M", "You'Re", "WE'VE", "Ain't", "y'all", "rock'n'roll", "'twas", "it\u2019s", "John's",
  "JAMES'S", "o'clock", "ſ's", "'ſ", "'S", "'T", "'RE", "'VE", "'M", "'LL", "'D", "'ll'd"];

function Sentence(r) {
  const n = 3 + r.int(18);
  const words = [];
  for (let i = 0; i < n; ++i) {
    const roll = r.next();
    if (roll < 0.08) words.push(r.pick(kNames));
    else if (roll < 0.14) words.push(r.pick(kContractions));
    else if (roll < 0.18) words.push(String(r.int(roll < 0.16 ? 100 : 1000000)));
    else words.push(r.pick(kWords));
    if (r.chance(0.08)) words[words.length - 1] += r.pick([",", ";", ":", " -", " \u2014"]);
  }
  let s = words.join(" ");
  s = s[0].toUpperCase() + s.slice(1);
  if (r.chance(0.1)) s = `"${s}"`;
  if (r.chance(0.05)) s = `(${s})`;
  return s + r.pick([".", ".", ".", "?", "!", "...", "?!"]);
}

function Paragraph(r, sentences) {
  const out = [];
  for (let i = 0; i < sentences; ++i) out.push(Sentence(r));
  return out.join(r.chance(0.9) ? " " : "  ");
}

function Prose(r) {
  const paragraphs = [];
  const n = 1 + r.int(4);
  for (let i = 0; i < n; ++i) paragraphs.push(Paragraph(r, 1 + r.int(6)));
  return paragraphs.join(r.pick(["\n\n", "\n", "\r\n\r\n", "\n\n\n"]));
}

const kIdentifiers = ["x", "i", "count", "total_tokens", "maxValue", "kBufferSize", "self",
  "this", "node", "m_ptr", "__init__", "TargetTokenizer", "absl::StatusOr", "std::vector<int>"];

function CodeSnippet(r) {
  const id = () => r.pick(kIdentifiers);
  const num = () => String(r.chance(0.3) ? (r.next() * 1000).toFixed(3) : r.int(100000));
  const indent = r.pick(["  ", "    ", "\t", "        "]);
  const lines = [];
  const kind = r.int(5);
  const body = 2 + r.int(8);
  if (kind === 0) {
    lines.push(`def ${id()}(${id()}, ${id()}=None):`);
    lines.push(`${indent}"""Returns the ${r.pick(kWords)} of ${r.pick(kWords)}."""`);
    for (let i = 0; i < body; ++i) {
      lines.push(r.pick([
        `${indent}${id()} = ${id()} + ${num()}`,
        `${indent}if ${id()} >= ${num()} and not ${id()}:`,
        `${indent}${indent}return [${num()}, ${num()}, '${r.pick(kWords)}']`,
        `${indent}for ${id()} in range(${num()}):`,
        `${indent}print(f"{${id()}!r}: {${id()}:.2f}")  # ${Sentence(r)}`,
      ]));
    }
  } else if (kind === 1) {
    lines.push(`#include <${r.pick(["vector", "string", "cstdint", "memory"])}>`, "");
    lines.push(`int ${id()}(const ${id()}& ${id()}) {`);
    for (let i = 0; i < body; ++i) {
      lines.push(r.pick([
        `${indent}${id()} += ${num()};  // ${Sentence(r)}`,
        `${indent}if (${id()} != nullptr && ${id()}->size() > ${num()}) return -1;`,
        `${indent}for (size_t i = 0; i < ${num()}; ++i) { ${id()}[i] = i * ${num()}; }`,
        `${indent}std::cout << "${r.pick(kWords)}\\n" << ${id()} << std::endl;`,
        `${indent}auto ${id()} = std::make_unique<${id()}>(${num()}, "${r.pick(kWords)}");`,
      ]));
    }
    lines.push("}");
  } else if (kind === 2) {
    lines.push(`export async function ${id()}(${id()}) {`);
    for (let i = 0; i < body; ++i) {
      lines.push(r.pick([
        `${indent}const ${id()} = await fetch(\`https://api.example.com/v1/${r.pick(kWords)}?id=${num()}\`);`,
        `${indent}${id()}.${id()}?.(${num()}) ?? ${id()};`,
        `${indent}/* ${Sentence(r)} */`,
        `${indent}return ${id()} === ${num()} ? null : { ${r.pick(kWords)}: ${num()} };`,
      ]));
    }
    lines.push("}");
  } else if (kind === 3) {
    lines.push("#!/usr/bin/env bash", "set -euo pipefail");
    for (let i = 0; i < body; ++i) {
      lines.push(r.pick([
        `for f in *.${r.pick(["cc", "h", "json"])}; do echo "$f"; done`,
        `grep -rn '${r.pick(kWords)}' src/ | wc -l > /tmp/out_${num()}.txt`,
        `[ -f "$HOME/.config/${r.pick(kWords)}" ] && export X=${num()}`,
        `cat <<'EOF'\n${Sentence(r)}\nEOF`,
      ]));
    }
  } else {
    lines.push(`fn ${id().replace(/[^a-z_]/gi, "_")}(v: &[u8]) -> Result<Vec<u32>, String> {`);
    for (let i = 0; i < body; ++i) {
      lines.push(r.pick([
        `${indent}let mut acc: u64 = 0x${r.int(1 << 30).toString(16)};`,
        `${indent}match v.get(${num()}) { Some(&b) if b > ${r.int(255)} => {}, _ => return Err("bad".into()) }`,
        `${indent}// ${Sentence(r)}`,
        `${indent}v.iter().map(|&x| x as u32 * ${num()}).collect::<Vec<_>>();`,
      ]));
    }
    lines.push("}");
  }
  return lines.join(r.chance(0.9) ? "\n" : "\r\n") + (r.chance(0.5) ? "\n" : "");
}

function RandomJsonValue(r, depth) {
  const roll = r.next();
  if (depth > 3 || roll < 0.4) {
    return r.pick([
      () => r.int(1000000) - 500000,
      () => r.next() * 1e6,
      () => r.pick(kWords),
      () => Sentence(r),
      () => null,
      () => r.chance(0.5),
      () => "\u00e9\u4e2d\ud83d\ude00" + r.pick(kWords),
    ])();
  }
  if (roll < 0.7) {
    const a = [];
    for (let i = r.int(5); i > 0; --i) a.push(RandomJsonValue(r, depth + 1));
    return a;
  }
  const o = {};
  for (let i = 1 + r.int(5); i > 0; --i) o[r.pick(kIdentifiers) + r.int(10)] = RandomJsonValue(r, depth + 1);
  return o;
}

function NumberText(r) {
  return r.pick([
    () => String(r.int(10 ** (1 + r.int(9)))),
    () => "1".repeat(1 + r.int(30)),
    () => (r.next() * 10 ** r.int(8)).toFixed(r.int(6)),
    () => `${r.int(10000)}-${String(r.int(100)).padStart(2, "0")}-${String(r.int(100)).padStart(2, "0")}`,
    () => `+1 (${r.int(1000)}) ${r.int(1000)}-${r.int(10000)}`,
    () => Array.from({ length: 2 + r.int(20) }, () => r.int(100000)).join(r.pick([",", ", ", " ", "\n"])),
    () => `${r.int(100)}%  ${r.int(10)}.${r.int(10)}e-${r.int(30)} 0x${r.int(1 << 30).toString(16).toUpperCase()}`,
    () => "\u0661\u0662\u0663\u0664 \u0967\u0968\u0969 \uff11\uff12\uff13\uff14 \u2460\u2461 \u00bd\u00be " + r.int(1e6),
  ])();
}

// Code point ranges where scripts, marks, digits and symbols of interest live.
const kUnicodeRanges = [
  [0x20, 0x7e], [0xa0, 0x24f], [0x250, 0x2ff], [0x300, 0x36f], [0x370, 0x3ff], [0x400, 0x4ff],
  [0x530, 0x58f], [0x590, 0x5ff], [0x600, 0x6ff], [0x900, 0x97f], [0x980, 0x9ff], [0xe00, 0xe7f],
  [0x10a0, 0x10ff], [0x1100, 0x11ff], [0x1e00, 0x1eff], [0x2000, 0x206f], [0x20a0, 0x20cf],
  [0x2100, 0x214f], [0x2190, 0x21ff], [0x2200, 0x22ff], [0x2500, 0x257f], [0x3000, 0x303f],
  [0x3040, 0x30ff], [0x4e00, 0x9fff], [0xac00, 0xd7a3], [0xfb00, 0xfb4f], [0xfe00, 0xfe0f],
  [0xff00, 0xffef], [0x1d400, 0x1d7ff], [0x1f300, 0x1f5ff], [0x1f600, 0x1f64f],
  [0x1f900, 0x1f9ff], [0x20000, 0x2a6df], [0xe0000, 0xe007f],
];

function UnicodeText(r) {
  const pieces = [];
  const n = 1 + r.int(40);
  for (let i = 0; i < n; ++i) {
    const roll = r.next();
    if (roll < 0.1) {
      pieces.push(r.pick([" ", "  ", "\n", "\t", "\u3000", "\u00a0"]));
    } else if (roll < 0.2) {
      pieces.push(r.pick(["👨‍👩‍👧‍👦", "🏳️‍🌈", "👍🏽", "🇫🇷🇯🇵", "❤️", "🤖", "©️", "1️⃣", "🧑🏿‍💻"]));
    } else if (roll < 0.3) {
      pieces.push(r.pick(["你好，世界。", "こんにちは、世界！", "안녕하세요 세계", "Привет, мир!",
        "مرحبا بالعالم", "नमस्ते दुनिया", "שלום עולם", "Γειά σου Κόσμε", "สวัสดีชาวโลก",
        "Ǆemal ǅemal ǆemal", "ΣΊΣΥΦΟΣ σίσυφος", "e\u0301te\u0301 cafe\u0301", "ﬁnance ﬂow"]));
    } else {
      const [lo, hi] = r.pick(kUnicodeRanges);
      let cp = lo + r.int(hi - lo + 1);
      if (cp >= 0xd800 && cp <= 0xdfff) cp = 0x41;
      pieces.push(String.fromCodePoint(cp));
    }
  }
  return pieces.join(r.chance(0.3) ? " " : "");
}

// Any scalar value, assigned or not, from every plane.
function AnyCodePoints(r) {
  let s = "";
  for (let i = 1 + r.int(30); i > 0; --i) {
    let cp = r.chance(0.5) ? r.int(0x10000) : r.int(0x110000);
    if (cp >= 0xd800 && cp <= 0xdfff) cp -= 0x800;
    s += String.fromCodePoint(cp);
  }
  return s;
}

const kSpaces = [" ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\n\n", " \n", "\u00a0", "\u3000",
  "\u2028", "\u2029", "\u0085", "\u180e", "\u200b", "\u202f", "\u205f", "\u1680", "\u2003",
  "\u000b", "\u000c", "\u001c", "\ufeff"];

function WhitespaceText(r) {
  let s = "";
  for (let i = 1 + r.int(12); i > 0; --i) {
    for (let k = r.int(4); k >= 0; --k) s += r.pick(kSpaces);
    if (r.chance(0.6)) s += r.pick([r.pick(kWords), r.pick(kNames), String(r.int(1000)), "!", "?!", "//", "{", "é", "中"]);
  }
  return s;
}

function RandomAscii(r) {
  let s = "";
  for (let i = r.int(60); i >= 0; --i) s += String.fromCharCode(r.chance(0.05) ? r.int(32) : 32 + r.int(95));
  return s;
}

function RandomBytes(r) {
  const n = 1 + r.int(40);
  const b = new Uint8Array(n);
  for (let i = 0; i < n; ++i) {
    const roll = r.next();
    // Mostly lead and continuation bytes, so truncated and overlong sequences are common.
    b[i] = roll < 0.3 ? 0x80 + r.int(64) : roll < 0.6 ? 0xc0 + r.int(64) : r.int(256);
  }
  return b;
}

function* FixedCases() {
  yield* ["", "hello world", "Hello World", "hello  world", " hello", "hello ", "\n", " ", "  ",
    "\t\t", "\r\n", "\n\n\n", "a", "ab", "I'm", "don't", "DON'T", "'s", "'S", "ſ", "'ſ", "x'ſ",
    "1", "12", "123", "1234", "12345678901234567890", "3.14159", "1,000,000", "２０２４年",
    "<|endoftext|>", "<|endofprompt|>", "<|fim_prefix|>x<|fim_suffix|>", "😀", "👨‍👩‍👧‍👦",
    "你好世界", "日本語のテキスト", "a\u0085b", "\u0085", " \u180e x", "a\u00a0b",
    "word\u3000word", "x\u2028y", "$$$$$", "....", "!!!???", "\\\\\\", "((()))", "::", "->",
    "https://example.com/a/b?c=d&e=f#g", "user@example.com", "C++", "C#", "x86_64", "e.g.",
    "camelCaseWord", "snake_case_word", "SCREAMING_CASE", "HTTPServerError", "aBcDeF",
    "A".repeat(100), "ab".repeat(300), "\u00e9".repeat(50), "1".repeat(100)];
  for (let n = 1; n <= 40; ++n) yield " ".repeat(n) + "x";
  for (let n = 1; n <= 12; ++n) yield "\n".repeat(n) + "  x";
  yield " ".repeat(1000);
  yield " ".repeat(1000) + "end";
  yield "\n".repeat(500) + "end";
  yield "\t \n".repeat(300) + "end";
}

function* LongCases(r) {
  let s = "";
  while (s.length < 200000) s += Prose(r) + "\n\n";
  yield s;
  s = "";
  while (s.length < 100000) s += CodeSnippet(r) + "\n";
  yield s;
  yield JSON.stringify(Array.from({ length: 400 }, () => RandomJsonValue(r, 0)), null, 2);
  // Single pieces of thousands of bytes: npm tiktoken merges them in quadratic time, so they stay
  // at a size it handles in well under a second.
  yield "a".repeat(6000);
  yield "ab".repeat(3000);
  yield "9".repeat(30000);
  yield " ".repeat(8000);
  yield " ".repeat(7999) + "x";
  yield "-".repeat(6000);
  yield "\u4e2d".repeat(2000);
  yield "😀".repeat(1500);
  const b = Buffer.alloc(8000);
  for (let i = 0; i < b.length; ++i) b[i] = r.int(256);
  yield b.toString("base64");
  s = "";
  while (s.length < 100000) s += UnicodeText(r) + WhitespaceText(r);
  yield s;
}

// Every code point up to just past the assigned planes (and plane 14), 32 to a text, each in
// probes whose ids show how the pattern classes it: "x<c>'s" splits off "'s" as a contraction
// only after a letter, digit or space (and in o200k_base a mark), and " <c>123" regroups the
// digits when <c> is a number. Code points whose class differs between Unicode versions (npm
// tiktoken's regex crate follows Unicode 16) fail here.
function* CodePointSweep() {
  const ranges = [[0, 0xd7ff], [0xe000, 0x33500], [0xe0000, 0xe01ff], [0xf0000, 0xf0100],
    [0x10fff0, 0x10ffff]];
  for (const [lo, hi] of ranges) {
    for (let start = lo; start <= hi; start += 32) {
      let s = "";
      for (let cp = start; cp <= Math.min(hi, start + 31); ++cp) {
        const c = String.fromCodePoint(cp);
        s += `x${c}'s ${c}123\n`;
      }
      yield s;
    }
  }
}

function* Corpus() {
  const r = Rng(20240601);
  for (const t of FixedCases()) yield { text: t };
  for (let i = 0; i < 800; ++i) yield { text: r.chance(0.5) ? Sentence(r) : Prose(r) };
  for (let i = 0; i < 400; ++i) yield { text: CodeSnippet(r) };
  for (let i = 0; i < 300; ++i) {
    yield { text: JSON.stringify(RandomJsonValue(r, 0), null, r.pick([0, 2, 4, "\t"])) };
  }
  for (let i = 0; i < 300; ++i) yield { text: NumberText(r) };
  for (let i = 0; i < 600; ++i) yield { text: UnicodeText(r) };
  for (let i = 0; i < 300; ++i) yield { text: AnyCodePoints(r) };
  for (let i = 0; i < 400; ++i) yield { text: WhitespaceText(r) };
  for (let i = 0; i < 300; ++i) yield { text: RandomAscii(r) };
  const decoder = new TextDecoder("utf-8");
  for (let i = 0; i < 400; ++i) {
    const bytes = RandomBytes(r);
    yield { hex: Buffer.from(bytes).toString("hex"), text: decoder.decode(bytes) };
  }
  for (const t of LongCases(r)) yield { text: t };
  for (const t of CodePointSweep()) yield { text: t };
}

async function WriteExpectations(path) {
  const encoders = kEncodings.map((name) => get_encoding(name));
  const out = createWriteStream(path);
  let cases = 0;
  let bytes = 0;
  for (const c of Corpus()) {
    const record = c.hex !== undefined ? { hex: c.hex } : { text: c.text };
    kEncodings.forEach((name, i) => {
      record[name] = Array.from(encoders[i].encode_ordinary(c.text));
    });
    if (!out.write(JSON.stringify(record) + "\n")) await once(out, "drain");
    ++cases;
    bytes += Buffer.byteLength(c.text);
  }
  out.end();
  await once(out, "finish");
  encoders.forEach((e) => e.free());
  console.error(`tiktoken_compare: wrote ${cases} cases (${bytes} bytes of text) to ${path}`);
}

// The benchmark texts: about 1 MB of prose and of code from the same generators.
function BenchTexts() {
  const r = Rng(7);
  let prose = "";
  while (prose.length < 1000000) prose += Prose(r) + "\n\n";
  let code = "";
  while (code.length < 1000000) code += CodeSnippet(r) + "\n";
  return { prose, code };
}

function Bench(dir) {
  mkdirSync(dir, { recursive: true });
  const texts = BenchTexts();
  for (const [name, text] of Object.entries(texts)) writeFileSync(`${dir}/${name}.txt`, text);
  for (const encoding of kEncodings) {
    const enc = get_encoding(encoding);
    for (const [name, text] of Object.entries(texts)) {
      let tokens = enc.encode_ordinary(text).length;  // warm-up
      const runs = 5;
      const start = process.hrtime.bigint();
      for (let i = 0; i < runs; ++i) tokens = enc.encode_ordinary(text).length;
      const seconds = Number(process.hrtime.bigint() - start) / 1e9 / runs;
      const bytes = Buffer.byteLength(text);
      console.log(JSON.stringify({ impl: "npm tiktoken", encoding, text: name, bytes, tokens,
        tokens_per_s: Math.round(tokens / seconds), mb_per_s: +(bytes / seconds / 1e6).toFixed(2) }));
    }
    enc.free();
  }
}

const args = process.argv.slice(2);
if (args[0] === "--out" && args[1]) {
  await WriteExpectations(args[1]);
} else if (args[0] === "--bench" && args[1]) {
  Bench(args[1]);
} else {
  console.error("usage: node tests/e2e/tiktoken_compare.mjs --out FILE | --bench DIR");
  process.exit(2);
}
