#!/bin/bash
# Train the detectors (a job array), then compare them once every training succeeded.
#   bash slurm/submit_all.sh --epochs 50
#   bash slurm/submit_all.sh            # again after a time limit or preemption: runs with a last.pth go on
# Environment: MODELS (default "simple deeper vgg resnet"), OUTPUT_DIR (output), REPORT_DIR (doc).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p output/logs
read -r -a models <<< "${MODELS:-simple deeper vgg resnet}"
array=$(sbatch --parsable --array=0-$((${#models[@]} - 1)) slurm/train_all.sbatch "$@")
compare=$(sbatch --parsable --dependency=afterok:"${array%%;*}" slurm/compare.sbatch)
echo "training: job array $array (output/logs/cvpr-train-all-${array%%;*}_*.out)"
echo "comparison: job $compare, starts when the trainings succeed (output/logs/cvpr-compare-$compare.out)"
