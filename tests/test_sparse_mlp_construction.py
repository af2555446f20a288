"""SparseMLP's constructor arguments reach every layer, set_out_mask's range and the index lists it keeps current,
and load_state_dict's checks (unexpected keys, tied mask keys on every hidden pair, a pruned output layer)."""
import pytest
import torch

from amgp import SparseMLP


def test_constructor_arguments_reach_every_layer():
    mlp = SparseMLP([6, 8, 4], block_size=4, bias=False, dtype=torch.float64, backend="reference",
                    activation="relu", last_activation="relu")
    assert mlp.sizes == [6, 8, 4] and len(mlp.layers) == 2
    for layer in mlp.layers:
        assert layer.bias is None and layer.weight.dtype == torch.float64
        assert layer.backend == "reference" and layer.activation == "relu" and layer.block_size == 4
    default = SparseMLP([64, 64, 1])  # defaults: 32-channel blocks, ReLU hidden layers, a linear output
    assert [(layer.block_size, layer.activation, layer.bias is not None) for layer in default.layers] == [
        (32, "relu", True), (32, "none", True)]
    assert default.layers[0].packed_out and default.layers[1].packed_in
    single = SparseMLP((3, 2), block_size=2)  # one layer: input and output widths only
    assert single.sizes == [3, 2] and len(single.layers) == 1 and single.layers[0].activation == "none"
    assert single(torch.randn(5, 3)).shape == (5, 2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: on a CPU-only machine every device is the CPU")
def test_the_device_reaches_every_layer():
    mlp = SparseMLP([6, 8, 4], block_size=4, device="cuda")
    assert all(t.is_cuda for t in [*mlp.parameters(), *mlp.buffers()])


@pytest.mark.parametrize("kwargs, error, message", [
    ({"sizes": [4]}, ValueError, r"sizes must list at least 2 widths \(input and output\), got \[4\]"),
    ({"packed": "yes"}, TypeError, "^packed must be a bool, got str$"),
])
def test_bad_arguments_name_themselves(kwargs, error, message):
    with pytest.raises(error, match=message):
        SparseMLP(**{"sizes": [4, 8, 2], "block_size": 4, **kwargs})


def test_set_out_mask_covers_every_layer_and_keeps_the_next_layers_index_current():
    mlp = SparseMLP([4, 8, 8, 2], block_size=4)
    mlp.set_out_mask(1, torch.tensor([False, True]))
    # The next layer's input channels follow at once (its index list is rebuilt, not only at the next forward).
    assert mlp.layers[2].in_channel_mask.tolist() == [False] * 4 + [True] * 4
    mlp.set_out_mask(0, torch.tensor([True, False]))
    assert mlp.layers[1].in_channel_mask.tolist() == [True] * 4 + [False] * 4
    mlp.set_out_mask(2, torch.tensor([True]))  # the output layer: nothing reads it
    for bad in (3, -1):
        with pytest.raises(IndexError, match=rf"layer must be in \[0, 3\), got {bad}"):
            mlp.set_out_mask(bad, torch.tensor([True]))


def test_load_state_dict_checks_every_tied_pair_and_unexpected_keys():
    mlp = SparseMLP([4, 8, 8, 2], block_size=4)
    mlp.set_out_mask(1, torch.tensor([False, True]))
    mlp.layers[2].set_out_mask(torch.tensor([False]))  # a pruned output layer: its mask is not tied to anything
    state = mlp.state_dict()
    fresh = SparseMLP([4, 8, 8, 2], block_size=4)
    fresh.load_state_dict(state)
    assert fresh.layers[2].out_mask.tolist() == [False] and fresh.layers[2].in_mask.tolist() == [False, True]

    bad = dict(state)
    bad["layers.2.in_mask"] = torch.tensor([True, False])  # the last hidden pair disagrees
    with pytest.raises(RuntimeError, match=r"layers.1.out_mask and layers.2.in_mask are one shared mask"):
        SparseMLP([4, 8, 8, 2], block_size=4).load_state_dict(bad)
    with pytest.raises(RuntimeError, match=r"Unexpected key\(s\) in state_dict: \"bogus\""):
        SparseMLP([4, 8, 8, 2], block_size=4).load_state_dict({**state, "bogus": torch.zeros(1)})
    SparseMLP([4, 8, 8, 2], block_size=4).load_state_dict({**state, "bogus": torch.zeros(1)}, strict=False)
