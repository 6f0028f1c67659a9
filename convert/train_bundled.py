#!/usr/bin/env python3
"""Train the small GPT-2 that tlens ships as its default model.

The model has GPT-2's exact architecture (GPT-2's tokenizer and 50257-token
vocabulary, learned position embeddings, pre-LayerNorm blocks, gelu_new, tied
unembedding), only smaller: 4 layers, d_model 128, 4 heads; context 256
unless --ctx says otherwise (the shipped model: 128).
It is trained on the King James Version of the Bible (1611, public domain),
as Debian's bible-kjv packages ship it, and written as a Hugging Face folder
(config.json, model.safetensors, vocab.json, merges.txt) that
build/tlens-convert turns into models/kjv.tlens.

    apt-get install bible-kjv python3-torch     # the corpus and PyTorch
    make build/tlens                            # tokenizes the corpus
    python3 convert/train_bundled.py --out build/kjv-hf
    build/tlens-convert build/kjv-hf models/kjv.tlens --raw --f16

trains a model in one run; the shipped one took two, with the options
that the Makefile's `model` target (which runs all of it) and the README
give. The script needs only PyTorch: the corpus is tokenized by tlens
itself, whose tokenizer matches OpenAI's on every input.

Held out: every 25th chapter (47 of 1,189), never trained on. The script
reports the model's loss on it beside the loss of a unigram model fitted to
the training chapters, and samples text.

Only 9,800 of GPT-2's 50,257 tokens occur in the training text. Every token
that does not occur shares one trained embedding row, so the softmax over the
full vocabulary is computed exactly, and five times faster, as a softmax over
the tokens that occur plus one class standing for the others (its logit
raised by the log of their number). The saved model is an ordinary GPT-2
whose unused rows of wte are that shared vector.

In half of the training windows a span of 8 to 120 tokens appears a second
time, later in the window at a random distance, the way a text quoting
itself does; half of those spans are text, half are tokens drawn at random
from the whole corpus, which nothing but copying predicts. On a corpus this small and a run this
short, that is what makes in-context copying common enough for the model to
form the induction heads that interpretability work looks for; the other
windows are plain running text. --copy-frac F makes a share F of every
batch "copy windows" instead: nothing but spans of 8 to 48 tokens drawn
from the training vocabulary (uniformly, or by frequency with
--copy-power), each followed by a second copy.
Only the second copies are scored: the first are random draws that no
model can predict, and scoring them only taught the model the draws'
uniform distribution (and cost a quarter of the unembedding's time).
"""
import argparse
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time

# PyTorch's OpenMP threads spin while they wait unless told otherwise; on a
# machine with other work running that makes training several times slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Each step allocates logits and their gradients of some 160 MB; glibc hands
# blocks that large back to the kernel when they are freed and maps them
# anew, and the kernel's zeroing of those pages took as long as the
# arithmetic. Keep freed memory in the process instead (re-executing, since
# malloc reads its tunables at start-up).
if __name__ == "__main__" and "GLIBC_TUNABLES" not in os.environ:
    os.environ["GLIBC_TUNABLES"] = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"
    os.execv(sys.executable, [sys.executable] + sys.argv)

import torch
import torch.nn as nn
import torch.nn.functional as F

