// Ask tiktoken's own regex engine which code points are \p{L}, \p{N} and \s.
//
//   node bench/tiktoken/classes.js > classes.txt
//   python3 tools/gen_unicode.py --ucd DIR --check classes.txt
//
// The Unicode version of those classes is whatever tiktoken's Rust regex
// crate was built with, which need not be the version of the Unicode
// Character Database on this machine; this is how tools/gen_unicode.py
// proves that its tables agree with tiktoken for every code point.
//
// How: a Tiktoken with the GPT-2 ranks and the pattern "\p{L}|\x00" finds
// each letter and each NUL. The text is c1 NUL c2 NUL ..., so the tokens
// between two NUL tokens are non-empty exactly when that code point is a
// letter. Output: one line "first last class" per run of code points,
// class one of L N S (White_Space); code points in no class are left out.
"use strict";
const { Tiktoken } = require("tiktoken/lite");
const gpt2 = require("tiktoken/encoders/gpt2.json");

const NUL_TOKEN = 188; // GPT-2's token for the byte 0x00
const BATCH = 4096;

function classMembers(pattern) {
  const enc = new Tiktoken(gpt2.bpe_ranks, {}, pattern + "|\\x00");
  const member = new Uint8Array(0x110000);
  for (let start = 1; start < 0x110000; start += BATCH) {
    const cps = [];
    for (let cp = start; cp < Math.min(start + BATCH, 0x110000); cp++)
      if (cp < 0xd800 || cp > 0xdfff) cps.push(cp); // surrogates are not text
    const text = cps.map((cp) => String.fromCodePoint(cp) + "\0").join("");
    let k = 0, seen = 0;
    for (const t of enc.encode_ordinary(text)) {
      if (t === NUL_TOKEN) { member[cps[k++]] = seen; seen = 0; } else seen = 1;
    }
    if (k !== cps.length) throw new Error("lost track of the code points near " + start);
  }
  enc.free();
  return member; // code point 0 (NUL) is in none of the classes
}

const classes = [["L", "\\p{L}"], ["N", "\\p{N}"], ["S", "\\s"]];
const lines = [];
for (const [name, pattern] of classes) {
  const m = classMembers(pattern);
  for (let cp = 0; cp < 0x110000; cp++) {
    if (!m[cp]) continue;
    let last = cp;
    while (last + 1 < 0x110000 && m[last + 1]) last++;
    lines.push(`${cp.toString(16).toUpperCase()} ${last.toString(16).toUpperCase()} ${name}`);
    cp = last;
  }
}
process.stdout.write(lines.join("\n") + "\n");
