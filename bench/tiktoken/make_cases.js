// Make tests/data/tokenizer/random_cases.jsonl: random texts and the ids
// tiktoken's gpt2 encoding gives them, one {"text":...,"ids":[...]} a line.
//
//   node bench/tiktoken/make_cases.js > tests/data/tokenizer/random_cases.jsonl
//
// The texts are built (from a fixed seed, so the file is reproducible) to
// reach the corners of GPT-2's pre-tokenizer: the first and last code point
// of every run of letters, numbers and spaces (tests/data/tokenizer/
// tiktoken_classes.txt, the classes tiktoken's regex engine reports) and
// their neighbours, every White_Space character, contractions in both
// cases, long runs (for the O(n log n) BPE), <|endoftext|> and near misses.
"use strict";
const fs = require("fs");
const path = require("path");
const { get_encoding } = require("tiktoken");

let seed = 20260504;
function random() { // mulberry32
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(random() * a.length)];
const repeat = (s, n) => Array.from({ length: n }, () => (typeof s === "function" ? s() : s)).join("");

const classesFile = path.join(__dirname, "../../tests/data/tokenizer/tiktoken_classes.txt");
const edges = [];
for (const line of fs.readFileSync(classesFile, "utf8").trim().split("\n")) {
  const [first, last] = line.split(" ").map((h) => parseInt(h, 16));
  for (const cp of [first - 1, first, last, last + 1])
    if (cp > 0 && cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff)) edges.push(String.fromCodePoint(cp));
}
const spaces = [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x85", "\xa0", "\u1680", "\u2000", "\u2005",
  "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\x1c", "\x1f", "\u200b", "\u180e", "\ufeff"];
const words = ["the", "The", "of", "and", "tokenizer", "GPT", "Hello", "world", "naïve", "Ω", "Straße",
  "日本語", "中文", "한국어", "Русский", "العربية", "हिन्दी", "ภาษา", "x", "I", "A", "zzz", "\u{1d518}\u{1d52b}"];
const others = ["!", ".", ",", "?", "...", "--", "(", ")", "{", "}", "#", "@", "$", "%", "_", "'", "\"",
  "`", "\u0301", "\u0308", "\u200d", "\u{1f600}", "\u{1f469}\u200d\u{1f467}", "\ufe0f", "€", "©", "→"];
const digits = ["0", "7", "42", "2026", "3.14", "½", "²", "٣", "१", "Ⅻ", "\u{1d7d8}"];
const contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'LL", "'x", "''"];
const specials = ["<|endoftext|>", "<|endoftext", "|endoftext|>", "<|EndOfText|>", "<|endoftext|><|endoftext|>"];

function unit() {
  const r = random();
  if (r < 0.18) return pick(words);
  if (r < 0.36) return pick(spaces);
  if (r < 0.5) return pick(edges);
  if (r < 0.62) return pick(others);
  if (r < 0.72) return pick(digits);
  if (r < 0.82) return pick(contractions);
  if (r < 0.84) return pick(specials);
  if (r < 0.87) return repeat(pick(["a", "ab", " ", "\n", "1", "日", "!", "\u3000", "z"]), 20 + Math.floor(random() * 300));
  return " " + pick(words);
}

const enc = get_encoding("gpt2");
const out = [];
for (let i = 0; i < 700; i++) {
  const text = repeat(unit, 1 + Math.floor(random() * (i < 100 ? 4 : 30)));
  out.push(JSON.stringify({ text, ids: Array.from(enc.encode(text, "all")) }));
}
enc.free();
process.stdout.write(out.join("\n") + "\n");
