#!/usr/bin/env bash
# Issue 4, section 6: every sampler on two task spaces, 10 seeds each, equal
# environment-step budgets. Regenerates reports/mpts-pendulum and reports/mpts-acrobot
# (finished runs under REPORTS/*/runs are reused, so a stopped run continues).
#   bash benchmarks/mpts_results.sh [REPORTS_FOLDER] [PENDULUM_WORKERS] [ACROBOT_WORKERS]
# The two comparisons run side by side; give them the machine's cores between them.
set -euo pipefail
out=${1:-reports}
pendulum_workers=${2:-1}
acrobot_workers=${3:-1}
"${PYTHON:-python}" -m edgeloop compare --task-space pendulum \
  --samplers erm,drm,gdrm,mpts,mpts+div,mpts+regret,mpts+div+regret \
  --seeds 10 --steps 300000 --grid 10 --episodes 10 \
  --workers "$pendulum_workers" -o "$out/mpts-pendulum" &
pendulum=$!
"${PYTHON:-python}" -m edgeloop compare --task-space acrobot --set gamma=0.99 \
  --samplers erm,drm,gdrm,mpts,mpts+div+regret \
  --seeds 10 --steps 300000 --grid 10 --episodes 10 \
  --workers "$acrobot_workers" -o "$out/mpts-acrobot" &
acrobot=$!
wait "$pendulum"
wait "$acrobot"
