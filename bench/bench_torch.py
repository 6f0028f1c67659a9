#!/usr/bin/env python3
"""The PyTorch baseline for bench/bench.c: GPT-2 small (random weights) on
the CPU, written directly in torch (as Hugging Face's GPT2LMHeadModel
computes it), prefill for T = 16, 128, 1024 and decoding with a key/value
cache after a 16-token prompt. Prints lines like bench.c's, prefixed torch_.
Run with OMP_WAIT_POLICY=PASSIVE; threads: TORCH_THREADS (default 2)."""
import math, os, statistics, time
import torch

torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "2")))
torch.manual_seed(0)
L, D, H, V, N_CTX = 12, 768, 12, 50257, 1024
DH = D // H


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1 = torch.nn.LayerNorm(D)
        self.c_attn = torch.nn.Linear(D, 3 * D)
        self.c_proj = torch.nn.Linear(D, D)
        self.ln_2 = torch.nn.LayerNorm(D)
        self.c_fc = torch.nn.Linear(D, 4 * D)
        self.mlp_proj = torch.nn.Linear(4 * D, D)

    def forward(self, x, past=None):
        B, T, _ = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(D, dim=2)
        q, k, v = (t.view(B, T, H, DH).transpose(1, 2) for t in (q, k, v))
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        S = k.shape[2]
        att = (q @ k.transpose(-1, -2)) / math.sqrt(DH)
        mask = torch.ones(T, S, dtype=torch.bool).tril(S - T)
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        z = (att @ v).transpose(1, 2).reshape(B, T, D)
        x = x + self.c_proj(z)
        x = x + self.mlp_proj(gelu_new(self.c_fc(self.ln_2(x))))
        return x, (k, v)


class GPT2(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = torch.nn.Embedding(V, D)
        self.wpe = torch.nn.Embedding(N_CTX, D)
        self.h = torch.nn.ModuleList(Block() for _ in range(L))
        self.ln_f = torch.nn.LayerNorm(D)

    def forward(self, tokens, past=None):
        start = 0 if past is None else past[0][0].shape[2]
        x = self.wte(tokens) + self.wpe(torch.arange(start, start + tokens.shape[1]))
        new = []
        for i, blk in enumerate(self.h):
            x, kv = blk(x, None if past is None else past[i])
            new.append(kv)
        return self.ln_f(x) @ self.wte.weight.T, new


def median_ms(fn, reps):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


model = GPT2().eval()
with torch.no_grad():
    for T, reps in ((16, 7), (128, 5), (1024, 3)):
        tok = torch.randint(0, V, (1, T))
        model(tok)  # warm up
        print("torch_prefill_ms T=%d %.2f" % (T, median_ms(lambda: model(tok), reps)), flush=True)
    prompt = torch.randint(0, V, (1, 16))
    steps = 32

    def decode():
        logits, past = model(prompt)
        t0 = time.perf_counter()
        tok = logits[:, -1:].argmax(-1)
        for _ in range(steps):
            logits, past = model(tok, past)
            tok = logits[:, -1:].argmax(-1)
        return steps / (time.perf_counter() - t0)

    decode()
    print("torch_decode_tok_s %.2f" % statistics.median(decode() for _ in range(3)), flush=True)
