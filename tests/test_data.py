"""Synthetic CTR data (deterministic, skewed, learnable) and the Criteo text loader (incl. malformed lines)."""
import math

import pytest
import torch

from amgp.data import CriteoData, CriteoFormatError, SyntheticCTR, parse_criteo_line, read_criteo, split_latest
from amgp.metrics import ctr_metrics

SMALL_TABLES = [5, 50, 500, 2000]


def small(seed=0, **kwargs):
    return SyntheticCTR(seed=seed, batch_size=1024, num_batches=4, num_test_batches=2, table_sizes=SMALL_TABLES,
                        **kwargs)


def test_synthetic_is_deterministic_per_seed_and_index():
    a, b = small(seed=3), small(seed=3)
    for x, y in zip(a.train_batch(2), b.train_batch(2)):
        assert torch.equal(x, y)
    assert torch.equal(a.train_batch(1).sparse, a.train_batch(5).sparse)  # index modulo num_batches
    assert not torch.equal(a.train_batch(0).dense, a.train_batch(1).dense)
    assert not torch.equal(a.train_batch(0).dense, small(seed=4).train_batch(0).dense)
    assert not torch.equal(a.test_batches()[0].dense, a.train_batch(0).dense)


def test_the_teacher_is_the_task_and_stays_when_the_seed_changes():
    a, b = small(seed=0), small(seed=1)
    batch = a.train_batch(0)
    torch.testing.assert_close(a.teacher_probability(batch), b.teacher_probability(batch), rtol=0, atol=0)
    assert not torch.equal(batch.sparse, b.train_batch(0).sparse)
    other_task = small(seed=0, teacher_seed=1)
    assert not torch.allclose(a.teacher_probability(batch), other_task.teacher_probability(batch))


def test_next_day_teacher_drifts_by_the_documented_amount():
    today = small()
    probe = today.test_batches()[0]
    for drift in (0.1, 0.5):
        tomorrow = small(day=1, drift=drift)
        # every parameter p becomes sqrt(1 - d^2) p + d q with q drawn like p: correlation sqrt(1 - d^2)
        p, q = today.teacher.effects, tomorrow.teacher.effects
        assert torch.corrcoef(torch.stack([p, q]))[0, 1] == pytest.approx((1 - drift ** 2) ** 0.5, abs=0.03)
        assert float(p.std()) == pytest.approx(float(q.std()), rel=0.05)
        assert 0.22 < float(tomorrow.teacher_probability(probe).mean()) < 0.28  # recalibrated positive rate
    assert not torch.equal(small(day=1, drift=0.3).train_batch(0).dense, today.train_batch(0).dense)
    unchanged = small(day=1, drift=0.0)
    torch.testing.assert_close(unchanged.teacher_probability(probe), today.teacher_probability(probe))
    # the next day's labels follow its own teacher better than yesterday's
    later = small(day=1, drift=0.7)
    test = later.test_batches()
    labels = torch.cat([b.label for b in test])
    new = ctr_metrics(labels, torch.cat([later.teacher_probability(b) for b in test]))["auc"]
    old = ctr_metrics(labels, torch.cat([today.teacher_probability(b) for b in test]))["auc"]
    assert new > old + 0.02


def test_synthetic_shapes_ranges_and_positive_rate():
    data = SyntheticCTR(seed=1, batch_size=4096, num_batches=2, num_test_batches=2)
    batch = data.train_batch(0)
    assert batch.dense.shape == (4096, 13) and batch.dense.dtype == torch.float32
    assert batch.sparse.shape == (4096, 26) and batch.sparse.dtype == torch.int64
    assert ((batch.sparse >= 0) & (batch.sparse < torch.tensor(data.table_sizes))).all()
    assert set(batch.label.unique().tolist()) <= {0.0, 1.0}
    assert 0.22 < float(batch.label.mean()) < 0.28
    assert (batch.dense >= 0).all()


def test_category_ids_follow_a_power_law():
    data = small()
    ids = torch.cat([data.train_batch(i).sparse[:, 3] for i in range(4)])
    counts = torch.bincount(ids, minlength=2000).sort(descending=True).values.float()
    # Zipf: the top id is far more frequent than the 100th, and most ids are rare.
    assert counts[0] > 20 * counts[99]
    assert counts[0] / ids.numel() > 0.05


def test_labels_are_learnable_from_the_features():
    data = small()
    test = data.test_batches()
    labels = torch.cat([b.label for b in test])
    teacher = torch.cat([data.teacher_probability(b) for b in test])
    assert ctr_metrics(labels, teacher)["auc"] > 0.75
    assert ctr_metrics(labels, torch.full_like(labels, 0.25))["auc"] == 0.5


