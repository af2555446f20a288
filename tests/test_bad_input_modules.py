"""Bad input through the modules and the command lines: a clear exception naming the argument (or an
argparse error naming the flag, exit code 2), never a traceback or a silently wrong model.
The op's own classes are in test_bad_input.py."""
import subprocess
import sys

import pytest
import torch

from amgp import SparseLinear, SparseMLP
from amgp import demo


def layer():
    return SparseLinear(16, 32, block_size=8)  # 2 input blocks, 4 output blocks


MASK_CASES = {
    "too short": (torch.ones(3, dtype=torch.bool), ValueError, r"must have shape \(4,\)"),
    "too long": (torch.ones(5, dtype=torch.bool), ValueError, r"must have shape \(4,\)"),
    "2-D": (torch.ones(2, 2, dtype=torch.bool), ValueError, r"must have shape \(4,\)"),
    "float": (torch.ones(4), TypeError, "must be a bool tensor"),
    "int64": (torch.ones(4, dtype=torch.int64), TypeError, "must be a bool tensor"),
    "uint8": (torch.ones(4, dtype=torch.uint8), TypeError, "must be a bool tensor"),
    "string": ("1111", TypeError, "must be a bool tensor or a sequence of bools"),
    "None": (None, TypeError, "must be a bool tensor or a sequence of bools"),
    "ragged list": ([[True], [True, False]], TypeError, "must be a bool tensor or a sequence of bools"),
}


@pytest.mark.parametrize("case", MASK_CASES)
def test_sparse_linear_rejects_bad_out_mask(case):
    mask, error, message = MASK_CASES[case]
    model = layer()
    with pytest.raises(error, match=f"out_mask {message}"):
        model.set_out_mask(mask)
    assert bool(model.out_mask.all()) and model.out_index is None  # unchanged


@pytest.mark.parametrize("mask,error", [(torch.ones(4, dtype=torch.bool), ValueError), (torch.ones(2), TypeError)])
def test_sparse_linear_rejects_bad_in_mask(mask, error):
    with pytest.raises(error, match="in_mask"):
        layer().set_in_mask(mask)


@pytest.mark.parametrize("case", ["too short", "float", "None"])
def test_sparse_mlp_rejects_bad_mask(case):
    mask, error, message = MASK_CASES[case]
    model = SparseMLP([16, 32, 32, 4], block_size=8)
    with pytest.raises(error, match=f"out_mask {message}"):
        model.set_out_mask(0, mask)
    with pytest.raises(IndexError, match=r"layer must be in \[0, 3\)"):
        model.set_out_mask(3, torch.ones(1, dtype=torch.bool))


CONSTRUCTOR_CASES = {
    "in_features 0": (lambda: SparseLinear(0, 8), ValueError, "in_features must be a positive int"),
    "out_features float": (lambda: SparseLinear(8, 8.5), ValueError, "out_features must be a positive int"),
    "block_size 0": (lambda: SparseLinear(8, 8, block_size=0), ValueError, "block_size must be a positive int"),
    "block_size bool": (lambda: SparseLinear(8, 8, block_size=True), ValueError, "block_size must be a positive"),
    "activation": (lambda: SparseLinear(8, 8, activation="gelu"), ValueError, "activation must be"),
    "backend": (lambda: SparseLinear(8, 8, backend="gpu"), ValueError, "backend must be one of"),
    "mlp one width": (lambda: SparseMLP([16]), ValueError, "sizes must list at least 2 widths"),
    "mlp zero width": (lambda: SparseMLP([16, 0, 4]), ValueError, "out_features must be a positive int"),
    "mlp activation": (lambda: SparseMLP([16, 8, 4], last_activation="sigmoid"), ValueError, "activation must"),
}


@pytest.mark.parametrize("case", CONSTRUCTOR_CASES)
def test_constructors_reject(case):
    build, error, message = CONSTRUCTOR_CASES[case]
    with pytest.raises(error, match=message):
        build()


@pytest.mark.parametrize("x,error,message", [
    (torch.randn(3, 17), ValueError, r"x.shape\[-1\] \(17\) must equal"),
    (torch.randn(3, 16, dtype=torch.float64), TypeError, "weight dtype torch.float32 differs from x dtype"),
    (torch.ones(3, 16, dtype=torch.int64), TypeError, "x dtype torch.int64 is not supported"),
    (torch.tensor(1.0), ValueError, "x must have at least 1 dimension"),
])
def test_forward_rejects_bad_x(x, error, message):
    for model in (layer(), SparseMLP([16, 32, 4], block_size=8)):
        with pytest.raises(error, match=message):
            model(x)


def pruned_state():
    model = layer()
    model.set_out_mask(torch.tensor([True, False, True, True]))
    return model.state_dict()


