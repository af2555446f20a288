"""Reader for the Criteo Kaggle Display Advertising Challenge text format.

Each line: label, 13 integer features, 26 categorical features (32-bit hexadecimal), tab-separated;
any feature may be empty. Preprocessing as usual for DLRM: integers clipped at 0 and mapped to
log(1 + x) (empty = 0); categoricals hashed into `max_ind_range` rows per table (id 0 is kept
for an empty field, a value v goes to 1 + v % (max_ind_range - 1)); `max_ind_range` may also list
one row count per table (26), e.g. the tables of a checkpoint a run warm-starts from. Lines keep their (time) order:
the last `test_fraction` of the lines is the test split (as dlrm holds out the last day), and
split_latest cuts off the latest lines as "the next day" for recurring training. With a
`shuffle_seed` the training lines are served in a fresh random order every epoch (the test split
never moves).
"""
import math

import torch

from .batches import Batch

NUM_INTEGER = 13
NUM_CATEGORICAL = 26
NUM_FIELDS = 1 + NUM_INTEGER + NUM_CATEGORICAL


class CriteoFormatError(ValueError):
    """A line of a Criteo file does not follow the format; the message names file and line."""


def _shown(field, limit=40):
    """A field for an error message: shortened, and saying so when it held bytes that are not UTF-8
    (the reader decodes them as U+FFFD)."""
    text = repr(field[:limit]) + (f"... ({len(field)} characters)" if len(field) > limit else "")
    return text + (" (bytes that are not UTF-8)" if "\ufffd" in field else "")


def table_rows(max_ind_range):
    """The rows of each of the 26 tables: `max_ind_range` (an int >= 2, or 26 of them) as a list."""
    if isinstance(max_ind_range, (list, tuple)):
        rows = list(max_ind_range)
        if len(rows) != NUM_CATEGORICAL:
            raise ValueError(f"max_ind_range lists {len(rows)} tables, a Criteo file has {NUM_CATEGORICAL} "
                             "categorical features (one table each)")
    else:
        rows = [max_ind_range] * NUM_CATEGORICAL
    if any(isinstance(n, bool) or not isinstance(n, int) for n in rows):
        raise TypeError(f"max_ind_range must be an int or a list of {NUM_CATEGORICAL} ints, got {max_ind_range!r}")
    if min(rows) < 2:
        raise ValueError(f"max_ind_range must be >= 2 (row 0 is the empty field), got {max_ind_range!r}")
    return rows


def parse_criteo_line(line, max_ind_range):
    """(label, [13 floats], [26 ids]) of one line (without its newline); ValueError if malformed.
    max_ind_range: rows per table (an int), or table_rows' list."""
    ranges = max_ind_range if isinstance(max_ind_range, list) else [max_ind_range] * NUM_CATEGORICAL
    fields = line.split("\t")
    if len(fields) != NUM_FIELDS:
        raise ValueError(f"expected {NUM_FIELDS} tab-separated fields, got {len(fields)}")
    if fields[0] not in ("0", "1"):
        raise ValueError(f"label must be 0 or 1, got {_shown(fields[0])}")
    dense = []
    for i, field in enumerate(fields[1:1 + NUM_INTEGER], start=1):
        try:
            value = max(int(field), 0) if field else 0
        except ValueError:
            why = f"has {len(field)} digits, more than Python parses" if field.isdigit() else "is not an integer"
            raise ValueError(f"integer feature I{i} {why}: {_shown(field)}") from None
        # math.log takes ints of any size; log1p would overflow converting a huge count to float.
        dense.append(math.log1p(value) if value < 2**53 else math.log(value))
    sparse = []
    for i, (field, rows) in enumerate(zip(fields[1 + NUM_INTEGER:], ranges), start=1):
        try:
            sparse.append(1 + int(field, 16) % (rows - 1) if field else 0)
        except ValueError:
            raise ValueError(f"categorical feature C{i} is not hexadecimal: {_shown(field)}") from None
    return int(fields[0]), dense, sparse


