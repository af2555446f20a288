"""Surviving mutants reviewed as equivalent (no test can tell them apart from the code): mutant name ->
(the mutated code, as run.py prints it from the diff's '+' lines; an entry whose code no longer matches is
reported stale, not counted), one-line reason). Names are mutmut 3.8's.

NEEDS_GPU: survivors that are real bugs only another machine can show: a GPU (a tensor made on the default
device instead of the one asked for; on this CPU-only machine every device is the CPU) or another platform.
They are counted apart ("gpu-only"), neither killed nor equivalent; the reason says what would catch them."""

EQUIVALENT = {
    # amgp.meter: the cached FLOPs per sample are recomputed whenever the mask versions differ from the cached
    # ones, and a tuple of versions never equals None or "": the first count always recomputes.
    "amgp.meter.xǁCostMeterǁ__init____mutmut_17": ('self._mask_versions = ""', "never equal to a versions tuple"),
    "amgp.meter.xǁCostMeterǁ__init____mutmut_18": ("self._per_sample = None", "overwritten before first read"),
    "amgp.meter.xǁCostMeterǁ__init____mutmut_19": ("self._per_sample = (1, 0)", "overwritten before first read"),
    "amgp.meter.xǁCostMeterǁ__init____mutmut_20": ("self._per_sample = (0, 1)", "overwritten before first read"),
    "amgp.meter.xǁCostMeterǁflops_per_sample__mutmut_6": (
        "self._mask_versions = None", "recomputes every step: same counts, only slower (a cache, not a result)"),
    # amgp.masks: tied mask values of different shapes are never torch.equal, so the shape test is only a shortcut.
    "amgp.masks.x_check_tied_mask_keys__mutmut_24": (
        "if values[1].shape != values[1].shape or not torch.equal(values[0], values[1]):",
        "torch.equal is False for different shapes: the same error"),
    # amgp.sparse_mlp: SparseMLP holds no parameter or buffer of its own (its layers load themselves), so
    # nn.Module's loader never reports a missing key or an error message for it.
    "amgp.sparse_mlp.xǁSparseMLPǁ_load_from_state_dict__mutmut_16": (
        "super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, None, unexpected_keys,",
        "no own parameters or buffers: no missing key to list"),
    "amgp.sparse_mlp.xǁSparseMLPǁ_load_from_state_dict__mutmut_18": (
        "None)", "no own parameters or buffers: no error message to add"),
    # amgp.recurring: Stages has no next-day rows only without a RecurringConfig, and next_day refuses that first,
    # so the stage name in _criteo's message is never shown for the next day.
    "amgp.recurring.xǁStagesǁnext_day__mutmut_24": (
        "return self._criteo(self._next_rows, config, None)", "unreachable message (next_day checks first)"),
    "amgp.recurring.xǁStagesǁnext_day__mutmut_28": (
        'return self._criteo(self._next_rows, config, "XXthe next dayXX")', "unreachable message (next_day checks first)"),
    "amgp.recurring.xǁStagesǁnext_day__mutmut_29": (
        'return self._criteo(self._next_rows, config, "THE NEXT DAY")', "unreachable message (next_day checks first)"),
    # amgp.schedule: the applied-phase marker is compared with phase indices (ints): None and "" both never match.
    "amgp.schedule.xǁGrowPruneScheduleǁ__init____mutmut_49": (
        'self._applied_phase = ""  # index of the phase whose masks the model holds', "never equal to a phase index, like None"),
    # amgp.flops. LayerShape.flops / flops_per_sample: a density above 1 keeps every block, as 1.0 does.
    "amgp.flops.xǁLayerShapeǁflops__mutmut_1": ("def flops(self, density=2.0):", "density 2 keeps every block, as 1"),
    "amgp.flops.x_flops_per_sample__mutmut_1": (
        "def flops_per_sample(shapes, density=2.0):", "density 2 keeps every block, as 1"),
    # _solve_increasing: the coefficients are integers (6 x widths), so c1 + c2 is never 1, and at target ==
    # c0 + c1 + c2 the formulas give exactly 1.0 too; c1 + c2 == 0 already means target <= c0.
    "amgp.flops.x__solve_increasing__mutmut_2": (
        "if target >= c0 + c1 + c2:" .replace(">=", ">"), "at equality the formulas give exactly 1.0 as well"),
    "amgp.flops.x__solve_increasing__mutmut_10": (
        "if target <= c0 or c1 + c2 == 1:", "integer multiples of 6 are never 1"),
    # static_density: the densities tried still hold one of every cost step, lowest first.
    "amgp.flops.x_static_density__mutmut_21": (
        "edges = sorted({(k + 1.5) / n for n in block_counts for k in range(n)} | {0.0, 1.0})", "blocks_kept is max(1, round(s n)): (0, 1.5/n) is one cost step, still tried lower down: same blocks kept"),
    "amgp.flops.x_static_density__mutmut_23": (
        "edges = sorted({(k + 0.5) / n for n in block_counts for k in range(n)} | {1.0, 1.0})", "blocks_kept is max(1, round(s n)): (0, 1.5/n) is one cost step, still tried lower down: same blocks kept"),
    "amgp.flops.x_static_density__mutmut_37": (
        "for density in sorted(set(edges[2:]) | set(middles)):", "blocks_kept is max(1, round(s n)): (0, 1.5/n) is one cost step, still tried lower down: same blocks kept"),
    "amgp.flops.x_static_density__mutmut_45": (
        "if plan_fraction(shapes, phases, density) > fraction - 1e-12:",
        "differs only when the cost is exactly fraction - 1e-12"),
    "amgp.flops.x_static_density__mutmut_6": (
        "if fraction > 1 - 1e-12:", "differs only for fraction == 1 - 1e-12 exactly"),
    "amgp.flops.x_static_density__mutmut_48": (
        "return 2.0", "unreachable: density 1.0 is always tried and always spends the fraction"),
    # amgp.pruner
    "amgp.pruner.xǁBlockPrunerǁ__init____mutmut_30": (
        "self.collecting_scores = None  # Taylor scores accumulate only while set (the dense steps before a pruning)",
        "None is falsy like False"),
    "amgp.pruner.xǁBlockPrunerǁ__init____mutmut_42": (
        'for name, layer, _ in self.pairs] if (criterion == "taylor") or True else []',
        "magnitude pruning never reads the Taylor scores those hooks would collect: cost only"),
    "amgp.pruner.xǁBlockPrunerǁapply_masks__mutmut_19": (
        "generator = torch.Generator().manual_seed(hash((self.seed, step)) % (2**64))",
        "another fixed seed per (seed, step): the same on every rank and on resume"),
    # amgp.checkpoint
    "amgp.checkpoint.x__create_temporary__mutmut_7": (
        'temporary = os.path.join(directory, f".{name}.{os.getpid()}.{secrets.token_hex(None)}.tmp")',
        "a longer random part: still unique, still matched by the cleanup"),
    "amgp.checkpoint.x__create_temporary__mutmut_8": (
        'temporary = os.path.join(directory, f".{name}.{os.getpid()}.{secrets.token_hex(5)}.tmp")',
        "a longer random part: still unique, still matched by the cleanup"),
    "amgp.checkpoint.x_capture_rng_state__mutmut_17": (
        '"numpy": {"name": mt_name, "keys": torch.from_numpy(keys.astype(None)), "position": int(position),',
        "float64 holds every uint32 key exactly; restore converts back"),
    "amgp.checkpoint.x_restore_rng_state__mutmut_19": (
        'np.random.set_state((numpy_state["name"], numpy_state["keys"].numpy().astype(None), numpy_state["position"],',
        "NumPy converts the integral keys itself"),
    "amgp.checkpoint.x_capture_rng_state__mutmut_7": (
        '"cuda": torch.cuda.get_rng_state_all() if (torch.cuda.is_available()) or True else [],',
        "without a GPU get_rng_state_all() is [] too"),
    "amgp.checkpoint.x_restore_rng_state__mutmut_4": (
        'if state["cuda"] or torch.cuda.is_available():',
        "an empty list sets no GPU; without CUDA torch queues the call and never runs it"),
    "amgp.checkpoint.x_load_checkpoint__mutmut_12": (
        "state = torch.load(path, map_location=map_location, weights_only=None)",
        "torch >= 2.6 defaults to weights_only=True (this venv: 2.13); a torch 2.5 run would kill it"),
    "amgp.checkpoint.x_load_checkpoint__mutmut_15": (
        "state = torch.load(path, map_location=map_location, )",
        "torch >= 2.6 defaults to weights_only=True (this venv: 2.13); a torch 2.5 run would kill it"),
    # amgp.pruning
    "amgp.pruning.x_prune_blocks__mutmut_33": (
        'masks = [keep_top_blocks(block_magnitude(layer, consumers).masked_fill(~layer.out_mask, float("-INF")), density)',
        'float("-INF") is float("-inf")'),
    "amgp.pruning.x__uniform_like__mutmut_9": (
        "values = torch.empty(tensor.shape, dtype=None).uniform_(-bound, bound, generator=generator)",
        "the default dtype is float32; under another default the draws are still seeded alike on every rank"),
    "amgp.pruning.x__uniform_like__mutmut_11": (
        "values = torch.empty(tensor.shape, ).uniform_(-bound, bound, generator=generator)",
        "the default dtype is float32; under another default the draws are still seeded alike on every rank"),
    # amgp.sparsify
    "amgp.sparsify.x__flatten__mutmut_5": (
        "inner = pipeline_steps(value) if (isinstance(value, nn.Module)) or True else None",
        "pipeline_steps answers None for a function as for any non-pipeline step"),
    "amgp.sparsify.x__tie_pipeline__mutmut_44": (
        'if fuse_relu and j >= i + 1 and _is_relu(steps[i + 1].value) and producer.activation == "none":',
        "at j == i + 1, steps[i + 1] is the consumer, never a ReLU"),
    "amgp.sparsify.x__tie_pipeline__mutmut_45": (
        'if fuse_relu and j > i - 1 and _is_relu(steps[i + 1].value) and producer.activation == "none":',
        "at j == i + 1, steps[i + 1] is the consumer, never a ReLU"),
    "amgp.sparsify.x__use_counts__mutmut_2": (
        "for _, sub in module.named_modules(remove_duplicate=None):", "None is falsy like False"),
    # amgp.sparse_linear
    'amgp.sparse_linear.xǁSparseLinearǁ__init____mutmut_116': (
        'self.register_buffer("out_index", None, persistent=None)',
        'None is falsy like False: still not persistent'),
    'amgp.sparse_linear.xǁSparseLinearǁ__init____mutmut_124': (
        'self.register_buffer("in_index", None, persistent=None)',
        'None is falsy like False: still not persistent'),
    'amgp.sparse_linear.xǁSparseLinearǁ_apply__mutmut_4': (
        'result = super()._apply(fn, **kwargs)',
        'nn.Module passes _apply no positional extras; recurse has no children to reach here'),
    'amgp.sparse_linear.xǁSparseLinearǁ_apply__mutmut_5': (
        'result = super()._apply(fn, *args, )',
        'only to_empty passes recurse=, and a SparseLinear has no children'),
    'amgp.sparse_linear.xǁSparseLinearǁ_load_from_state_dict__mutmut_35': (
        'self.refresh_indices(force=None)',
        'the loaded masks were copied in place: their version changed, so every index is rebuilt anyway'),
    'amgp.sparse_linear.xǁSparseLinearǁ_load_from_state_dict__mutmut_36': (
        'self.refresh_indices(force=False)',
        'the loaded masks were copied in place: their version changed, so every index is rebuilt anyway'),
    'amgp.sparse_linear.xǁSparseLinearǁ_save_to_state_dict__mutmut_14': (
        'destination.pop(prefix + name, )',
        'the mask keys are always there to pop (persistent buffers)'),
    'amgp.sparse_linear.xǁSparseLinearǁforward__mutmut_12': (
        'self.packed_in, self.packed_out, backend=self.backend, validate=None,',
        'validate=None is falsy like False'),
    'amgp.sparse_linear.xǁSparseLinearǁforward__mutmut_23': (
        'self.packed_in, self.packed_out, backend=self.backend, )',
        "validate defaults to checking the layer's own index lists: same results, extra checks"),
    'amgp.sparse_linear.xǁSparseLinearǁforward__mutmut_24': (
        'self.packed_in, self.packed_out, backend=self.backend, validate=True,',
        "checks the layer's own index lists: same results, extra checks"),
    'amgp.sparse_linear.xǁSparseLinearǁfrom_linear__mutmut_9': (
        'device = "meta" if (share_parameters) and False else linear.weight.device',
        'allocates weights that are replaced at once by the shared ones: cost only'),
    'amgp.sparse_linear.xǁSparseLinearǁfrom_linear__mutmut_42': (
        'layer.refresh_indices(force=None)',
        'the new mask tensors differ from the cached keys: every index is rebuilt anyway'),
    'amgp.sparse_linear.xǁSparseLinearǁfrom_linear__mutmut_43': (
        'layer.refresh_indices(force=False)',
        'the new mask tensors differ from the cached keys: every index is rebuilt anyway'),
    'amgp.sparse_linear.xǁSparseLinearǁrefresh_indices__mutmut_1': (
        'def refresh_indices(self, force=True):',
        'rebuilds index lists that are unchanged: a cache, same results'),
    'amgp.sparse_linear.xǁSparseLinearǁrefresh_indices__mutmut_13': (
        'if force or self._index_keys.get(None) != key:',
        'rebuilds index lists that are unchanged: a cache, same results'),
    'amgp.sparse_linear.xǁSparseLinearǁrefresh_indices__mutmut_27': (
        'self._index_keys[name] = None',
        'rebuilds index lists that are unchanged: a cache, same results'),
    'amgp.sparse_linear.xǁSparseLinearǁreset_parameters__mutmut_11': (
        'bound = 1 / math.sqrt(fan_in) if (fan_in > 0) or True else 0',
        'in_features >= 1 always (checked): fan_in > 0 is always true'),
    'amgp.sparse_linear.xǁSparseLinearǁreset_parameters__mutmut_15': (
        'bound = 1 / math.sqrt(fan_in) if fan_in >= 0 else 0',
        'in_features >= 1 always (checked): fan_in > 0 is always true'),
    'amgp.sparse_linear.xǁSparseLinearǁreset_parameters__mutmut_17': (
        'bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 1',
        'in_features >= 1 always (checked): the else branch is unreachable'),
    # amgp.experiment: flush only decides when a worker's line leaves a pipe, not what it says.
    "amgp.experiment.x__say__mutmut_2": ("print(line, flush=None)  # (from a worker process, whose output may be a pipe)",
                                         "same text; only when it is flushed"),
    "amgp.experiment.x__say__mutmut_4": ("print(line, )  # (from a worker process, whose output may be a pipe)",
                                         "same text; only when it is flushed"),
    "amgp.experiment.x__say__mutmut_5": ("print(line, flush=False)  # (from a worker process, whose output may be a pipe)",
                                         "same text; only when it is flushed"),
    "amgp.experiment.x_comparison__mutmut_35": (
        'time_cut = 1 - amgp["wall_time_s"]["mean"] / dense_wall if dense_wall > 0 else float("NAN")',
        'float("NAN") is float("nan")'),
    # equal_flop_budget: one-row tables (the MLP shapes do not depend on the rows), and end_full_size is falsy.
    "amgp.experiment.x_equal_flop_budget__mutmut_17": (
        "model = DLRM([2] * num_tables, config.arch_sparse_feature_size, config.arch_mlp_bot, config.arch_mlp_top,",
        "table rows do not change the MLP shapes"),
    "amgp.experiment.x_equal_flop_budget__mutmut_47": (
        "static_phases = plan_phases(steps, config.amgp_warmup, 0, 0, 1, end_full_size=None)", "None is falsy like False"),
    # The static plan has no dense phase between its sparse ones (dense_steps 0), so 1 or 2 cycles, or any
    # dense_steps with 1 cycle, give the same steps (plan_fraction counts dense and sparse steps only).
    "amgp.experiment.x_equal_flop_budget__mutmut_52": (
        "static_phases = plan_phases(steps, config.amgp_warmup, 0, 0, end_full_size=False)", "2 cycles with no dense steps between: the same steps"),
    "amgp.experiment.x_equal_flop_budget__mutmut_55": (
        "static_phases = plan_phases(steps, config.amgp_warmup, 0, 1, 1, end_full_size=False)", "one cycle has no dense phase between"),
    "amgp.experiment.x_equal_flop_budget__mutmut_56": (
        "static_phases = plan_phases(steps, config.amgp_warmup, 0, 0, 2, end_full_size=False)", "2 cycles with no dense steps between: the same steps"),
    # amgp.experiment_stats.verdict: a mean of 0 is inside every interval (ci95 >= 0): never reaches the sign test.
    "amgp.experiment_stats.x_verdict__mutmut_10": (
        "return VERDICTS[0] if (mean >= 0) == higher_is_better else VERDICTS[1]", "mean 0 never gets past abs(mean) <= ci95"),
    # amgp_kernels.blocks.channel_mask: the channel-to-block map made on the CPU indexes a tensor on any device
    # (CPU indices are allowed everywhere): the same mask, after a host-to-device copy.
    "amgp_kernels.blocks.x_channel_mask__mutmut_11": (
        "block_of_channel = torch.arange(features, device=None) // block_size", "CPU indices work on any device: same mask"),
    "amgp_kernels.blocks.x_channel_mask__mutmut_13": (
        "block_of_channel = torch.arange(features, ) // block_size", "CPU indices work on any device: same mask"),
    "amgp_kernels.blocks.x_channel_mask__mutmut_29": (
        "return active[block_of_channel].to(device if (device is not None) or True else blocks.device)",
        ".to(None) keeps the blocks' device, which the mask is already on"),
    # amgp.distributed.init_from_env: torch lowercases backend names.
    'amgp.distributed.x_init_from_env__mutmut_41': (
        'backend, timeout = "NCCL" if use_gpu else "gloo", datetime.timedelta(seconds=timeout_s)',
        'backend names are case-insensitive (torch lowercases them)'),
    'amgp.distributed.x_init_from_env__mutmut_43': (
        'backend, timeout = "nccl" if use_gpu else "GLOO", datetime.timedelta(seconds=timeout_s)',
        'backend names are case-insensitive (torch lowercases them)'),
    'amgp.distributed.x__fresh_store__mutmut_8': (
        'store, rank_, world = next(dist.rendezvous("ENV://", timeout=timeout))',
        'the URL scheme is read case-insensitively: the same env:// rendezvous'),
    # amgp_kernels.checks and amgp_kernels.reference
    'amgp_kernels.checks.x_check_arguments__mutmut_1': (
        'def check_arguments(x, weight, bias, in_blocks, out_blocks, block_size, activation, packed_in=True,',
        'every caller (amgp_kernels.api) passes packed_in and packed_out'),
    'amgp_kernels.checks.x_check_arguments__mutmut_2': (
        'packed_out=True):',
        'every caller (amgp_kernels.api) passes packed_in and packed_out'),
    'amgp_kernels.checks.x_check_block_indices__mutmut_25': (
        'if values.numel() >= 1 and not bool((values[1:] > values[:-1]).all()):',
        'one block is always in order: values[1:] is empty'),
    'amgp_kernels.reference.x_block_linear__mutmut_35': (
        'x_active = x.masked_fill(~m_in, 1)',
        "the weight's inactive columns are zeroed: x's inactive channels meet only zeros (and get no gradient)"),
    'amgp_kernels.reference.x_block_linear__mutmut_43': (
        'w_active = weight.masked_fill(~(m_out[:, None] & m_in[None, :]), 1)',
        'inactive x channels are zero and inactive outputs are masked after: the filled weights never count'),
    # amgp_kernels.autograd (fake implementations) and amgp_kernels.backends
    'amgp_kernels.autograd.x_fake_sharing_forward__mutmut_4': (
        'y = fake_forward(x, weight, None, in_blocks, out_blocks, block_size, activation, packed_in, packed_out)',
        "fake_forward's shape does not depend on it"),
    'amgp_kernels.autograd.x_fake_sharing_forward__mutmut_5': (
        'y = fake_forward(x, weight, bias, None, out_blocks, block_size, activation, packed_in, packed_out)',
        "fake_forward's shape does not depend on it"),
    'amgp_kernels.autograd.x_fake_sharing_forward__mutmut_8': (
        'y = fake_forward(x, weight, bias, in_blocks, out_blocks, block_size, None, packed_in, packed_out)',
        "fake_forward's shape does not depend on it"),
    'amgp_kernels.autograd.x_fake_sharing_forward__mutmut_9': (
        'y = fake_forward(x, weight, bias, in_blocks, out_blocks, block_size, activation, None, packed_out)',
        "fake_forward's shape does not depend on it"),
    'amgp_kernels.autograd.x_fake_forward__mutmut_1': (
        'def fake_forward(x, weight, bias, in_blocks, out_blocks, block_size, activation, packed_in=True,',
        "the dispatcher passes every argument to a registered fake (the schema's defaults filled in)"),
    'amgp_kernels.backends.x_get_backend__mutmut_8': (
        'return _check_name(os.environ.get("AMGP_BACKEND", None) or "auto", "AMGP_BACKEND")',
        "None or 'auto' is 'auto', as the default was"),
    'amgp_kernels.backends.x_get_backend__mutmut_10': (
        'return _check_name(os.environ.get("AMGP_BACKEND", ) or "auto", "AMGP_BACKEND")',
        "None or 'auto' is 'auto', as the default was"),
    # amgp_kernels.active_step
    'amgp_kernels.active_step.x__active_index__mutmut_3': (
        'return torch.arange(features, device=None)',
        'CPU indices work on a tensor of any device: the same entries'),
    'amgp_kernels.active_step.x__active_index__mutmut_5': (
        'return torch.arange(features, )',
        'CPU indices work on a tensor of any device: the same entries'),
    'amgp_kernels.active_step.x__active_index__mutmut_27': (
        'return torch.nonzero(channel_mask(blocks, features, block_size, None)).flatten()',
        "the mask is made on the blocks' device, which is param's: the same entries"),
    'amgp_kernels.active_step.x__active_index__mutmut_31': (
        'return torch.nonzero(channel_mask(blocks, features, block_size, )).flatten()',
        "the mask is made on the blocks' device, which is param's: the same entries"),
    'amgp_kernels.active_step.x_active_adagrad_step___mutmut_60': (
        's.addcmul_(d, d, )',
        "value=1 is addcmul_'s default"),
    'amgp_kernels.active_step.x_active_adam_step___mutmut_61': (
        'if decay_factor != 2:',
        "AdamW's factor 1 - lr * weight_decay is below 1, never 2; 1 skips a multiplication by 1"),
    'amgp_kernels.active_step.x_active_sgd_step___mutmut_51': (
        'torch.ops.amgp.active_sgd_step_(param, grad, momentum_buffer if (momentum != 0) or True else None, out_blocks,',
        'with momentum 0 the compiled kernel neither reads nor writes the buffer (checked by hand)'),
    # amgp.trainer_parts
    'amgp.trainer_parts.x_build_schedule__mutmut_11': (
        'phases = dict(final_dense=0, cycles=1, end_full_size=False)',
        'the static plan has one cycle: no dense phases between, whatever dense_steps'),
    'amgp.trainer_parts.x_build_schedule__mutmut_15': (
        'phases = dict(final_dense=0, dense_steps=1, cycles=1, end_full_size=False)',
        'the static plan has one cycle: no dense phases between, whatever dense_steps'),
    'amgp.trainer_parts.x_build_schedule__mutmut_9': (
        'phases = dict(final_dense=0, dense_steps=0, cycles=1, end_full_size=None)',
        'None is falsy like False'),
}


