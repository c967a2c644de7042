"""The GPU check (benchmarks/gpu_check.py) in its tiny mode, on the CPU: every stage runs, the folder
it writes holds at most eight files, and the summary names the machine and each stage's outcome. So the
check is known to work before a GPU is at hand."""

from __future__ import annotations

import tarfile

import pytest

from conftest import run_script


def test_the_gpu_check_runs_whole_in_its_tiny_mode(tmp_path):
    out = tmp_path / "check"
    done = run_script("-m", "benchmarks.gpu_check", str(out), "--tiny", timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    for stage in ("versions", "dataset", "cuda tests", "benchmark", "plan"):
        assert f"[gpu-check] {stage}" in done.stdout or stage == "versions"
    written = sorted(p.name for p in out.iterdir())
    assert written == ["benchmark-gpu.md", "gpu-check.md", "logs.tar.gz", "report.md", "report.pdf", "versions.txt"]
    summary = (out / "gpu-check.md").read_text()
    assert "torch " in summary and "| plan | ok |" in summary and "| benchmark | ok |" in summary
    assert "| the full plan, report included | ≤ 10 min |" in summary
    with tarfile.open(out / "logs.tar.gz") as archive:
        names = archive.getnames()
    assert "logs/plan.log" in names and any(n.startswith("histories/") for n in names)
    refused = run_script("-m", "benchmarks.gpu_check", str(out), "--tiny")
    assert refused.returncode == 1 and "not empty" in refused.stderr


def test_the_gpu_check_refuses_a_machine_without_a_gpu(tmp_path, capsys):
    import torch

    from benchmarks import gpu_check

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    assert gpu_check.main([str(tmp_path / "check")]) == 1 and not (tmp_path / "check").exists()
    assert "the check measures a CUDA GPU" in capsys.readouterr().err