class CriteoData:
    """A Criteo file in memory, split into train and test, served in batches of batch_size
    (training lines in file order, or reshuffled every epoch from `shuffle_seed`)."""

    def __init__(self, train, test, batch_size, max_ind_range, lines_skipped=0, shuffle_seed=None):
        self.train, self.test, self.batch_size = train, test, batch_size
        self.table_sizes = table_rows(max_ind_range)
        self.num_dense = NUM_INTEGER
        self.lines_skipped = lines_skipped
        self.num_batches = max(1, -(-train.rows // batch_size))
        self.shuffle_seed = shuffle_seed
        self._order = (None, None)  # (epoch, permutation of the training lines)

    @classmethod
    def from_rows(cls, rows, batch_size, max_ind_range, test_fraction=0.1, lines_skipped=0, shuffle_seed=None):
        """Train on the earlier lines of `rows` (a Batch in time order), test on the latest test_fraction."""
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1) to leave a test split, got {test_fraction}")
        train, test = split_latest(rows, test_fraction)
        return cls(train, test, batch_size, max_ind_range, lines_skipped, shuffle_seed)

    def train_batch(self, index):
        start = (index % self.num_batches) * self.batch_size
        if self.shuffle_seed is None:
            return Batch(*(t[start:start + self.batch_size] for t in self.train))
        rows = self._permutation(index // self.num_batches)[start:start + self.batch_size]
        return Batch(*(t[rows] for t in self.train))

    def _permutation(self, epoch):
        if self._order[0] != epoch:
            generator = torch.Generator().manual_seed(hash((self.shuffle_seed, epoch)) % (2**63))
            self._order = (epoch, torch.randperm(self.train.rows, generator=generator))
        return self._order[1]

    def test_batches(self):
        return [Batch(*(t[i:i + self.batch_size] for t in self.test)) for i in range(0, self.test.rows, self.batch_size)]


def split_latest(rows, fraction):
    """(earlier, latest) parts of `rows` (a Batch in time order): the latest part holds round(fraction *
    rows) lines, at least one, and the earlier part at least one."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if rows.rows < 2:
        raise ValueError(f"needs at least 2 lines to split, got {rows.rows}")
    latest = min(max(1, round(fraction * rows.rows)), rows.rows - 1)
    cut = rows.rows - latest
    return Batch(*(t[:cut] for t in rows)), Batch(*(t[cut:] for t in rows))


def read_criteo_rows(path, max_ind_range=100_000, skip_malformed=False, max_lines=None):
    """(every valid line of a Criteo-format file as one Batch in file order, number of lines skipped).
    A malformed line raises CriteoFormatError naming the file and line number, or is counted and
    skipped when skip_malformed is True. max_lines: read only the first lines. max_ind_range: rows per
    table, one int or 26 (see table_rows)."""
    max_ind_range = table_rows(max_ind_range)
    labels, dense, sparse, skipped = [], [], [], 0
    with open(path, "r", encoding="utf-8", errors="replace", newline="\n") as f:
        for line_number, line in enumerate(f, start=1):
            if max_lines is not None and len(labels) >= max_lines:
                break
            line = line.rstrip("\r\n")
            try:
                label, d, s = parse_criteo_line(line, max_ind_range)
            except ValueError as error:
                if skip_malformed:
                    skipped += 1
                    continue
                raise CriteoFormatError(f"{path}:{line_number}: malformed Criteo line: {error}") from None
            labels.append(label)
            dense.append(d)
            sparse.append(s)
    if len(labels) < 2:
        raise CriteoFormatError(f"{path}: needs at least 2 valid lines (train and test), found {len(labels)}")
    rows = Batch(torch.tensor(dense, dtype=torch.float32), torch.tensor(sparse, dtype=torch.int64),
                 torch.tensor(labels, dtype=torch.float32))
    return rows, skipped


def read_criteo(path, max_ind_range=100_000, batch_size=2048, test_fraction=0.1, skip_malformed=False,
                max_lines=None, shuffle_seed=None):
    """Read a Criteo-format file (see module docstring and read_criteo_rows) into a CriteoData whose
    test split is the latest test_fraction of the lines."""
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if test_fraction == 0:
        raise ValueError("test_fraction must leave at least one test line")
    rows, skipped = read_criteo_rows(path, max_ind_range, skip_malformed, max_lines)
    return CriteoData.from_rows(rows, batch_size, max_ind_range, test_fraction, skipped, shuffle_seed)
