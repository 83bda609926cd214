#!/usr/bin/env bash
# The GPU figures of benchmarks/RESULTS.md in one go, on one GPU, with random-initialised
# real-size parts (nothing is downloaded). Writes each script's output under $OUT (default
# ./gpu-results). About 10 minutes on one H100/H200.
#   bash benchmarks/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-results}
mkdir -p "$out"
py=${PYTHON:-python}

# 1. mmzoo's step vs the bare transformers models at ViT-B/16 + a 2,048-wide LLaMA, bf16, and
#    the same step with its parts compiled (compile.enabled=true)
$py benchmarks/bench_step.py --device cuda --size base --bf16 --compile | tee "$out/bench_step.txt"

# 2. LLaVA-1.5-7B shapes (ViT-L/14-336 -> mlp2 -> 7B LLaMA), stage 1: samples/s with and
#    without the frozen-feature cache (goal >= 15 samples/s per GPU)
$py benchmarks/bench_feature_cache.py --device cuda --bf16 --7b --batches 8 | tee "$out/feature_cache_7b.txt"

# 3. CLIP ViT-B/16 trained as users run it (Trainer, callbacks, bf16): samples/s and MFU from
#    the throughput callback (goal: MFU >= 25%), eager and compiled
for compiled in false true; do
  $py -m mmzoo.run trainer=gpu model=clip data.image_size=224 data.train_size=5000 data.test_size=256 \
    data.batch_size=256 data.num_workers=8 trainer.max_steps=200 model.embed_dim=512 \
    encoder.config.hidden_size=768 encoder.config.intermediate_size=3072 encoder.config.num_hidden_layers=12 \
    encoder.config.num_attention_heads=12 encoder.config.image_size=224 encoder.config.patch_size=16 \
    text.config.hidden_size=512 text.config.intermediate_size=2048 text.config.num_hidden_layers=12 \
    text.config.num_attention_heads=8 compile.enabled=$compiled trainer.enable_progress_bar=false \
    hydra.run.dir="$out/clip_vit_b16_compile_$compiled" | tail -5
  $py -c "import json, sys; print('CLIP ViT-B/16 compile=$compiled:', json.load(open(sys.argv[1]))['train']['throughput'])" \
    "$out/clip_vit_b16_compile_$compiled/metrics.json" | tee "$out/clip_vit_b16_compile_$compiled.txt"
done
