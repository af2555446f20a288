"""Built-in synthetic click-through-rate data: learnable, deterministic, generated on the fly.

13 dense features (log(1+count)-like values) and 26 categorical features whose ids follow a
power law (Zipf) over each table, labels drawn from a fixed-seed teacher model: a small ReLU net
of the dense features, a scalar effect per category and dot products of low-dimensional teacher
embeddings (the structure a DLRM can learn), with its bias calibrated to the requested positive
rate. The teacher (and the feature distribution) is the task: it comes from `teacher_seed` and stays
fixed when `seed` changes; `seed` draws the samples. Batch i of a split is a pure function of (seed,
day, split, i): no download, no files, and any batch can be regenerated (so a resumed run sees the same data).

Recurring training ("the next day"): day k's teacher is day k-1's with every parameter p replaced by
sqrt(1 - drift^2) * p + drift * q, q a fresh draw of the same distribution, so each parameter keeps its
distribution and correlates sqrt(1 - drift^2) with the day before (drift 0.3: 0.954); the bias is
recalibrated to the same positive rate. Features keep their distribution; day k's samples are new draws.
"""
import torch

from amgp_kernels.checks import check_int

from .batches import Batch

# 26 table sizes from 4 to 20000 rows, spread geometrically (Criteo-like mix of tiny and large tables).
DEFAULT_TABLE_SIZES = [round(4 * (5000 ** (i / 25))) for i in range(26)]

_TRAIN, _TEST, _TEACHER, _CALIBRATE, _DRIFT, _DEEP = 1, 2, 3, 4, 5, 6
TASKS = ("default", "capacity")


def _generator(*parts):
    """A CPU generator seeded by a fixed mix of integers (stable across processes and versions)."""
    seed = 0
    for part in parts:
        seed = (seed * 1_000_003 + int(part)) % (2**61 - 1)
    return torch.Generator().manual_seed(seed)


