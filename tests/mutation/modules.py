"""Which test files cover which module, for tests/mutation/run.py: a mutant is run against these files only
(mutmut then narrows that to the tests that call the mutated function), which keeps a run short on 2 cores.
Add a test file here when it is written for a module; a module missing here is not mutated."""

# Training side (the modules issue 22 sets a >= 90% target for), smallest first.
TRAINING = {
    "amgp/masks.py": ["test_block_masks.py", "test_sparse_linear.py", "test_sparsify.py"],
    "amgp/meter.py": ["test_cost_meter.py", "test_flops.py", "test_schedule.py"],
    "amgp/phases.py": ["test_phases.py", "test_schedule.py", "test_flops.py"],
    "amgp/sparse_mlp.py": ["test_sparse_mlp_construction.py", "test_sparse_mlp_and_pruning.py", "test_sparse_mlp_call_path.py"],
    "amgp/chain_plan.py": ["test_sparse_mlp_call_path.py", "test_sparse_linear_call_path.py"],
    "amgp/recurring.py": ["test_recurring.py", "test_experiment.py"],
    "amgp/schedule.py": ["test_schedule_arguments.py", "test_schedule.py", "test_sparsify.py"],
    "amgp/flops.py": ["test_flops_budgets.py", "test_flops.py"],
    "amgp/pruner.py": ["test_block_pruner.py", "test_schedule_arguments.py", "test_schedule.py", "test_pruning_several_consumers.py"],
    "amgp/checkpoint.py": ["test_checkpoint_files.py", "test_checkpoint.py", "test_resume.py"],
    # test_distributed.py also runs amgp-dlrm in fresh interpreters, which cannot import the mutants' mutmut hooks.
    # test_distributed_threads.py: two ranks as threads of the test process, so mutmut sees their calls.
    "amgp/distributed.py": ["test_distributed_single_process.py", "test_distributed_threads.py", "test_differing_state.py"],
    "amgp/pruning.py": ["test_pruning_functions.py", "test_sparse_mlp_and_pruning.py", "test_pruning_several_consumers.py", "test_sparsify.py",
                        "test_schedule.py"],
    # The tiny runs and hand-made reports: test_experiment.py / test_experiment_seeds.py retrain larger models
    # (hours under mutmut) and test the same code end to end.
    "amgp/experiment.py": ["test_experiment_tiny.py", "test_experiment_statistics.py"],
    "amgp/experiment_stats.py": ["test_experiment_statistics.py", "test_experiment_tiny.py"],
    "amgp/sparsify.py": ["test_sparsify_wiring.py", "test_sparsify.py", "test_sparsify_chains_and_steps.py"],
    "amgp/sparse_linear.py": ["test_sparse_linear_api.py", "test_sparse_linear.py", "test_tied_masks_after_moves.py", "test_sparsify.py",
                              "test_sparse_linear_call_path.py"],
}

# The Python side of amgp_kernels (the compiled extension and the Triton kernels are not mutated).
KERNELS = {
    "amgp_kernels/blocks.py": ["test_block_geometry.py", "test_block_linear_cpu.py"],
    "amgp_kernels/checks.py": ["test_argument_messages.py", "test_bad_input.py", "test_block_linear_cpu.py"],
    "amgp_kernels/reference.py": ["test_reference_and_fake_shapes.py", "test_block_linear_cpu.py", "test_error_bounds.py"],
    "amgp_kernels/api.py": ["test_block_linear_cpu.py", "test_bad_input.py", "test_argument_messages.py"],
    # (test_block_linear.py checks every backend and gradient too, but takes about a minute a mutant here)
    "amgp_kernels/autograd.py": ["test_reference_and_fake_shapes.py", "test_block_linear_cpu.py"],
    "amgp_kernels/backends.py": ["test_backend_choice.py", "test_block_linear_cpu.py", "test_bad_input.py"],
    "amgp_kernels/active_step.py": ["test_active_step_formulas.py", "test_active_step.py"],
}

# The rest of python_api/amgp (cli and bench are not mutated: their tests run the programs in subprocesses).
OTHER = {
    "amgp/config.py": ["test_cli.py", "test_api_types.py"],
    "amgp/config_checks.py": ["test_cli.py", "test_bad_input_modules.py"],
    "amgp/dlrm.py": ["test_dlrm.py"],
    "amgp/train.py": ["test_dlrm.py", "test_resume.py"],
    "amgp/trainer_state.py": ["test_resume.py", "test_crash_safety.py"],
    "amgp/checkpoint_model.py": ["test_checkpoint.py"],
    "amgp/run_report.py": ["test_dlrm.py"],
    "amgp/run_messages.py": ["test_cli_messages.py"],
    "amgp/interrupt.py": ["test_crash_safety.py"],
    "amgp/metrics.py": ["test_dlrm.py"],
    "amgp/engines.py": ["test_dlrm.py"],
    "amgp/demo.py": ["test_demo_and_build.py"],
    "amgp/active_step.py": ["test_active_step.py"],
    "amgp/comm_hook.py": ["test_comm_hook.py"],
    "amgp/workers.py": ["test_workers.py"],
    # (test_cli_messages.py runs the CLI in fresh interpreters, which cannot import the mutants' mutmut hooks)
    "amgp/progress.py": ["test_experiment_tiny.py"],
    # (reached through amgp.train.Trainer only; test_dlrm.py runs the CLI in fresh interpreters)
    "amgp/trainer_parts.py": ["test_trainer_parts.py", "test_experiment_tiny.py", "test_resume.py"],
}

MODULES = {**TRAINING, **KERNELS, **OTHER}

# Modules whose functions run in child processes (torch.multiprocessing ranks): mutmut only sees the calls made in
# its own process, so the mutants it finds no test for are run again here, each in a fresh pytest process whose
# children inherit the mutant (MUTANT_UNDER_TEST), against these test files.
CHILD_PROCESS_TESTS = {"amgp/distributed.py": ["test_differing_state.py"], "amgp/comm_hook.py": ["test_comm_hook.py"],
                       "amgp/workers.py": ["test_workers.py"]}
GROUPS = {"training": TRAINING, "kernels": KERNELS, "other": OTHER, "all": MODULES}