def test_synthetic_rejects_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        SyntheticCTR(batch_size=0)
    with pytest.raises(ValueError, match="positive_rate"):
        SyntheticCTR(positive_rate=1.5)
    with pytest.raises(ValueError, match="table_sizes"):
        SyntheticCTR(table_sizes=[3, 0])
    with pytest.raises(ValueError, match="day"):
        SyntheticCTR(day=-1)
    with pytest.raises(ValueError, match="drift"):
        SyntheticCTR(day=1, drift=1.5)


def criteo_line(label=1, ints=None, cats=None):
    ints = ints if ints is not None else [str(i) for i in range(13)]
    cats = cats if cats is not None else ["68fd1e64"] * 26
    return "\t".join([str(label), *ints, *cats])


def test_parse_line_preprocessing():
    ints = ["5", "", "-3"] + ["0"] * 10
    cats = ["0000000a", ""] + ["ffffffff"] * 24
    label, dense, sparse = parse_criteo_line(criteo_line(0, ints, cats), max_ind_range=100)
    assert label == 0
    assert dense[:3] == [math.log1p(5), 0.0, 0.0]  # empty -> 0, negative clipped
    assert sparse[0] == 1 + 10 % 99 and sparse[1] == 0 and sparse[2] == 1 + 0xFFFFFFFF % 99
    assert all(0 <= s < 100 for s in sparse)


