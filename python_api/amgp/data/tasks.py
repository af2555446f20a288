"""The built-in synthetic tasks (--synthetic-task): which teacher labels the data, and for the capacity
task the model and data sizes it was designed with.

"default": the teacher of amgp.data.synthetic (a small ReLU net of the dense features, per-category
effects and embedding dot products). It is data-bound at the sizes people run: a narrower MLP does as
well as the full one (bench/RESULTS.md), so there is no capacity for AMGP to keep.

"capacity": the same teacher plus a deep, wide random ReLU net (13 -> 128 -> 128 -> 128 -> 1) of the
dense features with logit spread 5, over small tables (4..100 rows, learnt in a few hundred steps).
The deep term is most of the signal and has more kinks than a 48-wide student MLP has units, so every
channel the student keeps pays: the full model beats one with 72% of the widths (same data, same
steps) by more than the seed-to-seed noise, while the labels stay learnable (the dense student's log
loss is well below the base rate). CAPACITY_SETTINGS are the sizes this holds at, chosen so that
`--compare dense,amgp,static,narrow --seeds 10` fits in about 15 minutes on 2 CPU cores.
"""
TASKS = ("default", "capacity")

# Teacher settings per task (SyntheticCTR keyword arguments).
TEACHERS = {"default": {}, "capacity": {"deep_widths": (128, 128, 128), "deep_gain": 5.0}}

CAPACITY_TABLE_SIZES = [round(4 * 25 ** (i / 25)) for i in range(26)]  # 4 .. 100 rows

# TrainConfig fields the capacity task is measured with (amgp-dlrm applies those the user does not set).
CAPACITY_SETTINGS = {
    "arch_embedding_size": CAPACITY_TABLE_SIZES,
    "arch_mlp_bot": [13, 48, 48, 16],
    "arch_mlp_top": [48, 48, 1],
    "block_size": 8,
    "mini_batch_size": 512,
    "num_batches": 400,
    "num_test_batches": 128,  # 65,536 test rows: test-sample noise well below the seed-to-seed spread
    "learning_rate": 0.02,
}


def teacher_settings(task):
    if task not in TASKS:
        raise ValueError(f"synthetic_task must be one of {TASKS}, got {task!r}")
    return TEACHERS[task]
