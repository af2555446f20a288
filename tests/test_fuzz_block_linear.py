"""Property-based fuzzing of block_linear: every backend usable here against the reference contract.

Hypothesis draws the shapes (feature tails, empty and single-row batches, 1-D/2-D/3-D x), the block
size (1 up to wider than the layer), the masks (none, all, or any subset of blocks on either side),
the dtype (those the backend supports), the activation, the bias, the memory layout of x, weight
and bias (contiguous, transposed, strided, broadcast rows), and whether x and y are packed (active
channels only) or full-size. Each case checks the forward output and all three gradients against
amgp_kernels.reference (float64) within testing.error_bound, and that inactive outputs and gradient
blocks are exact zeros. The reference backend is also checked against the contract written out
independently (testing.contract_with_grads), not only against itself. Every backend runs with
poisoned outputs so unwritten elements show as NaN.

Runs:
  default:  pytest tests/test_fuzz_block_linear.py             (a few hundred cases per backend,
            derandomized, so CI is reproducible; AMGP_FUZZ_EXAMPLES=N overrides the count)
  long:     pytest tests/test_fuzz_block_linear.py --runslow   (adds >= 1,000 fresh random cases per
            backend; AMGP_FUZZ_LONG_EXAMPLES=N overrides)
  counts:   AMGP_FUZZ_COUNTS=path.json writes the cases actually run per backend and run kind.
"""
import json
import os
from collections import defaultdict

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from amgp_kernels import testing  # noqa: E402
from amgp_kernels.blocks import channel_mask, num_blocks  # noqa: E402
from kernel_harness import GPU, KERNELS, check_against_reference, device_of, skip_unless_available  # noqa: E402

BACKENDS = [pytest.param(backend, marks=skip_unless_available(backend)) for backend in (*KERNELS, "reference")]

# dtypes each backend implements (docs/design.md, README): float64 only on CPU, half types on CPU, CUDA and Triton.
DTYPES = {
    "cpu": [torch.float32, torch.float64, torch.bfloat16, torch.float16],
    "reference": [torch.float32, torch.float64],
    "triton": [torch.float32, torch.float16, torch.bfloat16],
    "cuda": [torch.float32, torch.float16, torch.bfloat16],
}
# Triton on the CPU runs in its interpreter (slow): tiny shapes and fewer default cases there.
MAX_FEATURES = {"triton": 40 if not GPU else 160, "cuda": 160}
MAX_BATCH = {"triton": 6 if not GPU else 24}
DEFAULT_EXAMPLES = {"triton": 200 if not GPU else 300}
LONG_EXAMPLES = int(os.environ.get("AMGP_FUZZ_LONG_EXAMPLES", "1000"))

CASES_RUN = defaultdict(lambda: defaultdict(int))  # backend -> run kind -> cases checked


@pytest.fixture(scope="module", autouse=True)
def _write_counts():
    yield
    path = os.environ.get("AMGP_FUZZ_COUNTS")
    if path:
        with open(path, "w") as f:
            json.dump({backend: dict(kinds) for backend, kinds in CASES_RUN.items()}, f, indent=2, sort_keys=True)


@st.composite
def block_lists(draw, n_blocks):
    """None (all active), an empty list (none active) or any subset, as sorted int32 indices."""
    kind = draw(st.sampled_from(["all", "none", "subset"]))
    if kind == "all":
        return None
    if kind == "none":
        return torch.empty(0, dtype=torch.int32)
    active = draw(st.lists(st.booleans(), min_size=n_blocks, max_size=n_blocks))
    return torch.tensor([i for i, on in enumerate(active) if on], dtype=torch.int32)


