"""Bad input through an entry point: one line on stderr, exit code 2; the traceback only when verbose."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _fit(data: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run([sys.executable, "-m", "avatarpose_ns.export.fit_cli", "--data", str(data)],
                          capture_output=True, text=True, env=environment, timeout=300)


def test_a_missing_sequence_is_one_line_and_exit_code_2(tmp_path: Path):
    result = _fit(tmp_path / "missing")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"fit_cli.py: {tmp_path / 'missing'}: sequence folder not found"]


def test_verbose_shows_the_traceback(tmp_path: Path):
    result = _fit(tmp_path / "missing", AVATARPOSE_VERBOSE="1")
    assert result.returncode == 1 and "Traceback" in result.stderr and "SequenceError" in result.stderr


def test_avatarpose_train_reports_a_bad_sequence_in_one_line(tmp_path: Path):
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "avatarpose_ns.engine.train_cli", "avatarpose-lite", "--data",
                             str(tmp_path / "nope"), "--vis", "tensorboard", "--output-dir", str(tmp_path / "out")],
                            capture_output=True, text=True, env=environment, timeout=300, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not an EasyMocap/AvatarPose sequence" in lines[0], result.stderr
