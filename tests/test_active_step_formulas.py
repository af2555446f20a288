"""amgp_kernels.active_step's updates against their documented formulas, written densely here, on both paths: the
compiled kernel (contiguous float64) and the torch-ops path that GPU tensors and other layouts take (a transposed
view): the active entries follow the formula, the others stay as they were. Also the errors that name the argument."""
import pytest
import torch

from amgp_kernels.active_step import active_adagrad_step_, active_adam_step_, active_sgd_step_

OUT_BLOCKS, IN_BLOCKS, BS = torch.tensor([0, 2], dtype=torch.int32), torch.tensor([1], dtype=torch.int32), 4
ACTIVE = torch.zeros(10, 7, dtype=torch.bool)
ACTIVE[[0, 1, 2, 3, 8, 9], 4:] = True  # rows of output blocks 0 and 2 (short), columns of input block 1 (short)


def tensors(count, seed, layout):
    gen = torch.Generator().manual_seed(seed)
    made = [torch.rand(10, 7, generator=gen, dtype=torch.float64) + 0.5 for _ in range(count)]
    return made if layout == "contiguous" else [t.t().contiguous().t() for t in made]  # same values, transposed


def check(updated, before, want):
    for new, old, formula in zip(updated, before, want):
        torch.testing.assert_close(new[ACTIVE], formula[ACTIVE], rtol=1e-12, atol=1e-12)
        assert torch.equal(new[~ACTIVE], old[~ACTIVE])


