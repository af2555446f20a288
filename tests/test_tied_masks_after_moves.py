"""A consumer stays tied to its producer's mask after a device / dtype move, whichever of the two the model
registers first, including moves that replace the bool mask buffers (meta, to_empty): pruning the producer
afterwards still removes the channels from the consumer's input."""
import pytest
import torch
from torch import nn

from amgp import SparseLinear


class Pair(nn.Module):
    """producer -> ReLU -> consumer; `consumer_first` registers (and so moves) the consumer first."""

    def __init__(self, consumer_first):
        super().__init__()
        torch.manual_seed(0)
        producer, consumer = SparseLinear(6, 16, block_size=4), SparseLinear(16, 3, block_size=4)
        order = [("consumer", consumer), ("producer", producer)] if consumer_first else [
            ("producer", producer), ("consumer", consumer)]
        for name, layer in order:
            self.add_module(name, layer)
        consumer.tie_in_mask(producer)

    def forward(self, x):
        return self.consumer(torch.relu(self.producer(x)))


def materialize(model, state):
    """Meta-device or to_empty models are given real values again, as a user would (load_state_dict)."""
    model.load_state_dict(state)
    return model


MOVES = {
    "float64": lambda model, state: model.to(torch.float64),
    "meta": lambda model, state: model.to("meta"),
    "to_empty": lambda model, state: materialize(model.to_empty(device="cpu"), state),
    "meta_then_to_empty": lambda model, state: materialize(model.to("meta").to_empty(device="cpu"), state),
}


@pytest.mark.parametrize("consumer_first", [False, True], ids=["producer_first", "consumer_first"])
@pytest.mark.parametrize("move", list(MOVES))
def test_consumer_follows_the_producer_mask_after_a_move(move, consumer_first):
    model = Pair(consumer_first)
    model.producer.set_out_mask(torch.tensor([True, False, True, True]))
    state = model.state_dict()
    moved = MOVES[move](model, state)
    producer, consumer = moved.producer, moved.consumer
    assert consumer.in_mask is producer.out_mask
    assert consumer.mask_producer is producer and producer.mask_consumers == (consumer,)
    if producer.out_mask.is_meta:
        return  # nothing to compute on the meta device; the tie is what a later to_empty keeps

    # Pruning another producer block after the move also removes that channel from the consumer's input.
    assert consumer.in_mask.tolist() == [True, False, True, True]
    producer.set_out_mask(torch.tensor([False, True, True, False]))
    assert consumer.in_mask.tolist() == [False, True, True, False]
    assert consumer.density == 0.5  # 2 of its 4 input blocks
    assert "consumer.in_mask" in moved.state_dict() and "producer.out_mask" in moved.state_dict()
    x = torch.randn(5, 6, dtype=producer.weight.dtype)
    reference = moved.consumer.to_linear()(torch.relu(moved.producer.to_linear()(x)))
    torch.testing.assert_close(moved(x), reference)
    # A consumer still reading the old mask would see channel 0..3 alive: its weights there would count.
    with torch.no_grad():
        consumer.weight[:, :4] = 1e3
    torch.testing.assert_close(moved(x), reference)


def test_the_consumers_channel_masks_follow_the_producer_at_once():
    """Pruning the producer shows in the consumer's in_channel_mask and weight_mask without a forward between."""
    pair = Pair(consumer_first=False)
    pair.producer.set_out_mask(torch.tensor([True, False, True, False]))
    expected = torch.tensor([True] * 4 + [False] * 4 + [True] * 4 + [False] * 4)
    assert torch.equal(pair.consumer.in_channel_mask, expected)
    assert torch.equal(pair.consumer.weight_mask, expected.expand(3, 16))
    pair.producer.out_mask[1] = True  # an in-place edit of the shared mask, too
    assert bool(pair.consumer.in_channel_mask[4:8].all())
