#!/usr/bin/env bash
# Every GPU figure in one go, for a lent GPU machine (each part time-limited, one log per part in OUT_DIR):
#   bash bench/gpu_all.sh OUT_DIR [PART ...]      PART: benches trainers (default: both)
# benches: gpu_train (LoRA step vs naive, VRAM), gpu_hair (SDXL-sized hair inpainting step, VRAM), gpu_anime (img/s).
# trainers: the real LoRA, anime and hair stage-2 trainers on CUDA in the tiny profile (fp16, 8-bit AdamW, auto micro-batch), and
# out-of-memory recovery: a LoRA run capped at 3/4 of an uncapped run's peak memory must halve its micro-batch and end.
set -u
out=${1:?usage: bash bench/gpu_all.sh OUT_DIR [benches] [trainers]}
shift
parts=${*:-benches trainers}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 ATELIER_CACHE="$out/cache"

part() {  # part NAME SECONDS COMMAND...: run it, keep its log, go on whatever happens
  local name=$1 limit=$2
  shift 2
  echo "== $name"
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  echo "exit $?"
  tr '\r' '\n' <"$out/$name.log" | grep -v -i -E "warn|deprecat|kernels-community|float32|it/s|s/it|Loading" \
    | grep -v "^\s*$" | tail -n 12
}

report() {  # report RUN_DIR KEY...: those keys of the run's report.json
  python3 -c "import json, sys; r = json.load(open(sys.argv[1] + '/report.json')); \
print(sys.argv[1], {k: r.get(k) for k in sys.argv[2:]})" "$@" 2>&1 | tail -n 1
}

part versions 40 python3 -c "import torch, diffusers, peft, transformers, bitsandbytes, timm; print(torch.__version__, 'timm', timm.__version__, \
torch.cuda.get_device_name(0), 'diffusers', diffusers.__version__, 'peft', peft.__version__, 'transformers', \
transformers.__version__, 'bitsandbytes', bitsandbytes.__version__)"

if [[ " $parts " == *" benches "* ]]; then
  part gpu_train 140 python3 bench/gpu_train.py
  part gpu_hair 140 python3 bench/gpu_hair.py
  part gpu_anime 40 python3 bench/gpu_anime.py
fi

if [[ " $parts " == *" trainers "* ]]; then
  data="$out/toy-data" run="$out/cuda"
  python3 -c "import sys; from pathlib import Path; from tests.conftest import render_dataset
render_dataset(Path(sys.argv[1]), 16)" "$data"
  lora=(python3 -m training.lora --preset fashion --data "$data" --profile tiny)
  part cuda_lora 60 "${lora[@]}" --output "$run-lora" --max-steps 40
  report "$run-lora" steps_per_second peak_cuda_mb micro_batch final_loss
  part cuda_anime 60 python3 -m training.anime --content "$data" --style assets/anime-styles --output "$run-anime" \
    --profile tiny --epochs 2
  report "$run-anime" final_losses peak_cuda_bytes
  part cuda_lora_256 40 "${lora[@]}" --output "$run-256" --max-steps 6 --set resolution=256 \
    --set validation_steps=0 --set checkpointing_steps=0 --set sample_steps=0
  report "$run-256" peak_cuda_mb micro_batch
  peak=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['peak_cuda_mb'])" "$run-256/report.json")
  if [ -n "$peak" ]; then
    part cuda_lora_capped 40 python3 -c "import runpy, sys, torch
total = torch.cuda.get_device_properties(0).total_memory / 2**20
torch.cuda.set_per_process_memory_fraction(0.75 * $peak / total)
sys.argv = ['training.lora'] + sys.argv[1:]
runpy.run_module('training.lora', run_name='__main__')" --preset fashion --data "$data" --profile tiny \
      --output "$run-capped" --max-steps 6 --set resolution=256 --set validation_steps=0 --set checkpointing_steps=0 \
      --set sample_steps=0
    report "$run-capped" peak_cuda_mb micro_batch final_loss
    grep -h "out of memory" "$run-capped/train.log" | head -n 3
  fi
  # hair stage 2 on toy portraits: the tiny base in fp16 on CUDA, 8-bit AdamW, LoRA + both adapters + every loss
  python3 -c "import sys; from pathlib import Path; from pipelines.hair import toy_hair
from training.prepare.hair import HairOptions, prepare_hair
root = Path(sys.argv[1]); toy_hair.write_khairstyle(root / 'images', root / 'labels', 64, seed=3)
prepare_hair(HairOptions(images=root / 'images', labels_dir=root / 'labels', out=root / 'data'), None)" "$out/hair-toy"
  part cuda_hair 90 python3 -m training.hair inpaint --data "$out/hair-toy/data" --output "$run-hair" --profile tiny \
    --set max_steps=40 --set mixed_precision=fp16
  report "$run-hair" steps_per_second peak_cuda_mb final_losses
fi
