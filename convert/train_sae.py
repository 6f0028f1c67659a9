#!/usr/bin/env python3
"""Train a small sparse autoencoder on activations that `tlens collect`
wrote, and save it as SAELens does (cfg.json + sae_weights.safetensors),
so that `tlens run --sae DIR` can splice it back into the model.

    build/tlens collect --prompts verses.txt --hook blocks.2.hook_resid_pre -o build/acts
    python3 convert/train_sae.py build/acts/blocks.2.hook_resid_pre.npy \\
        --hook blocks.2.hook_resid_pre -o build/kjv-sae

A standard (ReLU) SAE: f = relu((x - b_dec) W_enc + b_enc), x' = f W_dec + b_dec,
trained on |x - x'|^2 + l1 * sum_i f_i |W_dec[i]| with Adam; the decoder's
rows are kept at unit norm. It needs PyTorch and numpy.
"""
import argparse
import json
import os
import time

import numpy as np
import torch

from train_bundled import write_safetensors  # the same writer the model's folder uses


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("acts", help=".npy of activations, one row per token (tlens collect)")
    ap.add_argument("--hook", required=True, help="the hook point they came from")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--expansion", type=int, default=8)
    ap.add_argument("--l1", type=float, default=3e-3)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    x = torch.from_numpy(np.load(args.acts).astype(np.float32))      # (N, d_in)
    n, d_in = x.shape
    d_sae = d_in * args.expansion
    W_dec = torch.randn(d_sae, d_in)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    W_enc = torch.nn.Parameter(W_dec.t().clone())
    W_dec = torch.nn.Parameter(W_dec)
    b_enc = torch.nn.Parameter(torch.zeros(d_sae))
    b_dec = torch.nn.Parameter(x.median(0).values.clone())
    opt = torch.optim.Adam([W_enc, W_dec, b_enc, b_dec], lr=args.lr)
    t0 = time.time()
    for step in range(args.steps):
        xb = x[torch.randint(0, n, (args.batch,))]
        f = torch.relu((xb - b_dec) @ W_enc + b_enc)                   # (batch, d_sae)
        recon = f @ W_dec + b_dec
        mse = (recon - xb).pow(2).sum(-1).mean()
        sparsity = (f * W_dec.norm(dim=1)).sum(-1).mean()
        loss = mse + args.l1 * sparsity
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            W_dec /= W_dec.norm(dim=1, keepdim=True)
        if step % 500 == 0 or step == args.steps - 1:
            var = (xb - xb.mean(0)).pow(2).sum(-1).mean()
            print("step %5d  mse %.4f (%.1f%% of the variance)  L0 %.1f  %.0f s" %
                  (step, mse.item(), 100 * mse.item() / var.item(), (f > 0).float().sum(-1).mean().item(),
                   time.time() - t0), flush=True)
    os.makedirs(args.out, exist_ok=True)
    write_safetensors(os.path.join(args.out, "sae_weights.safetensors"),
                      {k: v.detach() for k, v in {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}.items()})
    cfg = {"architecture": "standard", "d_in": d_in, "d_sae": d_sae, "hook_name": args.hook,
           "hook_layer": int(args.hook.split(".")[1]) if args.hook.startswith("blocks.") else 0,
           "hook_head_index": None, "apply_b_dec_to_input": True, "normalize_activations": "none",
           "dtype": "float32", "model_name": "tlens-kjv", "context_size": 256,
           "l1_coefficient": args.l1, "training_tokens": args.steps * args.batch}
    with open(os.path.join(args.out, "cfg.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    print("wrote %s" % args.out)


if __name__ == "__main__":
    main()
