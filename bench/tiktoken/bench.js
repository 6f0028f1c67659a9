// tiktoken's encode throughput on a text file, for bench/bench_tokenizer.c:
//   node bench/tiktoken/bench.js FILE   ->   tiktoken_encode_mb_s <value>
//                                           tiktoken_tokens <count>
// OpenAI's tiktoken from npm (its WebAssembly build), "gpt2" encoding,
// <|endoftext|> allowed in the text as tlens does. Median of 5 runs after
// a warm-up, one core.
"use strict";
const fs = require("fs");
const { get_encoding } = require("tiktoken");

const text = fs.readFileSync(process.argv[2], "utf8");
const megabytes = Buffer.byteLength(text, "utf8") / 1e6;
const enc = get_encoding("gpt2");
let count = enc.encode(text, "all").length; // warm-up
const rates = [];
for (let run = 0; run < 5; run++) {
  const start = process.hrtime.bigint();
  count = enc.encode(text, "all").length;
  rates.push(megabytes / (Number(process.hrtime.bigint() - start) / 1e9));
}
rates.sort((a, b) => a - b);
console.log(`tiktoken_encode_mb_s ${rates[2].toFixed(2)}`);
console.log(`tiktoken_tokens ${count}`);
enc.free();
