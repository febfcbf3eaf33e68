"""Evaluation: the paper's protocol and Table 1 metrics (docs/evaluation.md).

- `protocol`: held-out 360° clips → perspective inputs along trajectories + ground truth
  (`python -m model.eval.protocol`);
- `evaluate`: generated panoramas scored against that ground truth (`python -m model.eval.evaluate`);
- `metrics`: PSNR, LPIPS, FVD and the VBench-style scores; `lines`: line consistency (EA-score).
"""
