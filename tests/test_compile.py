"""SparseLinear / SparseMLP / DLRM under torch.compile(fullgraph=True, backend="inductor") train exactly like
eager across mask changes, and mask changes cost at most one recompile per distinct index signature.

What recompiles (measured with torch 2.14): the compiled graph guards on each layer's cached index
lists `out_index` / `in_index`: None (all blocks active) versus a tensor, and the tensor's length (nn
module buffers get static shapes; dynamo does not make them dynamic even when marked). So the first
time a model runs with a new combination of active-block counts it compiles once; any later mask
with the same counts (different blocks, or a count seen before) reuses the cached graph. An AMGP
schedule alternating dense and pruned-to-density-d phases compiles twice in all. Schedules with more
than torch._dynamo.config.recompile_limit (default 8) distinct combinations must raise that limit.

Masks must change through set_out_mask / set_in_mask / prune_blocks (or call refresh_indices() after
an in-place edit of a mask buffer): a compiled forward cannot rebuild indices (that reads the mask on
the host), so it uses the cached ones.
"""
import pytest
import torch

import amgp
from amgp import DLRM, GrowPruneSchedule, SparseLinear, SparseMLP, prune_blocks

testing_mod = pytest.importorskip("torch._dynamo.testing")
BACKEND = "inductor"


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def compiled(fn):
    """(compiled module or function, counter of frames compiled) with the inductor backend, fullgraph."""
    counter = testing_mod.CompileCounterWithBackend(BACKEND)
    return torch.compile(fn, fullgraph=True, backend=counter), counter


def train_step(model, optimizer, x, target):
    optimizer.zero_grad(set_to_none=True)
    loss = torch.nn.functional.mse_loss(model(x), target)
    loss.backward()
    optimizer.step()
    return loss.detach()


def assert_same_state(eager, other):
    expected, actual = eager.state_dict(), other.state_dict()
    assert sorted(actual) == sorted(expected)  # the same keys (a pruned layer's state_dict holds its masks)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], atol=1e-5, rtol=1e-5, msg=lambda m: f"{name}: {m}")


def block_mask(n, active):
    mask = torch.zeros(n, dtype=torch.bool)
    mask[list(active)] = True
    return mask


def test_sparse_linear_trains_like_eager_across_mask_changes():
    torch.manual_seed(0)
    eager = SparseLinear(24, 40, block_size=8, activation="relu")
    model = SparseLinear(24, 40, block_size=8, activation="relu")
    model.load_state_dict(eager.state_dict())
    opt_eager = torch.optim.SGD(eager.parameters(), lr=0.05, momentum=0.9)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    fast, counter = compiled(model)
    x, target = torch.randn(16, 24), torch.randn(16, 40)

    # (out blocks active, in blocks active, frames compiled so far): None = all active.
    phases = [
        (None, None, 1),
        ([0, 2, 4], None, 2),         # first pruned out_index (length 3)
        ([1, 2, 3], None, 2),         # other blocks, same count: no recompile
        ([0, 4], [1, 2], 3),          # new lengths (2, 2)
        (None, None, 3),              # grown back to dense: the first graph again
        ([1, 3, 4], None, 3),         # count seen before
        ([0, 3], [0, 2], 3),
    ]
    for out_active, in_active, frames in phases:
        for layer in (eager, model):
            layer.set_out_mask(torch.ones(5, dtype=torch.bool) if out_active is None else block_mask(5, out_active))
            layer.set_in_mask(torch.ones(3, dtype=torch.bool) if in_active is None else block_mask(3, in_active))
        for _ in range(2):
            loss_eager = train_step(eager, opt_eager, x, target)
            loss = train_step(fast, opt, x, target)
            torch.testing.assert_close(loss, loss_eager, atol=1e-5, rtol=1e-5)
        assert_same_state(eager, model)
        assert counter.frame_count == frames, (out_active, in_active, counter.frame_count)


