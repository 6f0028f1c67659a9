#!/bin/sh
# Fetch a GPT-2 checkpoint from the Hugging Face hub and convert it.
#
#   sh convert/fetch_gpt2.sh NAME [DIR]
#
# NAME: gpt2, gpt2-medium, gpt2-large, gpt2-xl or distilgpt2. The four files
# tlens reads (config.json, model.safetensors, vocab.json, merges.txt) land
# in DIR (default models/NAME), then build/tlens-convert writes
# DIR.tlens: the weights processed as TransformerLens' from_pretrained
# does, stored in the layout the kernels read, with the tokenizer inside.
# HF_BASE changes where the files come from (a mirror, or file:// a copy).
set -e
NAME=${1:?usage: fetch_gpt2.sh NAME [DIR]}
DIR=${2:-models/$NAME}
case "$NAME" in
    gpt2|gpt2-medium|gpt2-large|gpt2-xl) REPO=openai-community/$NAME ;;
    distilgpt2) REPO=distilbert/distilgpt2 ;;
    *) echo "fetch_gpt2.sh: unknown model $NAME (gpt2, gpt2-medium, gpt2-large, gpt2-xl, distilgpt2)" >&2; exit 1 ;;
esac
BASE=${HF_BASE:-https://huggingface.co/$REPO/resolve/main}
CONVERT=${CONVERT:-build/tlens-convert}

if command -v curl >/dev/null 2>&1; then get() { curl -fL --retry 3 -o "$2" "$1"; }
elif command -v wget >/dev/null 2>&1; then get() { wget -O "$2" "$1"; }
else echo "fetch_gpt2.sh: needs curl or wget" >&2; exit 1; fi

mkdir -p "$DIR"
for f in config.json vocab.json merges.txt model.safetensors; do
    if [ -s "$DIR/$f" ]; then echo "$DIR/$f: already there"; continue; fi
    echo "fetching $BASE/$f"
    if ! get "$BASE/$f" "$DIR/$f.part"; then
        rm -f "$DIR/$f.part"
        echo "fetch_gpt2.sh: could not fetch $BASE/$f" >&2
        exit 1
    fi
    mv "$DIR/$f.part" "$DIR/$f"
done
"$CONVERT" "$DIR" "$DIR.tlens"
echo "wrote $DIR.tlens"
