#!/usr/bin/env python3
"""Reference values for the bundled model's test (tests/test_bundled.c).

Runs GPT-2's forward pass in PyTorch, written here from the equations and
reading the Hugging Face folder that convert/train_bundled.py wrote (not
the .tlens file tlens loads), on a few prompts of held-out text, and writes
tests/data/bundled/reference.txt, plain text for a C test to read:

    prompt <n tokens> <token ids ...>
    <position> <log-prob of the next token, or nan> <5 x: id log-prob>

one "prompt" line, then a line per position with the five most likely next
tokens. The weight matrices are rounded to float16 first, as the bundled
file stores them (all but the position embeddings, which it keeps in
float32), and everything is computed in float64, so that the differences
the test allows are tlens' own rounding.

    python3 tools/bundled_reference.py build/kjv-hf tests/data/bundled
"""
import json
import math
import os
import struct
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F

HF = sys.argv[1] if len(sys.argv) > 1 else "build/kjv-hf"
OUT = sys.argv[2] if len(sys.argv) > 2 else "tests/data/bundled"
TLENS = os.environ.get("TLENS", "build/tlens")
PROMPTS = [
    "And the LORD spake unto Moses, saying,",
    "Blessed are the meek: for they shall inherit the earth.",
    "In the beginning was the Word, and the Word was with God",
]


def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        blob = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        t = torch.from_numpy(np.frombuffer(blob[a:b], dtype="<f4").reshape(info["shape"]).copy())
        out[name] = (t.half() if t.dim() == 2 and not name.endswith("wpe.weight") else t).double()
    return out


def layer_norm(x, w, b, eps):
    x = x - x.mean(-1, keepdim=True)
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w + b


def gelu_new(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def forward(W, cfg, ids):                                   # ids (T,)
    T, D, H = len(ids), cfg["n_embd"], cfg["n_head"]
    eps = cfg["layer_norm_epsilon"]
    x = W["wte.weight"][ids] + W["wpe.weight"][:T]          # (T, D)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    for l in range(cfg["n_layer"]):
        p = "h.%d." % l
        h = layer_norm(x, W[p + "ln_1.weight"], W[p + "ln_1.bias"], eps)
        qkv = h @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]   # (T, 3D)
        q, k, v = (t.reshape(T, H, D // H).transpose(0, 1) for t in qkv.split(D, -1))
        s = (q @ k.transpose(1, 2)) / math.sqrt(D // H)                    # (H, T, T)
        z = (s.masked_fill(mask, float("-inf")).softmax(-1) @ v).transpose(0, 1).reshape(T, D)
        x = x + z @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"]
        h = layer_norm(x, W[p + "ln_2.weight"], W[p + "ln_2.bias"], eps)
        m = gelu_new(h @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"])
        x = x + m @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"]
    x = layer_norm(x, W["ln_f.weight"], W["ln_f.bias"], eps)
    return F.log_softmax(x @ W["wte.weight"].t(), -1)                      # (T, V)


def main():
    torch.set_grad_enabled(False)
    cfg = json.load(open(os.path.join(HF, "config.json")))
    W = {k.replace("transformer.", ""): v for k, v in load(os.path.join(HF, "model.safetensors")).items()}
    lines = []
    for text in PROMPTS:
        out = subprocess.run([TLENS, "tokenize", "--prepend-bos", text], check=True,
                             capture_output=True, text=True).stdout
        ids = [int(t) for t in out.split()]
        lp = forward(W, cfg, torch.tensor(ids, dtype=torch.long))
        top = lp.topk(5, -1)
        lines.append("prompt %d %s" % (len(ids), " ".join(map(str, ids))))
        for i in range(len(ids)):
            nxt = "%.6f" % lp[i, ids[i + 1]].item() if i + 1 < len(ids) else "nan"
            pairs = " ".join("%d %.6f" % (t, v) for t, v in zip(top.indices[i].tolist(), top.values[i].tolist()))
            lines.append("%d %s %s" % (i, nxt, pairs))
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "reference.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s (%d prompts)" % (os.path.join(OUT, "reference.txt"), len(PROMPTS)))


if __name__ == "__main__":
    main()