def test_sparse_mlp_prune_grow_cycles_compile_twice():
    torch.manual_seed(1)
    eager = SparseMLP([16, 32, 32, 4], block_size=8)
    model = SparseMLP([16, 32, 32, 4], block_size=8)
    assert model.layers[0].packed_out and model.layers[1].packed_in  # hidden activations are packed
    model.load_state_dict(eager.state_dict())
    opt_eager = torch.optim.Adam(eager.parameters(), lr=1e-2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    fast, counter = compiled(model)
    x, target = torch.randn(32, 16), torch.randn(32, 4)

    for cycle in range(3):
        for _ in range(2):  # dense phase
            torch.testing.assert_close(train_step(fast, opt, x, target), train_step(eager, opt_eager, x, target),
                                       atol=1e-5, rtol=1e-5)
        for m, o in ((eager, opt_eager), (model, opt)):
            prune_blocks(m, 0.5, o)
        assert torch.equal(model.layers[0].out_mask, eager.layers[0].out_mask)
        for _ in range(2):  # pruned phase
            torch.testing.assert_close(train_step(fast, opt, x, target), train_step(eager, opt_eager, x, target),
                                       atol=1e-5, rtol=1e-5)
        assert_same_state(eager, model)
        for m in (eager, model):  # grow every hidden block back
            for i in range(len(m.layers) - 1):
                m.set_out_mask(i, torch.ones(m.layers[i].n_out_blocks, dtype=torch.bool))
    # dense + pruned-at-0.5: two graphs however many cycles, whichever blocks were pruned.
    assert counter.frame_count == 2


def test_in_place_mask_edit_is_seen_after_refresh_indices():
    torch.manual_seed(2)
    layer = SparseLinear(16, 32, block_size=8)
    fast, _ = compiled(layer)
    x = torch.randn(4, 16)
    fast(x)
    with torch.no_grad():
        layer.out_mask[1] = False  # in place: the compiled forward cannot notice this by itself
    layer.refresh_indices()
    y = fast(x)
    assert torch.equal(y[:, 8:16], torch.zeros(4, 8))
    torch.testing.assert_close(y, amgp.block_linear(x, layer.weight, layer.bias, None, layer.out_index, 8).detach())


def test_dlrm_under_grow_prune_schedule_trains_like_eager():
    def build():
        torch.manual_seed(3)
        model = DLRM([30, 20, 10], 8, [13, 32, 8], [32, 16, 1], block_size=8)
        optimizer = torch.optim.Adagrad(model.parameters(), lr=0.05)
        # Steps 0..15: warmup 3, sparse 3, dense 2, sparse 3, dense 2... final 3.
        schedule = GrowPruneSchedule(model, 16, optimizer, density=0.5, warmup=3, final_dense=3, dense_steps=2,
                                     cycles=2)
        return model, optimizer, schedule

    eager, opt_eager, schedule_eager = build()
    model, opt, schedule = build()
    fast, counter = compiled(model.logits)
    gen = torch.Generator().manual_seed(4)
    changes = 0
    for step in range(16):
        dense = torch.randn(32, 13, generator=gen)
        sparse = torch.stack([torch.randint(0, n, (32,), generator=gen) for n in (30, 20, 10)], dim=1)
        label = torch.randint(0, 2, (32,), generator=gen).float()
        changes += schedule.before_step() is not None
        schedule_eager.before_step()
        losses = []
        for logits, optimizer in ((eager.logits, opt_eager), (fast, opt)):
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits(dense, sparse), label)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        torch.testing.assert_close(losses[1], losses[0], atol=1e-5, rtol=1e-5)
        schedule.after_step()
        schedule_eager.after_step()
    assert_same_state(eager, model)
    assert changes >= 5  # warmup, sparse, dense, sparse, final: prune/grow twice
    assert counter.frame_count == 2  # dense and pruned-at-0.5, whichever blocks each sparse phase keeps
