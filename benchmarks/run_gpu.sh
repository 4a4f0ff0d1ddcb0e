#!/usr/bin/env bash
# Every GPU figure of benchmarks/README.md in one go, most important first, each part under its
# own time limit so that one slow part cannot cost the others. Results go to $OUT (default
# ./bench-gpu) as JSON and logs. On an H200 the parts after packing-* take about 13 minutes (the
# limits are sized from a measured run; the packing-* limits are guesses, not yet measured), so
# a 15-minute device session should run PARTS="packing-8b packing-1.3b" first, the rest later.
#   bash benchmarks/run_gpu.sh                          # on a CUDA machine, every part
#   PARTS="packing-8b packing-1.3b" bash benchmarks/run_gpu.sh   # padding-free paths first
#   PARTS="train-8b curve-1.3b" bash benchmarks/run_gpu.sh
#   TINY=1 bash benchmarks/run_gpu.sh                   # any machine, tiny shapes: every part runs
set -u
cd "$(dirname "$0")/.."
out=${OUT:-bench-gpu}
mkdir -p "$out"
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
tiny=${TINY:+--tiny}
parts=${PARTS:-packing-8b packing-1.3b train-1.3b train-8b curve-1.3b embed-8b embed-1.3b}
part() {  # part NAME SECONDS COMMAND...: run one part, keep its log, go on whatever it does
    local name=$1 limit=$2; shift 2
    [[ " $parts " == *" $name "* ]] || return 0
    echo "== $name (limit ${limit}s)"
    timeout "$limit" "$@" 2>&1 | grep -v -i "warn" | tee "$out/$name.log"
    echo "== $name: exit ${PIPESTATUS[0]}"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
# Packed (varlen, mask, flex, flex+liger when liger-kernel is installed, flex+compile) against
# padded embedding and training, one process per shape (bench_packing.py).
part packing-8b 300 python3 benchmarks/bench_packing.py $tiny --shape llama3-8b --n 1024 --warm 1 --steps 1 --json "$out/packing-8b.json"
part packing-1.3b 200 python3 benchmarks/bench_packing.py $tiny --shape sheared-1.3b --n 1024 --warm 1 --steps 2 --json "$out/packing-1.3b.json"
part train-1.3b 170 python3 benchmarks/bench_train_gpu.py $tiny --shape sheared-1.3b --warm 1 --steps 3 --json "$out/train-1.3b.json"
part train-8b 300 python3 benchmarks/bench_train_gpu.py $tiny --shape llama3-8b --warm 1 --steps 2 --json "$out/train-8b.json"
part curve-1.3b 150 python3 benchmarks/bench_train_gpu.py $tiny --shape sheared-1.3b --curve 20 --curve-batch 16 --json "$out/curve-1.3b.json"
part embed-8b 120 python3 benchmarks/bench_embed.py --gpu $tiny --shape llama3-8b --n 2048 --repeats 1
part embed-1.3b 60 python3 benchmarks/bench_embed.py --gpu $tiny --shape sheared-1.3b --n 2048 --repeats 1