class _Teacher:
    """The fixed-seed labelling model. Per-table parameters are stored concatenated (rows of
    table t start at offsets[t]) so a batch needs one gather, not one per table."""

    PARAMETERS = ("w1", "b1", "w2", "effects", "vectors", "dense_to_vector")

    def __init__(self, generator, num_dense, table_sizes, offsets, dim=4, hidden=16):
        g = generator
        self.offsets = offsets
        self.w1 = torch.randn(num_dense, hidden, generator=g) / num_dense ** 0.5
        self.b1 = torch.randn(hidden, generator=g) * 0.5
        self.w2 = torch.randn(hidden, generator=g) / hidden ** 0.5
        # Effects shrink with the table index so a few features matter most, as in real CTR data.
        scale = torch.cat([torch.full((n,), 0.7 * 0.93 ** t) for t, n in enumerate(table_sizes)])
        self.effects = torch.randn(scale.numel(), generator=g) * scale
        self.vectors = torch.randn(scale.numel(), dim, generator=g) * (scale[:, None] / dim) ** 0.5
        self.dense_to_vector = torch.randn(num_dense, dim, generator=g) / num_dense ** 0.5
        self.bias = 0.0
        self.deep = []  # names of the capacity task's deep-net parameters (add_deep_net)

    def add_deep_net(self, generator, dense_sample, widths, gain):
        """The capacity task's extra term: gain x a random ReLU net num_dense -> widths -> 1 of the
        dense features standardised by `dense_sample`'s mean and spread (see SyntheticCTR). He-scaled
        layers keep every layer's output spread near 1, so `gain` is about the term's logit spread."""
        self.dense_center, self.dense_scale = dense_sample.mean(0), dense_sample.std(0)
        sizes = [dense_sample.shape[1], *widths, 1]
        for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
            last = i == len(sizes) - 2
            setattr(self, f"deep_w{i}", torch.randn(fan_in, fan_out, generator=generator)
                    * ((1 if last else 2) / fan_in) ** 0.5 * (gain if last else 1))
            setattr(self, f"deep_b{i}", torch.zeros(fan_out) if last else torch.randn(fan_out, generator=generator) * 0.5)
            self.deep += [f"deep_w{i}", f"deep_b{i}"]

    def _deep_logits(self, dense):
        x = dense
        for i in range(len(self.deep) // 2):
            x = x @ getattr(self, f"deep_w{i}") + getattr(self, f"deep_b{i}")
            if 2 * i + 2 < len(self.deep):
                x = torch.relu(x)
        return x[:, 0]

    def drift_(self, fresh, drift):
        """Move to the next day: p <- sqrt(1 - drift^2) p + drift q for each parameter, q from `fresh`
        (a teacher drawn the same way), so the parameters keep their distribution."""
        keep = (1 - drift ** 2) ** 0.5
        for name in (*self.PARAMETERS, *self.deep):
            setattr(self, name, keep * getattr(self, name) + drift * getattr(fresh, name))

    def logits(self, dense, sparse):
        rows = sparse + self.offsets
        out = torch.relu(dense @ self.w1 + self.b1) @ self.w2 + self.effects[rows].sum(1) + self.bias
        vectors = torch.cat([(dense @ self.dense_to_vector)[:, None], self.vectors[rows]], dim=1)
        # Sum of the pairwise dot products v_i . v_j (i < j), in O(features) per row.
        pairwise = (vectors.sum(1).pow(2).sum(1) - vectors.pow(2).sum((1, 2))) / 2
        out = out + pairwise / vectors.shape[1] ** 0.5
        if not self.deep:
            return out
        return out + self._deep_logits((dense - self.dense_center) / self.dense_scale)


class SyntheticCTR:
    """Synthetic CTR data set: `num_batches` training batches and `num_test_batches` test batches of
    `batch_size` rows, features and labels as described in the module docstring."""

    def __init__(self, seed=0, batch_size=2048, num_batches=100, num_test_batches=16, table_sizes=None,
                 num_dense=13, zipf_exponent=1.05, positive_rate=0.25, teacher_seed=0, day=0, drift=0.0,
                 deep_widths=(), deep_gain=0.0):
        for name, value in (("batch_size", batch_size), ("num_batches", num_batches),
                            ("num_test_batches", num_test_batches), ("num_dense", num_dense)):
            check_int(value, name, minimum=1)
        check_int(day, "day", minimum=0)
        if not 0 <= drift <= 1:
            raise ValueError(f"drift must be in [0, 1], got {drift}")
        if not 0 < positive_rate < 1:
            raise ValueError(f"positive_rate must be in (0, 1), got {positive_rate}")
        if zipf_exponent <= 0:
            raise ValueError(f"zipf_exponent must be positive, got {zipf_exponent}")
        self.table_sizes = list(DEFAULT_TABLE_SIZES if table_sizes is None else table_sizes)
        if not self.table_sizes or any(int(n) != n or n <= 0 for n in self.table_sizes):
            raise ValueError(f"table_sizes must be positive ints, got {self.table_sizes}")
        self.seed, self.batch_size, self.num_dense = seed, batch_size, num_dense
        self.num_batches, self.num_test_batches = num_batches, num_test_batches
        self.teacher_seed, self.day, self.drift = teacher_seed, day, drift
        g = _generator(teacher_seed, _TEACHER)
        self.dense_mean = torch.rand(num_dense, generator=g) * 2.0
        self.dense_spread = 0.5 + torch.rand(num_dense, generator=g)
        self.zipf_exponent = zipf_exponent
        sizes = torch.tensor(self.table_sizes, dtype=torch.float64)
        self._sizes = sizes
        self._offsets = torch.cat([torch.zeros(1, dtype=torch.int64), sizes.long().cumsum(0)[:-1]])
        # Which id has rank r in table t (so frequent ids are spread over the table).
        self._id_of_rank = torch.cat([torch.randperm(n, generator=g) for n in self.table_sizes])
        for width in deep_widths:
            check_int(width, "deep_widths", minimum=1)
        if deep_gain < 0:
            raise ValueError(f"deep_gain must be >= 0, got {deep_gain}")
        dense_sample = self._features(_generator(teacher_seed, _CALIBRATE), 1 << 15)[0] if deep_widths else None

        def teacher(generator, *deep_seed):
            made = _Teacher(generator, num_dense, self.table_sizes, self._offsets)
            if deep_widths:
                made.add_deep_net(_generator(teacher_seed, _DEEP, *deep_seed), dense_sample, deep_widths, deep_gain)
            return made

        self.teacher = teacher(g)
        for k in range(1, day + 1):
            self.teacher.drift_(teacher(_generator(teacher_seed, _DRIFT, k), k), drift)
        self.teacher.bias = self._calibrate(positive_rate)

    def _features(self, generator, rows):
        dense = torch.log1p(torch.exp(torch.randn(rows, self.num_dense, generator=generator) * self.dense_spread
                                      + self.dense_mean))
        return dense, self._zipf_ids(torch.rand(rows, len(self.table_sizes), generator=generator, dtype=torch.float64))

    def _zipf_ids(self, uniform):
        """Ids with P(rank k) ~ k^-exponent, sampled by inverting the continuous power-law CDF on
        [1, n + 1) and flooring (exact enough for a synthetic data set, and vectorised)."""
        a, n = self.zipf_exponent, self._sizes
        if abs(a - 1) < 1e-9:
            x = torch.exp(uniform * torch.log(n + 1))
        else:
            x = (1 + uniform * ((n + 1) ** (1 - a) - 1)) ** (1 / (1 - a))
        rank = torch.minimum(x.floor().long() - 1, n.long() - 1).clamp_(min=0)
        return self._id_of_rank[rank + self._offsets]

    def _calibrate(self, positive_rate):
        """The teacher bias whose mean click probability is positive_rate (bisection on a sample)."""
        dense, sparse = self._features(_generator(self.teacher_seed, _CALIBRATE), 1 << 15)
        logits = self.teacher.logits(dense, sparse)
        low, high = -20.0, 20.0
        for _ in range(50):
            mid = (low + high) / 2
            if float(torch.sigmoid(logits + mid).mean()) > positive_rate:
                high = mid
            else:
                low = mid
        return (low + high) / 2

    def _batch(self, split, index, rows):
        # (Day 0 keeps the generator of the data before days existed: same seed, same batches.)
        g = _generator(self.seed, split, index, *([self.day] if self.day else []))
        dense, sparse = self._features(g, rows)
        probability = torch.sigmoid(self.teacher.logits(dense, sparse))
        label = torch.bernoulli(probability, generator=g)
        return Batch(dense.float(), sparse, label.float())

    def train_batch(self, index):
        """Training batch `index` (taken modulo num_batches: every epoch sees the same data)."""
        return self._batch(_TRAIN, index % self.num_batches, self.batch_size)

    def test_batches(self):
        return [self._batch(_TEST, i, self.batch_size) for i in range(self.num_test_batches)]

    def teacher_probability(self, batch):
        """The teacher's click probability for a batch (the best any model can do)."""
        return torch.sigmoid(self.teacher.logits(batch.dense, batch.sparse))
