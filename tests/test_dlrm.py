"""amgp.DLRM: shapes, interactions, the plain nn.Linear twin, and loading a trained AMGP model into it."""
import pytest
import torch

import amgp
from amgp.dlrm import DLRM
from amgp.schedule import GrowPruneSchedule

TABLES = [7, 11, 5]


def make(sparse=True, op="dot", itself=False):
    return DLRM(TABLES, 8, [4, 16, 8], [16, 8, 1], arch_interaction_op=op, arch_interaction_itself=itself,
                block_size=4, sparse=sparse)


def batch(rows=6):
    dense = torch.rand(rows, 4)
    sparse = torch.stack([torch.randint(0, n, (rows,)) for n in TABLES], dim=1)
    return dense, sparse


@pytest.mark.parametrize("op, itself, top_in", [("dot", False, 8 + 6), ("dot", True, 8 + 10), ("cat", False, 8 + 24)])
def test_forward_shapes_and_interaction_widths(op, itself, top_in):
    model = make(op=op, itself=itself)
    assert model.top_l.sizes[0] == top_in
    p = model(*batch())
    assert p.shape == (6,) and ((p > 0) & (p < 1)).all()


def test_dot_interaction_matches_explicit_pairwise_products():
    model = make()
    dense, sparse = batch(3)
    x = model.bot_l(dense)
    vectors = [x] + model.embed(sparse)
    expected = [torch.sum(vectors[i] * vectors[j], 1) for i in range(4) for j in range(i)]
    torch.testing.assert_close(model.interact(x, model.embed(sparse))[:, 8:], torch.stack(expected, 1))


def test_bags_of_ids_are_summed():
    model = make()
    dense, sparse = batch(2)
    bags = torch.stack([sparse, sparse], dim=2)
    single = model.embed(sparse)
    double = model.embed(bags)
    torch.testing.assert_close(double[0], 2 * single[0])


@pytest.mark.parametrize("kwargs, message", [
    (dict(arch_mlp_bot=[4, 16, 6]), "must equal arch_sparse_feature_size"),
    (dict(arch_mlp_top=[16, 2]), "end with width 1"),
    (dict(arch_interaction_op="sum"), "arch_interaction_op"),
    (dict(arch_embedding_size=[0, 3]), "arch_embedding_size"),
])
def test_bad_architecture_is_rejected(kwargs, message):
    args = dict(arch_embedding_size=TABLES, arch_sparse_feature_size=8, arch_mlp_bot=[4, 16, 8],
                arch_mlp_top=[16, 8, 1])
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        DLRM(**args)


def test_bad_inputs_name_the_argument():
    model = make()
    dense, sparse = batch()
    with pytest.raises(ValueError, match="dense_x"):
        model(dense[:, :3], sparse)
    with pytest.raises(ValueError, match="sparse_index"):
        model(dense, sparse[:, :2])


def test_trained_amgp_model_ends_full_size_and_loads_into_plain_dlrm():
    model = make()
    optimizer = torch.optim.Adagrad(model.parameters(), lr=0.05)
    schedule = GrowPruneSchedule(model, 8, optimizer, density=0.5, warmup=2, final_dense=2, dense_steps=0, cycles=1)
    for _ in range(8):
        schedule.before_step()
        dense, sparse = batch(16)
        optimizer.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(model.logits(dense, sparse),
                                                             torch.randint(0, 2, (16,)).float()).backward()
        optimizer.step()
        schedule.after_step()
    assert schedule.density == 1.0
    state = model.state_dict()
    assert not any(key.endswith("_mask") for key in state)  # full size: no masks saved
    plain = make(sparse=False)
    plain.load_state_dict(state, strict=True)
    assert not any(isinstance(m, amgp.SparseLinear) for m in plain.modules())
    dense, sparse = batch()
    torch.testing.assert_close(plain(dense, sparse), model(dense, sparse))


def test_to_dense_of_a_pruned_model_computes_the_same_function():
    model = make()
    amgp.prune_blocks(model, 0.5)
    plain = model.to_dense()
    dense, sparse = batch()
    torch.testing.assert_close(plain(dense, sparse), model(dense, sparse))
    assert isinstance(plain.top_l.layers[0], torch.nn.Linear)