@st.composite
def cases(draw, backend):
    max_features = MAX_FEATURES.get(backend, 96)
    max_batch = MAX_BATCH.get(backend, 12)
    in_f = draw(st.integers(1, max_features))
    out_f = draw(st.integers(1, max_features))
    block_size = draw(st.integers(1, max(in_f, out_f) + 8))
    batch_shape = tuple(draw(st.lists(st.integers(0, max_batch), min_size=0, max_size=2)))
    return dict(
        batch_shape=batch_shape, in_f=in_f, out_f=out_f, block_size=block_size,
        in_blocks=draw(block_lists(num_blocks(in_f, block_size))),
        out_blocks=draw(block_lists(num_blocks(out_f, block_size))),
        dtype=draw(st.sampled_from(DTYPES[backend])),
        activation=draw(st.sampled_from(["none", "relu"])),
        bias=draw(st.sampled_from(["none", "contiguous", "strided"])),
        x_layout=draw(st.sampled_from(["contiguous", "transposed", "strided", "broadcast"])),
        weight_layout=draw(st.sampled_from(["contiguous", "transposed"])),
        packed_in=draw(st.booleans()),
        packed_out=draw(st.booleans()),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def _make_x(batch_shape, in_f, layout, gen, dtype):
    if layout == "transposed" and batch_shape:  # features first in memory: x.stride(-1) != 1
        return torch.randn(in_f, *batch_shape, generator=gen).to(dtype).movedim(0, -1)
    if layout == "strided":  # every other feature of a wider tensor
        return torch.randn(*batch_shape, 2 * in_f, generator=gen).to(dtype)[..., ::2]
    if layout == "broadcast" and batch_shape:  # one row repeated with stride 0
        return torch.randn(in_f, generator=gen).to(dtype).expand(*batch_shape, in_f)
    return torch.randn(*batch_shape, in_f, generator=gen).to(dtype)


def _width(blocks, features, block_size, packed):
    """An activation's width: all channels, or the active ones when packed."""
    return int(channel_mask(blocks, features, block_size).sum()) if packed else features


def _make_inputs(case, device):
    gen = torch.Generator().manual_seed(case["seed"])
    dtype, in_f, out_f, bs = case["dtype"], case["in_f"], case["out_f"], case["block_size"]
    x_width = _width(case["in_blocks"], in_f, bs, case["packed_in"])
    y_width = _width(case["out_blocks"], out_f, bs, case["packed_out"])
    x = _make_x(case["batch_shape"], x_width, case["x_layout"], gen, dtype)
    weight = torch.randn(out_f, in_f, generator=gen) / in_f ** 0.5
    if case["weight_layout"] == "transposed":
        weight = weight.t().contiguous().t()
    bias = None
    if case["bias"] != "none":
        bias = torch.randn(2 * out_f, generator=gen).to(dtype)
        bias = bias[::2] if case["bias"] == "strided" else bias[:out_f].contiguous()
    grad_y = torch.randn(*case["batch_shape"], y_width, generator=gen).to(dtype)

    def leaf(t):  # keeps the layout (strides) of t, on the device, as a leaf that wants a gradient
        return None if t is None else t.to(device=device, dtype=dtype).detach().requires_grad_()

    blocks = [None if b is None else b.to(device) for b in (case["in_blocks"], case["out_blocks"])]
    return leaf(x), leaf(weight), leaf(bias), *blocks, grad_y.to(device)


def check_case(backend, case):
    x, weight, bias, in_blocks, out_blocks, grad_y = _make_inputs(case, device_of(backend))
    bs, act = case["block_size"], case["activation"]
    packed = case["packed_in"], case["packed_out"]
    expected = check_against_reference(backend, x, weight, bias, in_blocks, out_blocks, bs, act, grad_y, *packed,
                                       reference_zeros=False)
    if backend == "reference":  # the expected values came from it too: check them against the contract itself
        contract = testing.contract_with_grads(x, weight, bias, in_blocks, out_blocks, bs, act, grad_y, *packed)
        for got, wanted, what in zip(contract, expected, ("y", "grad x", "grad weight", "grad bias")):
            if wanted is not None:
                testing.assert_close_to_reference(got, wanted, torch.float64, f"contract {what}")


def fuzz(backend, max_examples, kind, derandomize):
    @settings(max_examples=max_examples, deadline=None, derandomize=derandomize, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(case=cases(backend))
    def run(case):
        check_case(backend, case)
        CASES_RUN[backend][kind] += 1

    run()
    assert CASES_RUN[backend][kind] >= max_examples * 0.9, "hypothesis ran far fewer cases than asked"


@pytest.mark.parametrize("backend", BACKENDS)
def test_fuzz_matches_reference(backend):
    default = DEFAULT_EXAMPLES.get(backend, 250)
    fuzz(backend, int(os.environ.get("AMGP_FUZZ_EXAMPLES", default)), "default", derandomize=True)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_fuzz_matches_reference_long(backend):
    fuzz(backend, LONG_EXAMPLES, "long", derandomize=False)