@pytest.mark.parametrize("value,message", [
    (torch.ones(3, dtype=torch.bool), "size mismatch for out_mask"),
    (torch.ones(4, dtype=torch.float32), "out_mask must be a bool mask, got dtype torch.float32"),
    (torch.ones(4, dtype=torch.uint8), "out_mask must be a bool mask, got dtype torch.uint8"),
])
def test_load_state_dict_rejects_bad_mask(value, message):
    state = pruned_state()
    state["out_mask"] = value
    model = layer()
    with pytest.raises(RuntimeError, match=message):
        model.load_state_dict(state)


def test_sparse_mlp_load_rejects_disagreeing_tied_masks():
    source = SparseMLP([16, 32, 32, 4], block_size=8)
    source.set_out_mask(0, torch.tensor([True, False, True, True]))
    state = source.state_dict()
    state["layers.1.in_mask"] = torch.tensor([True, True, False, True])
    with pytest.raises(RuntimeError, match="layers.0.out_mask and layers.1.in_mask are one shared mask"):
        SparseMLP([16, 32, 32, 4], block_size=8).load_state_dict(state)
    del state["layers.1.in_mask"]  # absent = all-active: still disagrees with the pruned out_mask
    with pytest.raises(RuntimeError, match="one shared mask"):
        SparseMLP([16, 32, 32, 4], block_size=8).load_state_dict(state)
    target = SparseMLP([16, 32, 32, 4], block_size=8)  # a consistent state loads
    target.load_state_dict(source.state_dict())
    assert torch.equal(target.layers[1].in_mask, source.layers[0].out_mask)


# ----- command lines ---------------------------------------------------------------------------
DEMO_FLAGS = {
    "batch zero": (["--batch", "0"], "--batch"),
    "batch text": (["--batch", "many"], "--batch"),
    "steps negative": (["--steps", "-3"], "--steps"),
    "density above 1": (["--density", "1.5"], "--density"),
    "density zero": (["--density", "0"], "--density"),
    "density nan": (["--density", "nan"], "--density"),
    "density text": (["--density", "half"], "--density"),
    "block size zero": (["--block-size", "0"], "--block-size"),
    "backend unknown": (["--backend", "gpu"], "--backend"),
    "sizes text": (["--sizes", "a-b-c"], "--sizes"),
    "sizes too few": (["--sizes", "16-1"], "--sizes"),
    "sizes zero width": (["--sizes", "16-0-1"], "--sizes"),
    "seed text": (["--seed", "x"], "--seed"),
    "backend not runnable on the CPU": (["--backend", "cuda"], "--backend cuda"),
    "unknown flag": (["--bogus"], "--bogus"),
}


@pytest.mark.parametrize("case", DEMO_FLAGS)
def test_demo_flags_give_argparse_errors(case, capsys):
    argv, flag = DEMO_FLAGS[case]
    with pytest.raises(SystemExit) as exit_info:
        demo.parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err


def test_demo_bad_flag_in_a_real_process_exits_2_without_traceback():
    result = subprocess.run([sys.executable, "-m", "amgp.demo", "--density", "2"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert "--density" in result.stderr and "Traceback" not in result.stderr


DLRM_TINY = ["--arch-sparse-feature-size", "8", "--arch-embedding-size", "50-40", "--arch-mlp-bot", "13-16-8",
             "--arch-mlp-top", "16-1", "--mini-batch-size", "32", "--num-batches", "4", "--num-test-batches", "1",
             "--block-size", "8", "--no-progress"]
DLRM_BAD = {  # flags that parse but cannot run: exit code 2 and a message naming the problem
    "bottom width vs embedding size": (["--arch-mlp-bot", "13-16-12"], "--arch-mlp-bot (12) must equal"),
    "top does not end in 1": (["--arch-mlp-top", "16-2"], "--arch-mlp-top must end with width 1"),
    "unknown layer prefix": (["--amgp-layers", "nothere"], "match no prunable layer"),
    "missing checkpoint": (["--load-model", "/nonexistent/ckpt.pt"], "--load-model /nonexistent/ckpt.pt: no such file"),
    "missing data file": (["--data-generation", "dataset", "--raw-data-file", "/nonexistent/day.txt"],
                          "/nonexistent/day.txt"),
    "backend not runnable here": (["--backend", "cuda"], "--backend cuda"),
    "block size zero": (["--block-size", "0"], "--block-size"),
    "table of zero rows": (["--arch-embedding-size", "0-3"], "--arch-embedding-size"),
}


@pytest.mark.parametrize("case", DLRM_BAD)
def test_amgp_dlrm_bad_values_exit_2_with_a_message(case, capsys):
    from amgp.cli.dlrm import main

    extra, message = DLRM_BAD[case]
    try:  # any other exception escapes and fails the test: a user would have seen a traceback
        code = main([*DLRM_TINY, *extra])
    except SystemExit as exit_info:
        code = exit_info.code
    assert code == 2
    assert message in capsys.readouterr().err
