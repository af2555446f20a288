"""The demo command line and build_info."""
import pytest
import torch

import amgp_kernels
from amgp import demo


def test_demo_runs_and_reports_speedup(capsys):
    assert demo.main(["--sizes", "32-64-64-1", "--batch", "16", "--steps", "3", "--block-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "measured training-step speedup" in out and "MLP FLOPs: " in out


@pytest.mark.parametrize("argv,message", [(["--density", "0"], "--density"), (["--sizes", "8-x"], "--sizes"),
                                          (["--steps", "-1"], "--steps"), (["--sizes", "8-1"], "--sizes")])
def test_demo_rejects_bad_flags(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        demo.parse_args(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_build_info_describes_the_build():
    info = amgp_kernels.build_info()
    assert info["torch_runtime_version"] == torch.__version__
    assert "reference" in info["available_backends"]
    assert set(info["compiled_backends"]) <= {"cpu", "cuda"}
    if info["extension_loaded"]:
        assert "cpu" in info["compiled_backends"] and info["extension_error"] is None
    if "cuda" in info["compiled_backends"]:
        assert info["cuda_archs"] and info["cuda_version"]