def write(tmp_path, lines, name="train.txt"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_criteo_splits_and_batches(tmp_path):
    lines = [criteo_line(i % 2, [str(i)] * 13) for i in range(20)]
    data = read_criteo(write(tmp_path, lines), max_ind_range=1000, batch_size=8, test_fraction=0.25)
    assert data.train.rows == 15 and data.test.rows == 5
    assert data.num_batches == 2 and data.train_batch(1).rows == 7
    assert data.table_sizes == [1000] * 26
    assert data.test.dense[0, 0] == pytest.approx(math.log1p(15))  # the last lines are the test split
    assert sum(b.rows for b in data.test_batches()) == 5


def test_training_order_is_reshuffled_per_seed_and_epoch_and_the_test_split_stays_latest(tmp_path):
    lines = [criteo_line(i % 2, [str(i)] * 13) for i in range(40)]
    path = write(tmp_path, lines)
    ordered = read_criteo(path, max_ind_range=1000, batch_size=8, test_fraction=0.25)
    shuffled = read_criteo(path, max_ind_range=1000, batch_size=8, test_fraction=0.25, shuffle_seed=3)

    def epoch(data, first):
        return torch.cat([data.train_batch(first + i).dense[:, 0] for i in range(data.num_batches)])

    file_order = epoch(ordered, 0)
    assert torch.equal(file_order, torch.log1p(torch.arange(30.0)))
    first, second = epoch(shuffled, 0), epoch(shuffled, shuffled.num_batches)
    assert torch.equal(first.sort().values, file_order) and torch.equal(second.sort().values, file_order)
    assert not torch.equal(first, file_order) and not torch.equal(first, second)
    assert torch.equal(first, epoch(read_criteo(path, 1000, 8, 0.25, shuffle_seed=3), 0))  # a pure function of the seed
    assert not torch.equal(first, epoch(read_criteo(path, 1000, 8, 0.25, shuffle_seed=4), 0))
    for data in (ordered, shuffled):
        assert torch.equal(data.test.dense[:, 0], torch.log1p(torch.arange(30.0, 40.0)))


def test_split_latest_keeps_time_order(tmp_path):
    data = read_criteo(write(tmp_path, [criteo_line(i % 2, [str(i)] * 13) for i in range(20)]), 1000, 4, 0.1)
    rows = CriteoData.from_rows(data.train, 4, 1000, test_fraction=0.5).train  # lines 0..8
    earlier, latest = split_latest(data.train, 0.25)
    assert earlier.dense[:, 0].tolist() == pytest.approx(torch.log1p(torch.arange(14.0)).tolist())
    assert latest.dense[:, 0].tolist() == pytest.approx(torch.log1p(torch.arange(14.0, 18.0)).tolist())
    assert rows.rows == 9
    with pytest.raises(ValueError, match="fraction"):
        split_latest(data.train, 1.0)


def test_real_log_quirks_train_and_evaluate(tmp_path):
    """Missing fields, negative integers and categories the training lines never had are normal in click
    logs: they parse to valid features, and a model trained on the file scores every test line."""
    from amgp.dlrm import DLRM
    from amgp.metrics import ctr_metrics as metrics

    def line(i, test):
        ints = ["" if (i + k) % 4 == 0 else str((i * 7 + k) % 50 - 10) for k in range(13)]  # gaps and negatives
        cats = ["" if (i + k) % 5 == 0 else format((i * 31 + k + (10**6 if test else 0)) % 997 + (10**9 if test else 0),
                                                      "x") for k in range(26)]
        return criteo_line(int(i % 3 == 0), ints, cats)

    lines = [line(i, test=False) for i in range(60)] + [line(i, test=True) for i in range(20)]
    data = read_criteo(write(tmp_path, lines), max_ind_range=500, batch_size=16, test_fraction=0.25)
    assert data.train.rows == 60 and data.test.rows == 20
    assert (data.train.dense >= 0).all() and torch.isfinite(data.train.dense).all()
    assert ((data.test.sparse >= 0) & (data.test.sparse < 500)).all()
    assert (data.train.dense == 0).any() and (data.train.sparse == 0).any()  # empty fields
    seen = set(data.train.sparse[:, 5].tolist())
    assert not set(data.test.sparse[:, 5].tolist()) <= seen  # categories never seen in training
    model = DLRM(data.table_sizes, 4, [13, 8, 4], [8, 1], block_size=4)
    optimizer = torch.optim.Adagrad(model.parameters(), lr=0.05)
    for step in range(8):
        batch = data.train_batch(step)
        optimizer.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(model.logits(batch.dense, batch.sparse),
                                                             batch.label).backward()
        optimizer.step()
    with torch.no_grad():
        probability = model(data.test.dense, data.test.sparse)
    assert torch.isfinite(probability).all()
    assert 0 <= metrics(data.test.label, probability)["auc"] <= 1


@pytest.mark.parametrize("bad, message", [
    ("1\t2\t3", "expected 40 tab-separated fields"),
    (criteo_line(label=2), "label must be 0 or 1"),
    (criteo_line(ints=["x"] + ["1"] * 12), "I1 is not an integer"),
    (criteo_line(cats=["zz"] + ["1"] * 25), "C1 is not hexadecimal"),
])
def test_malformed_line_names_file_and_line(tmp_path, bad, message):
    path = write(tmp_path, [criteo_line(), criteo_line(), bad, criteo_line()])
    with pytest.raises(CriteoFormatError, match=f"{path}:3: .*{message}"):
        read_criteo(path, max_ind_range=1000)


def test_malformed_lines_are_counted_and_skipped_when_asked(tmp_path):
    path = write(tmp_path, [criteo_line(), "garbage", criteo_line(0), criteo_line(label=7), criteo_line()])
    data = read_criteo(path, max_ind_range=1000, skip_malformed=True, test_fraction=0.34)
    assert data.lines_skipped == 2
    assert data.train.rows + data.test.rows == 3


def test_read_criteo_rejects_bad_arguments(tmp_path):
    path = write(tmp_path, [criteo_line()] * 3)
    with pytest.raises(ValueError, match="max_ind_range"):
        read_criteo(path, max_ind_range=1)
    with pytest.raises(FileNotFoundError):
        read_criteo(tmp_path / "missing.txt")
    with pytest.raises(CriteoFormatError, match="at least 2 valid lines"):
        read_criteo(write(tmp_path, [criteo_line()], "one.txt"))


def test_metrics():
    m = ctr_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert m["auc"] == pytest.approx(0.75)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["logloss"] == pytest.approx(-(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4)
    with pytest.raises(ValueError, match="same length"):
        ctr_metrics([0, 1], [0.5])
    with pytest.raises(ValueError, match="0 or 1"):
        ctr_metrics([0, 2], [0.5, 0.5])


def test_the_synthetic_days_written_as_a_criteo_file_read_back_in_time_order(tmp_path):
    from amgp.data import read_criteo_rows
    from amgp.data.criteo_writer import main as write_days

    path = tmp_path / "days.txt"
    assert write_days([str(path), "--days", "2", "--rows-per-day", "50", "--drift", "0.5"]) == 0
    rows, skipped = read_criteo_rows(path, max_ind_range=100_000)
    assert rows.rows == 100 and skipped == 0
    for day in (0, 1):
        source = SyntheticCTR(batch_size=50, num_batches=1, num_test_batches=1, day=day, drift=0.5).train_batch(0)
        lines = slice(50 * day, 50 * (day + 1))
        assert torch.equal(rows.label[lines], source.label)
        # counts are whole numbers: log(1 + count) is the feature up to rounding the count
        assert torch.allclose(torch.expm1(rows.dense[lines]), torch.expm1(source.dense).round(), atol=1e-3, rtol=1e-5)
        assert torch.equal(rows.sparse[lines], 1 + source.sparse % 99_999)
    with pytest.raises(SystemExit):
        write_days([str(path), "--days", "0"])
