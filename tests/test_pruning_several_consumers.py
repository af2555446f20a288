"""A layer read by several tied consumers: which of its blocks are pruned depends on every consumer's weights
(block magnitude = incoming norm x the norm of the weights of all consumers that read the block)."""
import pytest
import torch
from torch import nn

from amgp import BlockPruner, prune_blocks, sparsify

# Squared column norm per trunk block, as read by each head. Alone, head_a would keep blocks {0, 2} and
# head_b blocks {1, 3}; together (a + b = 10, 10, 6, 6) the trunk keeps {0, 1}.
HEAD_A = [10.0, 0.0, 6.0, 0.0]
HEAD_B = [0.0, 10.0, 0.0, 6.0]


class TwoHeads(nn.Module):
    def __init__(self, first, second):
        super().__init__()
        self.trunk, self.head_a, self.head_b = nn.Linear(5, 16), nn.Linear(16, 3), nn.Linear(16, 2)
        with torch.no_grad():
            self.trunk.weight.fill_(1.0), self.trunk.bias.fill_(1.0)  # every trunk block scores alike
            for head, per_block in ((self.head_a, first), (self.head_b, second)):
                rows, block = head.out_features, 4
                column = (torch.tensor(per_block) / (rows * block)).sqrt().repeat_interleave(block)
                head.weight.copy_(column.expand(rows, -1))

    def forward(self, x):
        hidden = torch.relu(self.trunk(x))
        return self.head_a(hidden).sum(-1) + self.head_b(hidden).sum(-1)


def sparsified(first, second):
    return sparsify(TwoHeads(first, second), block_size=4, chains=[["trunk", "head_a"], ["trunk", "head_b"]])


def kept_by_prune_blocks(model):
    prune_blocks(model, 0.5)
    return model.trunk.out_mask.tolist()


def kept_by_block_pruner(model):
    BlockPruner(model, density=0.5).update(sparse=True, step=0)
    return model.trunk.out_mask.tolist()


@pytest.mark.parametrize("prune", [kept_by_prune_blocks, kept_by_block_pruner])
def test_the_blocks_kept_are_the_best_for_all_consumers_together(prune):
    assert prune(sparsified(HEAD_A, HEAD_B)) == [True, True, False, False]
    # Which consumer is named first does not matter.
    assert prune(sparsified(HEAD_B, HEAD_A)) == [True, True, False, False]
    # Each consumer's weights count: with the other head uniform, each one alone decides.
    assert prune(sparsified(HEAD_A, [1.0] * 4)) == [True, False, True, False]
    assert prune(sparsified([1.0] * 4, HEAD_B)) == [False, True, False, True]
    # And the trunk's own incoming weights count too.
    model = sparsified([1.0] * 4, [1.0] * 4)
    with torch.no_grad():
        model.trunk.weight[8:12] *= 3
        model.trunk.bias[12:] *= 5
    assert prune(model) == [False, False, True, True]