LAYOUTS = ["contiguous", "transposed"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("nesterov, first_step", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("wd, momentum", [(0.01, 0.9), (1.0, 1.0)])
def test_sgd_with_weight_decay_momentum_and_dampening(layout, nesterov, first_step, wd, momentum):
    param, grad, buf = tensors(3, 0, layout)
    before = [param.clone(), buf.clone()]
    lr, dampening = 0.1, 0.2
    d = grad + wd * before[0]
    new_buf = d.clone() if first_step else before[1] * momentum + (1 - dampening) * d
    step = d + momentum * new_buf if nesterov else new_buf
    active_sgd_step_(param, grad, buf, OUT_BLOCKS, IN_BLOCKS, BS, lr, wd, momentum, dampening, nesterov, first_step)
    check([param, buf], before, [before[0] - lr * step, new_buf])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_sgd_without_momentum_needs_no_buffer(layout):
    param, grad = tensors(2, 1, layout)
    before = param.clone()
    active_sgd_step_(param, grad, None, OUT_BLOCKS, IN_BLOCKS, BS, 0.1, 0.0, 0.0, 0.0, False, False)
    check([param], [before], [before - 0.1 * grad])


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("weight_decay, decay_factor", [(0.01, 1.0), (1.0, 1.0), (0.0, 0.99)])  # Adam's L2, AdamW's
def test_adam_and_adamw(layout, weight_decay, decay_factor):
    param, grad, m, v = tensors(4, 2, layout)
    before = [param.clone(), m.clone(), v.clone()]
    beta1, beta2, eps, step_size, correction = 0.9, 0.99, 1e-3, 0.05, 0.7
    p = before[0] * decay_factor
    d = grad + weight_decay * p
    new_m = before[1] + (1 - beta1) * (d - before[1])
    new_v = before[2] * beta2 + (1 - beta2) * d * d
    want_p = p - step_size * new_m / (new_v.sqrt() / correction + eps)
    active_adam_step_(param, grad, m, v, OUT_BLOCKS, IN_BLOCKS, BS, beta1, beta2, eps, weight_decay, decay_factor,
                      step_size, correction)
    check([param, m, v], before, [want_p, new_m, new_v])


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("weight_decay", [0.0, 0.01, 1.0])
def test_adagrad(layout, weight_decay):
    param, grad, state = tensors(3, 3, layout)
    before = [param.clone(), state.clone()]
    clr, eps = 0.1, 1e-3
    d = grad + weight_decay * before[0]
    new_state = before[1] + d * d
    active_adagrad_step_(param, grad, state, OUT_BLOCKS, IN_BLOCKS, BS, clr, weight_decay, eps)
    check([param, state], before, [before[0] - clr * d / (new_state.sqrt() + eps), new_state])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_bias_updates_its_active_output_channels(layout):
    param, grad, state = (t[:, 0].contiguous() if layout == "contiguous" else t[:, 0] for t in tensors(3, 4, layout))
    before = [param.clone(), state.clone()]
    active_adagrad_step_(param, grad, state, OUT_BLOCKS, None, BS, 0.1, 0.0, 1e-3)
    rows = ACTIVE.any(dim=1)
    new_state = before[1] + grad * grad
    want = before[0] - 0.1 * grad / (new_state.sqrt() + 1e-3)
    torch.testing.assert_close(param[rows], want[rows], rtol=1e-12, atol=1e-12)
    assert torch.equal(param[~rows], before[0][~rows]) and torch.equal(state[~rows], before[1][~rows])


def test_every_block_when_no_list_is_given():
    param, grad = tensors(2, 5, "transposed")
    before = param.clone()
    active_sgd_step_(param, grad, None, None, None, BS, 0.5, 0.0, 0.0, 0.0, False, False)
    torch.testing.assert_close(param, before - 0.5 * grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["grad", "exp_avg", "exp_avg_sq"])
def test_adam_names_the_tensor_that_does_not_fit(name):
    param, grad, m, v = tensors(4, 7, "contiguous")
    given = {"grad": grad, "exp_avg": m, "exp_avg_sq": v}
    given[name] = given[name].float()
    with pytest.raises(ValueError, match=rf"^{name} must have param's shape, dtype and device"):
        active_adam_step_(param, given["grad"], given["exp_avg"], given["exp_avg_sq"], None, None, 4, 0.9, 0.99,
                          1e-3, 0.0, 1.0, 0.1, 1.0)
    for side in ("out_blocks", "in_blocks"):
        blocks = {"out_blocks": None, "in_blocks": None, side: torch.tensor([0])}
        with pytest.raises(TypeError, match=rf"^{side} must be a 1-D int32 tensor"):
            active_adam_step_(param, grad, m, v, blocks["out_blocks"], blocks["in_blocks"], 4, 0.9, 0.99, 1e-3, 0.0,
                              1.0, 0.1, 1.0)


@pytest.mark.parametrize("name", ["grad", "momentum_buffer", "state_sum"])
def test_sgd_and_adagrad_name_the_tensor_that_does_not_fit(name):
    param, grad, other = tensors(3, 8, "contiguous")
    if name == "state_sum":
        with pytest.raises(ValueError, match=r"^grad must have param's shape"):
            active_adagrad_step_(param, grad.float(), other, None, None, 4, 0.1, 0.0, 1e-3)
        return
    given = {"grad": grad, "momentum_buffer": other}
    given[name] = given[name].float()
    with pytest.raises(ValueError, match=rf"^{name} must have param's shape"):
        active_sgd_step_(param, given["grad"], given["momentum_buffer"], None, None, 4, 0.1, 0.0, 0.9, 0.0, False,
                         False)
    if name == "grad":  # without momentum, too
        with pytest.raises(ValueError, match=r"^grad must have param's shape"):
            active_sgd_step_(param, given["grad"], None, None, None, 4, 0.1, 0.0, 0.0, 0.0, False, False)


@pytest.mark.parametrize("call, error, message", [
    (lambda p, g: active_adagrad_step_(p, g, [1.0], None, None, 4, 0.1, 0.0, 1e-3), TypeError,
     r"^state_sum must be a tensor, got list$"),
    (lambda p, g: active_adagrad_step_(p, g, torch.zeros(10, 6), None, None, 4, 0.1, 0.0, 1e-3), ValueError,
     r"^state_sum must have param's shape, dtype and device \(10, 7\), torch\.float64, cpu; got \(10, 6\), "
     r"torch\.float32, cpu$"),
    (lambda p, g: active_adagrad_step_(p, g, g.float(), None, None, 4, 0.1, 0.0, 1e-3), ValueError,
     r"^state_sum must have param's shape, dtype and device"),
    (lambda p, g: active_adagrad_step_(p, g, g.clone(), None, None, 0, 0.1, 0.0, 1e-3), ValueError,
     r"^block_size must be a positive int, got 0$"),
    (lambda p, g: active_adagrad_step_(p, g, g.clone(), None, torch.tensor([0]), 4, 0.1, 0.0, 1e-3), TypeError,
     r"^in_blocks must be a 1-D int32 tensor of block indices or None, got a 1-D torch\.int64 tensor$"),
    (lambda p, g: active_adagrad_step_(p, g, g.clone(), [0], None, 4, 0.1, 0.0, 1e-3), TypeError,
     r"^out_blocks must be a 1-D int32 tensor of block indices or None, got list$"),
    (lambda p, g: active_adagrad_step_(p[0], g[0], g[0].clone(), None, OUT_BLOCKS, 4, 0.1, 0.0, 1e-3), ValueError,
     r"^in_blocks must be None for a 1-D param \(a bias has no input channels\)$"),
    (lambda p, g: active_adagrad_step_(p[None], g[None], g[None].clone(), None, None, 4, 0.1, 0.0, 1e-3), TypeError,
     r"^param must be a 1-D \(bias\) or 2-D \(weight\) tensor, got a 3-D torch\.float64 tensor$"),
    (lambda p, g: active_adagrad_step_(p, g, g.clone(), torch.tensor([3], dtype=torch.int32), None, 4, 0.1, 0.0,
                                       1e-3), ValueError,  # (the torch-ops path: p is a transposed view)
     r"^block indices must be in \[0, 3\) for 10 channels of block_size 4$"),
])
def test_bad_arguments_are_named(call, error, message):
    param, grad = tensors(2, 6, "transposed")
    with pytest.raises(error, match=message):
        call(param, grad)