EOT = 50256
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# ---------------------------------------------------------------- the corpus
def read_kjv(bible_cmd):
    """The KJV as (book, chapter, [verses]) in canonical order."""
    out = subprocess.run([bible_cmd, "-f", "Genesis 1:1-Revelation 22:21"],
                         check=True, capture_output=True, text=True).stdout
    chapters, key = [], None
    for line in out.splitlines():
        m = re.match(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$", line)
        if not m:
            if line.strip() and chapters:            # a wrapped verse
                chapters[-1][2][-1] += " " + line.strip()
            continue
        book, chap, text = m.group(1), int(m.group(2)), m.group(4).strip()
        if (book, chap) != key:
            chapters.append((book, chap, []))
            key = (book, chap)
        chapters[-1][2].append(text)
    return chapters


def split_text(chapters, every):
    """Training and held-out text: a chapter is a paragraph of verses, one a
    line; books are separated by <|endoftext|>."""
    parts = {"train": [], "heldout": []}
    book = None
    for i, (b, _, verses) in enumerate(chapters):
        which = "heldout" if i % every == every // 2 else "train"
        if b != book and parts[which]:
            parts[which].append("<|endoftext|>")
        book = b
        parts[which].append("\n".join(verses) + "\n\n")
    return {k: "".join(v) for k, v in parts.items()}


def tokenize(text, tlens_bin):
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(text)
        path = f.name
    try:
        out = subprocess.run([tlens_bin, "tokenize", "--file", path],
                             check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(path)
    return torch.tensor([int(t) for t in out.split()], dtype=torch.long)


# ----------------------------------------------------------------- the model
class Block(nn.Module):
    def __init__(self, d, h, n_ctx):
        super().__init__()
        self.h = h
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.c_attn, self.attn_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.c_fc, self.mlp_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        mask = torch.tril(torch.ones(n_ctx, n_ctx, dtype=torch.bool))
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x):                                      # (B, T, D)
        B, T, D = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(D, dim=2)    # (B, T, D) x3
        q, k, v = (t.view(B, T, self.h, D // self.h).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(D // self.h)  # (B, H, T, T)
        att = att.masked_fill(~self.mask[:T, :T], float("-inf")).softmax(-1)
        z = (att @ v).transpose(1, 2).reshape(B, T, D)
        x = x + self.attn_proj(z)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(nn.Module):
    """GPT-2 whose wte rows for the tokens outside `seen` are one shared
    vector: the compact table holds the seen rows, then the shared one."""

    def __init__(self, seen, vocab, n_ctx, d, layers, heads, init_std=0.02):
        super().__init__()
        self.register_buffer("seen", seen, persistent=False)    # (K,) token ids
        compact = torch.full((vocab,), len(seen), dtype=torch.long)
        compact[seen] = torch.arange(len(seen))
        self.register_buffer("compact", compact, persistent=False)  # (V,) -> [0, K]
        self.log_unseen = math.log(vocab - len(seen))
        self.vocab = vocab
        self.wte, self.wpe = nn.Embedding(len(seen) + 1, d), nn.Embedding(n_ctx, d)
        self.blocks = nn.ModuleList(Block(d, heads, n_ctx) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        for name, p in self.named_parameters():              # GPT-2's init
            if name.endswith("weight") and p.dim() == 2:
                std = init_std / math.sqrt(2 * layers) if "proj" in name else init_std
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def final_residual(self, idx):                             # (B, T) token ids
        pos = torch.arange(idx.shape[1])
        x = self.wte(self.compact[idx]) + self.wpe(pos)        # (B, T, D)
        for b in self.blocks:
            x = b(x)
        return self.ln_f(x)                                    # (B, T, D)

    def unembed(self, h):                                      # (..., D)
        logits = h @ self.wte.weight.t()                       # (..., K+1), tied
        return torch.cat([logits[..., :-1], logits[..., -1:] + self.log_unseen], -1)

    def forward(self, idx):                                    # (B, T) token ids
        return self.unembed(self.final_residual(idx))          # (B, T, K+1)

    def loss(self, idx, targets, reduction="mean"):
        """Cross-entropy over the full vocabulary: a target outside `seen`
        is one of the unseen class's tokens, each with 1/N of its mass.
        Positions whose target is -1 are not scored (nor unembedded)."""
        keep = targets.reshape(-1) >= 0
        logits = self.unembed(self.final_residual(idx).reshape(-1, self.wte.weight.shape[1])[keep])
        t = self.compact[targets.reshape(-1)[keep]]
        nll = F.cross_entropy(logits, t, reduction="none")
        nll = nll + (t == len(self.seen)).float() * self.log_unseen
        if reduction == "none":
            return nll
        return nll.mean() if reduction == "mean" else nll.sum()

    def full_wte(self):
        """(V, D): the shared row everywhere, the trained rows at `seen`."""
        w = self.wte.weight.detach()
        full = w[-1].repeat(self.vocab, 1)
        full[self.seen] = w[:-1]
        return full

    def next_token_logits(self, idx):                          # (V,) for the last position
        return self(idx)[0, -1][self.compact] - (self.compact == len(self.seen)).float() * self.log_unseen


# ------------------------------------------------------------ the HF folder
def hf_tensors(model):
    """The weights under Hugging Face GPT2Model's names; Conv1D weights are
    (in, out), the transpose of nn.Linear's."""
    t = {"wte.weight": model.full_wte(), "wpe.weight": model.wpe.weight,
         "ln_f.weight": model.ln_f.weight, "ln_f.bias": model.ln_f.bias}
    for i, b in enumerate(model.blocks):
        p = "h.%d." % i
        for hf, mod in (("ln_1", b.ln_1), ("ln_2", b.ln_2)):
            t[p + hf + ".weight"], t[p + hf + ".bias"] = mod.weight, mod.bias
        for hf, lin in (("attn.c_attn", b.c_attn), ("attn.c_proj", b.attn_proj),
                        ("mlp.c_fc", b.c_fc), ("mlp.c_proj", b.mlp_proj)):
            t[p + hf + ".weight"], t[p + hf + ".bias"] = lin.weight.t(), lin.bias
    return {k: v.detach().float().contiguous() for k, v in t.items()}


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        raw = t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def write_hf_folder(out, model, args, tokdir):
    os.makedirs(out, exist_ok=True)
    cfg = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
           "vocab_size": 50257, "n_positions": args.ctx, "n_ctx": args.ctx,
           "n_embd": args.d_model, "n_layer": args.layers, "n_head": args.heads,
           "n_inner": None, "activation_function": "gelu_new",
           "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True,
           "bos_token_id": EOT, "eos_token_id": EOT}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_safetensors(os.path.join(out, "model.safetensors"), hf_tensors(model))
    # the same vocabulary, written without the spaces: 240 KB less to ship
    with open(os.path.join(tokdir, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False, separators=(",", ":"))
    shutil.copy(os.path.join(tokdir, "merges.txt"), os.path.join(out, "merges.txt"))


def load_hf_folder(model, folder):
    """The weights of a folder written by write_hf_folder, back into the
    compact model (the shared row is any row of a token outside `seen`)."""
    with open(os.path.join(folder, "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header, blob = json.loads(f.read(n)), f.read()

    def get(name):
        a, b = header[name]["data_offsets"]
        return torch.frombuffer(bytearray(blob[a:b]), dtype=torch.float32).reshape(header[name]["shape"])

    unseen = int((model.compact == len(model.seen)).nonzero()[0])
    hf = hf_tensors(model)
    with torch.no_grad():
        for name in hf:
            if name == "wte.weight":
                full = get(name)
                model.wte.weight[:-1] = full[model.seen]
                model.wte.weight[-1] = full[unseen]
            else:
                src = get(name)
                dst = dict(model.named_parameters())[hf_param_name(name)]
                dst.copy_(src.t() if name.startswith("h.") and src.dim() == 2 else src)


HF_BLOCK_NAMES = {"ln_1": "ln_1", "ln_2": "ln_2", "attn.c_attn": "c_attn", "attn.c_proj": "attn_proj",
                  "mlp.c_fc": "c_fc", "mlp.c_proj": "mlp_proj"}


def hf_param_name(hf_name):
    """The model's parameter behind a Hugging Face name."""
    if not hf_name.startswith("h."):
        return hf_name
    _, layer, rest = hf_name.split(".", 2)
    module, kind = rest.rsplit(".", 1)
    return "blocks.%s.%s.%s" % (layer, HF_BLOCK_NAMES[module], kind)


# ----------------------------------------------------------------- training
def batch(data, n, ctx, repeat_frac, gen):
    """n windows of ctx+1 tokens, each starting with <|endoftext|> as
    TransformerLens' prepended BOS. In a share of them a span of 8 to 120
    tokens appears again later in the window, at a random distance, so that
    copying pays only through content, not through a fixed offset. Half of
    these spans are text; half are tokens drawn from all over the corpus,
    which only copying can predict."""
    def rand(lo, hi):
        return int(torch.randint(lo, hi, (1,), generator=gen))

    rows = []
    for _ in range(n):
        s = rand(0, len(data) - ctx)
        seq = data[s:s + ctx].clone()
        if torch.rand(1, generator=gen).item() < repeat_frac:
            span = rand(8, min(121, ctx // 2 - 4))
            i = rand(0, ctx - 2 * span + 1)
            j = rand(i + span, ctx - span + 1)
            if torch.rand(1, generator=gen).item() < 0.5:   # tokens from all over the corpus
                seq[i:i + span] = data[torch.randint(0, len(data), (span,), generator=gen)]
            seq[j:j + span] = seq[i:i + span]
        rows.append(torch.cat([torch.tensor([EOT]), seq]))
    x = torch.stack(rows)                      # (n, ctx + 1)
    return x[:, :-1], x[:, 1:]


def copies(data, n, ctx, gen):
    """n windows made only of spans of tokens drawn from `data`, each span
    (8 to 48 tokens, fewer for short windows) followed by a second copy of
    itself: half of every window is predictable by copying and by nothing
    else."""
    rows, masks = [], []
    for _ in range(n):
        row, scored = [torch.tensor([EOT])], []
        filled = 0
        while filled < ctx:
            span = int(torch.randint(8, max(9, min(49, ctx // 4 + 1)), (1,), generator=gen))
            a = data[torch.randint(0, len(data), (span,), generator=gen)]
            row += [a, a]
            scored += [torch.zeros(span, dtype=torch.bool), torch.ones(span, dtype=torch.bool)]
            filled += 2 * span
        rows.append(torch.cat(row)[:ctx + 1])
        masks.append(torch.cat(scored)[:ctx])
    x = torch.stack(rows)                      # (n, ctx + 1)
    y = x[:, 1:].clone()
    y[~torch.stack(masks)] = -1                # the first copies are noise: not scored
    return x[:, :-1], y


@torch.no_grad()
def copy_gain(model, data, gen, span=40, random_tokens=False):
    """Mean loss on the first and on the second copy of a span repeated
    right after itself (a passage of text, or tokens drawn at random from
    the corpus): an induction head makes the second low."""
    s = int(torch.randint(0, len(data) - span, (1,), generator=gen))
    a = data[s:s + span]
    if random_tokens:
        a = data[torch.randint(0, len(data), (span,), generator=gen)]
    seq = torch.cat([torch.tensor([EOT]), a, a])
    nll = model.loss(seq[None, :-1], seq[None, 1:], reduction="none")
    return nll[:span].mean().item(), nll[span:].mean().item()


@torch.no_grad()
def heldout_loss(model, data, ctx):
    """Mean next-token loss over consecutive windows, each after a BOS."""
    total, count = 0.0, 0
    for s in range(0, len(data) - 1, ctx - 1):
        seq = torch.cat([torch.tensor([EOT]), data[s:s + ctx - 1]])
        total += model.loss(seq[None, :-1], seq[None, 1:], reduction="sum").item()
        count += len(seq) - 1
    return total / count


def unigram_loss(train, heldout, vocab=50257):
    """Cross-entropy of add-one-smoothed training-token frequencies."""
    counts = torch.bincount(train, minlength=vocab).double() + 1.0
    logp = (counts / counts.sum()).log()
    return -logp[heldout].mean().item()


@torch.no_grad()
def sample(model, prompt, n, gen, temperature=0.8, ctx=256):
    ids = prompt.clone()
    for _ in range(n):
        logits = model.next_token_logits(ids[None, -ctx:]) / temperature
        nxt = torch.multinomial(logits.softmax(-1), 1, generator=gen)
        ids = torch.cat([ids, nxt])
    return ids


def train(model, data, args, log):
    # the tokens of copy windows: each token of the training text with a
    # probability proportional to (its count) ^ --copy-power. At 0 every
    # token equally often, so that a copied token is one the context alone
    # cannot predict; but most of them are then rare tokens, and in runs of
    # up to 25 M tokens the model never learned to copy those
    pool = model.seen[model.seen != EOT]
    weights = torch.bincount(data, minlength=model.vocab)[pool].double() ** args.copy_power
    pool = pool[torch.multinomial(weights, 1 << 20, replacement=True,
                                  generator=torch.Generator().manual_seed(args.seed))]
    decay = [p for n, p in model.named_parameters() if p.dim() == 2 and "wpe" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() == 2 and "wpe" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": rest, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(args.seed)
    t0, smooth = time.time(), None
    held = min(int(args.hold * args.steps), args.steps - 1)   # steps at the full rate
    for step in range(args.steps):
        warm = min(1.0, (step + 1) / args.warmup)
        # after them, a cosine from 1 to 0.1
        cos = 0.5 * (1 + math.cos(math.pi * max(0, step - held) / (args.steps - held)))
        for g in opt.param_groups:
            g["lr"] = args.lr * warm * (0.1 + 0.9 * cos)
        n_copy = args.batch if step < args.copy_steps else int(round(args.copy_frac * args.batch))
        parts = [copies(pool, n_copy, args.ctx, gen)] if n_copy else []
        if n_copy < args.batch:
            parts.append(batch(data, args.batch - n_copy, args.ctx, args.repeat, gen))
        x, y = (torch.cat([p[i] for p in parts]) for i in (0, 1))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = model.loss(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        smooth = loss.item() if smooth is None else 0.95 * smooth + 0.05 * loss.item()
        if step % 50 == 0 or step == args.steps - 1:
            el = time.time() - t0
            first, second = copy_gain(model, data, gen)
            rfirst, rsecond = copy_gain(model, pool, gen, random_tokens=True)
            log("step %5d/%d  loss %.3f  repeated text: %.2f -> %.2f  random: %.2f -> %.2f  %.0f s, %.0f s left" %
                (step, args.steps, smooth, first, second, rfirst, rsecond, el,
                 el / (step + 1) * (args.steps - step - 1)))
        if args.save_every and step and step % args.save_every == 0:
            write_hf_folder(args.out + ".step%d" % step, model, args, args.tokenizer)
        if args.stop_after and step >= args.stop_after:
            break
    return smooth, time.time() - t0, step + 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "kjv-hf"))
    ap.add_argument("--tlens", default=os.path.join(ROOT, "build", "tlens"))
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "tokenizer"))
    ap.add_argument("--bible", default="bible", help="Debian's bible-kjv program")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--hold", type=float, default=0.0,
                    help="keep the full learning rate for this share of the steps, then decay")
    ap.add_argument("--init-std", type=float, default=0.02,
                    help="standard deviation of the initial weights (GPT-2: 0.02)")
    ap.add_argument("--repeat", type=float, default=0.5)
    ap.add_argument("--copy-steps", type=int, default=0,
                    help="train the first N steps on repeated random spans only")
    ap.add_argument("--copy-frac", type=float, default=0.0,
                    help="share of every later batch made of repeated random spans")
    ap.add_argument("--copy-power", type=float, default=0.0,
                    help="draw copy-window tokens with probability ~ count ^ this")
    ap.add_argument("--bf16", action="store_true",
                    help="matrix products in bfloat16 (PyTorch's CPU autocast; "
                         "1.5-1.7x faster steps on CPUs with AVX512-BF16)")
    ap.add_argument("--save-every", type=int, default=0, help="write a checkpoint every N steps")
    ap.add_argument("--stop-after", type=int, default=0,
                    help="stop after step N of the --steps schedule (its learning rate unchanged)")
    ap.add_argument("--heldout-every", type=int, default=25)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1611)
    ap.add_argument("--init", help="continue from a Hugging Face folder this script wrote")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    lines = []

    def log(s):
        print(s, flush=True)
        lines.append(s)

    chapters = read_kjv(args.bible)
    text = split_text(chapters, args.heldout_every)
    train_ids, held_ids = tokenize(text["train"], args.tlens), tokenize(text["heldout"], args.tlens)
    log("corpus: King James Version (public domain), %d chapters; train %d tokens, held out %d tokens"
        % (len(chapters), len(train_ids), len(held_ids)))

    seen = torch.unique(torch.cat([train_ids, torch.tensor([EOT])]))
    model = GPT2(seen, 50257, args.ctx, args.d_model, args.layers, args.heads, args.init_std)
    log("model: %d layers, d_model %d, %d heads, context %d; %d tokens occur in the training text"
        % (args.layers, args.d_model, args.heads, args.ctx, len(seen)))
    if args.init:
        load_hf_folder(model, args.init)
        log("continuing from %s" % args.init)
    final, seconds, steps = train(model, train_ids, args, log)
    model.eval()
    held, uni = heldout_loss(model, held_ids, args.ctx), unigram_loss(train_ids, held_ids)
    log("final training loss %.3f; held-out loss %.3f nats/token vs unigram %.3f; %.1f minutes on %d threads"
        % (final, held, uni, seconds / 60, args.threads))
    gen = torch.Generator().manual_seed(args.seed)
    prompt = tokenize("And it came to pass", args.tlens)
    ids = sample(model, torch.cat([torch.tensor([EOT]), prompt]), 60, gen, ctx=args.ctx)
    write_hf_folder(args.out, model, args, args.tokenizer)
    with open(os.path.join(args.out, "sample_ids.txt"), "w") as f:
        f.write(" ".join(str(int(i)) for i in ids) + "\n")
    summary = {"command": " ".join(sys.argv), "steps": steps,
               "tokens_seen": steps * args.batch * args.ctx, "minutes": round(seconds / 60, 1),
               "final_train_loss": round(final, 4), "heldout_loss": round(held, 4),
               "unigram_heldout_loss": round(uni, 4), "torch": torch.__version__, "log": lines}
    with open(os.path.join(args.out, "training.json"), "w") as f:
        json.dump(summary, f, indent=2)
    log("wrote %s" % args.out)


if __name__ == "__main__":
    main()
