#!/usr/bin/env python3
"""Copy ../shared/reference into tests/data/reference, trimmed.

The optional points hook_attn_in, hook_q_input, hook_k_input and
hook_v_input are hook_resid_pre repeated once per head. They are kept in
full for the `tiny` case (where the tests compare them element by element);
for the larger cases this script first checks that they really are that
repetition (to float32 rounding: TransformerLens computed them in a run of
its own) and then leaves them out, which halves the size of the copy.
Standard library only.
"""
import json, os, shutil, struct, sys
from array import array

SRC = sys.argv[1] if len(sys.argv) > 1 else "../shared/reference"
DST = sys.argv[2] if len(sys.argv) > 2 else "tests/data/reference"
COPIES = ("hook_attn_in", "hook_q_input", "hook_k_input", "hook_v_input")
FULL_CASES = ("tiny",)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    return header, data


def write_safetensors(path, tensors):
    header, blob, off = {}, bytearray(), 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blob += raw
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        f.write(blob)
    return 8 + len(h)


def is_head_repeat(copy, resid, n_heads, d_model):
    rows = len(resid) // d_model
    for r in range(rows):
        src = resid[r * d_model:(r + 1) * d_model]
        for h in range(n_heads):
            o = (r * n_heads + h) * d_model
            for a, b in zip(copy[o:o + d_model], src):
                if abs(a - b) > 1e-5 + 1e-5 * abs(b):
                    return False
    return True


def trim_mode(src_file, dst_file, full):
    header, data = read_safetensors(src_file)
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        tensors[name] = (info["dtype"], info["shape"], data[b:e])
    if not full:
        for name in list(tensors):
            suffix = name.split(".")[-1]
            if suffix in COPIES:
                layer = name.split(".")[1]
                dtype, shape, raw = tensors[name]
                resid = array("f", tensors["blocks.%s.hook_resid_pre" % layer][2])
                copy = array("f", raw)
                if not is_head_repeat(copy, resid, shape[2], shape[3]):
                    sys.exit("%s: %s is not resid_pre repeated per head" % (src_file, name))
                del tensors[name]
    start = write_safetensors(dst_file, tensors)
    return start


for case in sorted(os.listdir(SRC)):
    src = os.path.join(SRC, case)
    if not os.path.isdir(src):
        continue
    dst = os.path.join(DST, case)
    os.makedirs(os.path.join(dst, "model"), exist_ok=True)
    for f in ("config.json", "model.safetensors"):
        shutil.copyfile(os.path.join(src, "model", f), os.path.join(dst, "model", f))
    shutil.copyfile(os.path.join(src, "tokens.npy"), os.path.join(dst, "tokens.npy"))
    for mode in ("raw", "processed"):
        os.makedirs(os.path.join(dst, mode), exist_ok=True)
        trim_mode(os.path.join(src, mode, "activations.safetensors"),
                  os.path.join(dst, mode, "activations.safetensors"), case in FULL_CASES)
    print(case, "copied")
