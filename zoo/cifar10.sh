#!/usr/bin/env bash
# Download NVIDIA's public StyleGAN2-ADA CIFAR-10 generators into zoo/checkpoints/, the path the
# configs in scripts/pretrain/cifar10/ expect, and check their SHA-256 sums.
#   cifar10u-cifar-ada-best-fid.pkl  unconditional, the paper's teacher (FID 2.92, paper Fig. 11b)
#   cifar10.pkl                      conditional (10 classes)
# The files are network pickles; solo-sqsp reads them without running any code from them.
# Offline? Copy the .pkl files here from a machine with internet access, then rerun this script
# to check them, or point method_kwargs.teacher.path at them.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p checkpoints
BASE=https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained
FILES=(
  "paper-fig11b-cifar10/cifar10u-cifar-ada-best-fid.pkl"
  "cifar10.pkl"
)
# SHA-256 of each file as published; empty where it could not be established (printed instead).
declare -A SHA256=(
  ["cifar10u-cifar-ada-best-fid.pkl"]=""
  ["cifar10.pkl"]=""
)
for remote in "${FILES[@]}"; do
  name=$(basename "$remote")
  target="checkpoints/$name"
  if [ ! -s "$target" ]; then
    echo "downloading $name"
    if ! curl -fL --retry 3 -o "$target.part" "$BASE/$remote"; then
      rm -f "$target.part"
      echo "error: could not download $BASE/$remote (offline?). Copy $name into zoo/checkpoints/ by hand." >&2
      exit 1
    fi
    mv "$target.part" "$target"
  fi
  actual=$(sha256sum "$target" | cut -d' ' -f1)
  expected=${SHA256[$name]}
  if [ -z "$expected" ]; then
    echo "$name: sha256 $actual (no published hash recorded; compare with a trusted copy)"
  elif [ "$actual" != "$expected" ]; then
    echo "error: $target has sha256 $actual, expected $expected: delete it and download again" >&2
    exit 1
  else
    echo "$name: sha256 verified"
  fi
done
echo "inspect a teacher with: python -m solo_sqsp.teachers inspect zoo/checkpoints/cifar10u-cifar-ada-best-fid.pkl"
