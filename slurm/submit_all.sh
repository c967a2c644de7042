#!/bin/bash
# Train the four detectors (a job array), then compare them once all four succeeded.
#   bash slurm/submit_all.sh --epochs 50
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p output/logs
array=$(sbatch --parsable slurm/train_all.sbatch "$@")
compare=$(sbatch --parsable --dependency=afterok:"${array%%;*}" slurm/compare.sbatch)
echo "training: job array $array (output/logs/cvpr-train-all-${array%%;*}_*.out)"
echo "comparison: job $compare, starts when the four trainings succeed (output/logs/cvpr-compare-$compare.out)"