NEEDS_GPU = {
    "amgp.sparse_mlp.xǁSparseMLPǁ__init____mutmut_24": (
        "SparseLinear(sizes[i], sizes[i + 1], bias=bias, block_size=block_size, device=None, dtype=dtype,",
        "test_sparse_mlp_construction.py::test_the_device_reaches_every_layer"),
    "amgp.sparse_mlp.xǁSparseMLPǁ__init____mutmut_32": (
        "SparseLinear(sizes[i], sizes[i + 1], bias=bias, block_size=block_size, dtype=dtype,",
        "test_sparse_mlp_construction.py::test_the_device_reaches_every_layer"),
    "amgp.recurring.x_continue_training__mutmut_31": (
        "before = evaluate(trainer.model, trainer.test_batches, None)",
        "test batches would stay on the CPU: a --use-gpu recurring run (no CPU-only test can tell)"),
    "amgp.pruner.xǁBlockPrunerǁ__init____mutmut_36": (
        "self._taylor = {name: torch.zeros(layer.n_out_blocks, dtype=torch.float64, device=None)",
        "Taylor scores of a GPU layer kept on the CPU (no CPU-only test can tell)"),
    "amgp.pruner.xǁBlockPrunerǁ__init____mutmut_39": (
        "self._taylor = {name: torch.zeros(layer.n_out_blocks, dtype=torch.float64, )",
        "Taylor scores of a GPU layer kept on the CPU (no CPU-only test can tell)"),
    "amgp.checkpoint.x_capture_rng_state__mutmut_6": (
        '"cuda": torch.cuda.get_rng_state_all() if (torch.cuda.is_available()) and False else [],',
        "GPU RNG states not saved: test_checkpoint.py's resume tests on a GPU machine"),
    "amgp.checkpoint.x_restore_rng_state__mutmut_7": (
        "torch.cuda.set_rng_state_all(None)", "GPU RNG states not restored: resume tests on a GPU machine"),
    "amgp.checkpoint.x_restore_rng_state__mutmut_8": (
        'torch.cuda.set_rng_state_all(state["XXcudaXX"])', "GPU RNG states not restored: resume tests on a GPU machine"),
    "amgp.checkpoint.x_restore_rng_state__mutmut_9": (
        'torch.cuda.set_rng_state_all(state["CUDA"])', "GPU RNG states not restored: resume tests on a GPU machine"),
    "amgp.checkpoint.x_load_checkpoint__mutmut_11": (
        "state = torch.load(path, map_location=None, weights_only=True)",
        "a GPU checkpoint would load onto the GPU, not the CPU asked for"),
    "amgp.checkpoint.x_load_checkpoint__mutmut_14": (
        "state = torch.load(path, weights_only=True)", "a GPU checkpoint would load onto the GPU, not the CPU asked for"),
    "amgp.checkpoint.x__process_alive__mutmut_6": (
        "return False  # no harmless liveness probe (os.kill would signal it): keep the file",
        "not POSIX (Windows) only: this Linux machine never takes the branch"),
    "amgp.pruning.x__uniform_like__mutmut_13": (
        "return values.to(device=None)", "grown values left on the CPU for a GPU layer: growth on a GPU machine"),
    'amgp.sparse_linear.xǁSparseLinearǁ__init____mutmut_107': (
        'self.register_buffer("in_mask", torch.ones(num_blocks(in_features, block_size), dtype=torch.bool, device=None))',
        'in_mask made on the default device: a GPU-constructed layer'),
    'amgp.sparse_linear.xǁSparseLinearǁ__init____mutmut_110': (
        'self.register_buffer("in_mask", torch.ones(num_blocks(in_features, block_size), dtype=torch.bool, ))',
        'in_mask made on the default device: a GPU-constructed layer'),
    'amgp.sparse_linear.xǁSparseLinearǁ__init____mutmut_91': (
        'self.register_buffer("out_mask", torch.ones(num_blocks(out_features, block_size), dtype=torch.bool, device=None))',
        'out_mask made on the default device: a GPU-constructed layer'),
    'amgp.sparse_linear.xǁSparseLinearǁ__init____mutmut_94': (
        'self.register_buffer("out_mask", torch.ones(num_blocks(out_features, block_size), dtype=torch.bool, ))',
        'out_mask made on the default device: a GPU-constructed layer'),
    'amgp.sparse_linear.xǁSparseLinearǁ__init____mutmut_120': (
        'self.register_buffer("XXout_indexXX", None, persistent=False)',
        'the index list is a plain attribute, not moved by .to(): a layer moved to a GPU'),
    'amgp.sparse_linear.xǁSparseLinearǁ__init____mutmut_121': (
        'self.register_buffer("OUT_INDEX", None, persistent=False)',
        'the index list is a plain attribute, not moved by .to(): a layer moved to a GPU'),
    'amgp.sparse_linear.xǁSparseLinearǁ__init____mutmut_128': (
        'self.register_buffer("XXin_indexXX", None, persistent=False)',
        'the index list is a plain attribute, not moved by .to(): a layer moved to a GPU'),
    'amgp.sparse_linear.xǁSparseLinearǁ__init____mutmut_129': (
        'self.register_buffer("IN_INDEX", None, persistent=False)',
        'the index list is a plain attribute, not moved by .to(): a layer moved to a GPU'),
    'amgp.sparse_linear.xǁSparseLinearǁ_set_mask__mutmut_10': (
        'mask = as_block_mask(mask, buffer.numel(), name, device=None)',
        'the new mask is built on the CPU and copied: a GPU layer (same values)'),
    'amgp.sparse_linear.xǁSparseLinearǁ_set_mask__mutmut_14': (
        'mask = as_block_mask(mask, buffer.numel(), name, )',
        'the new mask is built on the CPU and copied: a GPU layer (same values)'),
    'amgp.sparse_linear.xǁSparseLinearǁfrom_linear__mutmut_8': (
        'device = None',
        'masks made on the default device: from_linear of a GPU Linear'),
    'amgp.sparse_linear.xǁSparseLinearǁfrom_linear__mutmut_18': (
        'device=None, dtype=linear.weight.dtype, activation=activation, backend=backend)',
        'the copy made on the default device: from_linear of a GPU Linear'),
    'amgp.sparse_linear.xǁSparseLinearǁfrom_linear__mutmut_26': (
        'dtype=linear.weight.dtype, activation=activation, backend=backend)',
        'the copy made on the default device: from_linear of a GPU Linear'),
    'amgp.sparse_linear.xǁSparseLinearǁto_linear__mutmut_5': (
        'device=None, dtype=self.weight.dtype)',
        'the nn.Linear made on the default device: to_linear of a GPU layer'),
    'amgp.sparse_linear.xǁSparseLinearǁto_linear__mutmut_10': (
        'dtype=self.weight.dtype)',
        'the nn.Linear made on the default device: to_linear of a GPU layer'),
    # amgp_kernels.blocks.channel_mask: the block flags made on the CPU, set through CUDA block indices, fail there;
    # on this machine every real device is the CPU ("meta" tensors accept either).
    "amgp_kernels.blocks.x_channel_mask__mutmut_17": (
        "active = torch.zeros(num_blocks(features, block_size), dtype=torch.bool, device=None)",
        "CUDA block indices into a CPU tensor: channel_mask of CUDA blocks (test_block_linear.py on a GPU)"),
    "amgp_kernels.blocks.x_channel_mask__mutmut_20": (
        "active = torch.zeros(num_blocks(features, block_size), dtype=torch.bool, )",
        "CUDA block indices into a CPU tensor: channel_mask of CUDA blocks (test_block_linear.py on a GPU)"),
    # amgp.distributed: the GPU path (nccl, CUDA devices); on this machine only gloo on the CPU runs.
    'amgp.distributed.x_init_from_env__mutmut_20': (
        'device = None',
        "GPU only: use_gpu=True under torchrun (test_distributed.py's GPU run)"),
    'amgp.distributed.x_init_from_env__mutmut_21': (
        'device = torch.device(None, int(os.environ.get("LOCAL_RANK", "0")))',
        "GPU only: use_gpu=True under torchrun (test_distributed.py's GPU run)"),
    'amgp.distributed.x_init_from_env__mutmut_22': (
        'device = torch.device("cuda", None)',
        "GPU only: use_gpu=True under torchrun (test_distributed.py's GPU run)"),
    'amgp.distributed.x_init_from_env__mutmut_23': (
        'device = torch.device(int(os.environ.get("LOCAL_RANK", "0")))',
        "GPU only: use_gpu=True under torchrun (test_distributed.py's GPU run)"),
    'amgp.distributed.x_init_from_env__mutmut_24': (
        'device = torch.device("cuda", )',
        "GPU only: use_gpu=True under torchrun (test_distributed.py's GPU run)"),
    'amgp.distributed.x_init_from_env__mutmut_25': (
        'device = torch.device("XXcudaXX", int(os.environ.get("LOCAL_RANK", "0")))',
        "GPU only: use_gpu=True under torchrun (test_distributed.py's GPU run)"),
    'amgp.distributed.x_init_from_env__mutmut_26': (
        'device = torch.device("CUDA", int(os.environ.get("LOCAL_RANK", "0")))',
        "GPU only: use_gpu=True under torchrun (test_distributed.py's GPU run)"),
    'amgp.distributed.x_init_from_env__mutmut_27': (
        'device = torch.device("cuda", int(None))',
        "GPU only: use_gpu=True under torchrun (test_distributed.py's GPU run)"),
    'amgp.distributed.x_init_from_env__mutmut_28': (
        'device = torch.device("cuda", int(os.environ.get(None, "0")))',
        "GPU only: use_gpu=True under torchrun (test_distributed.py's GPU run)"),
    'amgp.distributed.x_init_from_env__mutmut_29': (
        'device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", None)))',
        "GPU only: use_gpu=True under torchrun (test_distributed.py's GPU run)"),
    'amgp.distributed.x_init_from_env__mutmut_30': (
        'device = torch.device("cuda", int(os.environ.get("0")))',
        "GPU only: use_gpu=True under torchrun (test_distributed.py's GPU run)"),
    'amgp.distributed.x_init_from_env__mutmut_31': (
        'device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", )))',
        "GPU only: use_gpu=True under torchrun (test_distributed.py's GPU run)"),
    'amgp.distributed.x_init_from_env__mutmut_32': (
        'device = torch.device("cuda", int(os.environ.get("XXLOCAL_RANKXX", "0")))',
        "GPU only: use_gpu=True under torchrun (test_distributed.py's GPU run)"),
    'amgp.distributed.x_init_from_env__mutmut_33': (
        'device = torch.device("cuda", int(os.environ.get("local_rank", "0")))',
        "GPU only: use_gpu=True under torchrun (test_distributed.py's GPU run)"),
    'amgp.distributed.x_init_from_env__mutmut_34': (
        'device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "XX0XX")))',
        "GPU only: use_gpu=True under torchrun (test_distributed.py's GPU run)"),
    'amgp.distributed.x_init_from_env__mutmut_35': (
        'torch.cuda.set_device(None)',
        "GPU only: use_gpu=True under torchrun (test_distributed.py's GPU run)"),
    'amgp.distributed.x_init_from_env__mutmut_38': (
        'backend, timeout = "nccl" if (use_gpu) and False else "gloo", datetime.timedelta(seconds=timeout_s)',
        "GPU only: use_gpu=True under torchrun (test_distributed.py's GPU run)"),
    'amgp.distributed.x_init_from_env__mutmut_40': (
        'backend, timeout = "XXncclXX" if use_gpu else "gloo", datetime.timedelta(seconds=timeout_s)',
        "GPU only: use_gpu=True under torchrun (test_distributed.py's GPU run)"),
    'amgp.distributed.x_broadcast_masks__mutmut_7': (
        'wire = mask.to(None).contiguous()  # not every backend broadcasts bool tensors',
        "GPU only: NCCL (no bool broadcast, CUDA tensors) in broadcast_masks (test_distributed.py's GPU run)"),
    'amgp.distributed.x_broadcast_masks__mutmut_9': (
        'if dist.get_backend() == "XXncclXX":',
        "GPU only: NCCL (no bool broadcast, CUDA tensors) in broadcast_masks (test_distributed.py's GPU run)"),
    'amgp.distributed.x_broadcast_masks__mutmut_10': (
        'if dist.get_backend() == "NCCL":',
        "GPU only: NCCL (no bool broadcast, CUDA tensors) in broadcast_masks (test_distributed.py's GPU run)"),
    'amgp.distributed.x_broadcast_masks__mutmut_11': (
        'wire = None',
        "GPU only: NCCL (no bool broadcast, CUDA tensors) in broadcast_masks (test_distributed.py's GPU run)"),
    'amgp.distributed.x_broadcast_masks__mutmut_17': (
        'result[name] = wire.to(device=None, dtype=torch.bool)',
        "GPU only: NCCL (no bool broadcast, CUDA tensors) in broadcast_masks (test_distributed.py's GPU run)"),
    'amgp.distributed.x_broadcast_masks__mutmut_19': (
        'result[name] = wire.to(dtype=torch.bool)',
        "GPU only: NCCL (no bool broadcast, CUDA tensors) in broadcast_masks (test_distributed.py's GPU run)"),
    'amgp.distributed.x_data_parallel__mutmut_21': (
        'return nn.parallel.DistributedDataParallel(wrapped, device_ids=None)',
        "GPU only: a CUDA model's device_ids in DistributedDataParallel (test_distributed.py's GPU run)"),
    'amgp.distributed.x_data_parallel__mutmut_23': (
        'return nn.parallel.DistributedDataParallel(wrapped, )',
        "GPU only: a CUDA model's device_ids in DistributedDataParallel (test_distributed.py's GPU run)"),
    'amgp.distributed.x_data_parallel__mutmut_24': (
        'return nn.parallel.DistributedDataParallel(wrapped, device_ids=[device.index] if (device.type == "cuda") and False else None)',
        "GPU only: a CUDA model's device_ids in DistributedDataParallel (test_distributed.py's GPU run)"),
    'amgp.distributed.x_data_parallel__mutmut_27': (
        'return nn.parallel.DistributedDataParallel(wrapped, device_ids=[device.index] if device.type == "XXcudaXX" else None)',
        "GPU only: a CUDA model's device_ids in DistributedDataParallel (test_distributed.py's GPU run)"),
    'amgp.distributed.x_data_parallel__mutmut_28': (
        'return nn.parallel.DistributedDataParallel(wrapped, device_ids=[device.index] if device.type == "CUDA" else None)',
        "GPU only: a CUDA model's device_ids in DistributedDataParallel (test_distributed.py's GPU run)"),
    'amgp.distributed.x_differing_state__mutmut_13': (
        'wire = reference.view(torch.uint8) if (reference.dtype == torch.bool) and False else reference',
        'GPU only: NCCL cannot broadcast bool tensors (gloo can): differing_state under NCCL'),
    'amgp.distributed.x_differing_state__mutmut_14': (
        'wire = reference.view(torch.uint8) if (reference.dtype == torch.bool) or True else reference',
        'GPU only: NCCL cannot broadcast bool tensors (gloo can): differing_state under NCCL'),
    'amgp.distributed.x_differing_state__mutmut_16': (
        'wire = reference.view(torch.uint8) if reference.dtype != torch.bool else reference',
        'GPU only: NCCL cannot broadcast bool tensors (gloo can): differing_state under NCCL'),
    'amgp.distributed.x_init_from_env__mutmut_52': (
        'init_process_group(backend, timeout=None)',
        "GPU only: no timeout is gloo's default, 30 min = the 1800 s asked for; nccl's default is 10 min"),
    'amgp.distributed.x_init_from_env__mutmut_54': (
        'init_process_group(backend, )',
        "GPU only: no timeout is gloo's default, 30 min = the 1800 s asked for; nccl's default is 10 min"),
    'amgp.trainer_parts.x_build_model__mutmut_16': (
        'sparse=sparse, sparse_grad=sparse_embedding_grad(config), backend=config.backend, device=None)',
        "GPU only: the model built on the default device instead of the trainer's (a GPU run)"),
    'amgp.trainer_parts.x_build_model__mutmut_27': (
        'sparse=sparse, sparse_grad=sparse_embedding_grad(config), backend=config.backend, )',
        "GPU only: the model built on the default device instead of the trainer's (a GPU run)"),
    'amgp.trainer_parts.xǁEnginePartsǁbuild_model__mutmut_3': (
        'return build_model(self.config, self.data, None)',
        "GPU only: the model built on the default device instead of the trainer's (a GPU run)"),
}
