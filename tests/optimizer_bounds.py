"""Derived error bounds for comparing two implementations of torch.optim's SGD / Adam(W) / Adagrad updates.

Running forward error analysis: each function takes the values one step starts from (param, grad, state, from
the reference run), the bound E of how far each of them may already be from exact arithmetic, and returns
the bounds after the step. Every rounding adds gamma_k * (the magnitudes it combines), gamma_k = k u / (1 - k u)
(k roundings in a row; an FMA has fewer, never more); errors carried in are propagated through the update's
derivatives. Two correct implementations each lie within E of the exact result, so they differ by <= 2 E.
"""
import torch


def gamma(k, dtype):
    u = torch.finfo(dtype).eps / 2
    return k * u / (1 - k * u)


def _sqrt_error(value, error, dtype):
    """How far sqrt(value) computed from a value `error` off may be from exact (sqrt is 1/2-Lipschitz in
    relative terms, and |sqrt(a) - sqrt(b)| <= sqrt(|a - b|) where value is tiny)."""
    root = value.clamp_min(0).sqrt()
    carried = torch.minimum(error.sqrt(), error / (2 * root).clamp_min(torch.finfo(value.dtype).tiny))
    return carried + gamma(1, dtype) * root


def _decayed_grad(p, g, E_p, wd, dtype):
    d = g + wd * p
    return d, abs(wd) * E_p + gamma(2, dtype) * (g.abs() + abs(wd) * p.abs())


def sgd_bound(p, g, state, E, group, dtype):
    """E: {'param', 'momentum_buffer'} -> bounds; state: torch.optim's state before the step."""
    lr, mom, keep = group["lr"], group["momentum"], 1 - group["dampening"]
    d, E_d = _decayed_grad(p, g, E["param"], group["weight_decay"], dtype)
    if mom != 0:
        b = state.get("momentum_buffer")
        if b is None:
            b_new, E_b = d, E_d
        else:
            b_new = mom * b + keep * d
            E_b = abs(mom) * E["momentum_buffer"] + abs(keep) * E_d + gamma(3, dtype) * (abs(mom) * b.abs() + abs(keep) * d.abs())
        E["momentum_buffer"] = E_b
        if group["nesterov"]:
            E_d = E_d + abs(mom) * E_b + gamma(2, dtype) * (d.abs() + abs(mom) * b_new.abs())
            d = d + mom * b_new
        else:
            d, E_d = b_new, E_b
    E["param"] = E["param"] + lr * E_d + gamma(2, dtype) * (p.abs() + lr * d.abs())
    return E


def _quotient(num, E_num, den, E_den, dtype):
    q = num / den
    return q, E_num / den + num.abs() * E_den / (den * (den - E_den).clamp_min(den * 0.5)) + gamma(1, dtype) * q.abs()


def adam_bound(p, g, state, E, group, dtype):
    """E: {'param', 'exp_avg', 'exp_avg_sq'}; state before the step (empty before the first one)."""
    lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    step = float(state["step"]) + 1 if "step" in state else 1.0
    m = state.get("exp_avg", torch.zeros_like(p))
    v = state.get("exp_avg_sq", torch.zeros_like(p))
    E_p = E["param"]
    if group.get("decoupled_weight_decay") and wd != 0:
        p = p * (1 - lr * wd)
        E_p = abs(1 - lr * wd) * E_p + gamma(1, dtype) * p.abs()
        wd = 0.0
    d, E_d = _decayed_grad(p, g, E_p, wd, dtype)
    w1 = 1 - beta1
    m_new = m + w1 * (d - m)
    E_m = abs(1 - w1) * E["exp_avg"] + abs(w1) * E_d + gamma(3, dtype) * (m.abs() + d.abs() + m.abs())
    v_new = beta2 * v + (1 - beta2) * d * d
    E_v = beta2 * E["exp_avg_sq"] + (1 - beta2) * 2 * d.abs() * E_d + gamma(4, dtype) * (beta2 * v + (1 - beta2) * d * d)
    bc1, bc2_sqrt = 1 - beta1**step, (1 - beta2**step) ** 0.5
    den = v_new.sqrt() / bc2_sqrt + eps
    E_den = _sqrt_error(v_new, E_v, dtype) / bc2_sqrt + gamma(2, dtype) * den
    q, E_q = _quotient(m_new, E_m, den, E_den, dtype)
    step_size = lr / bc1
    E["param"] = E_p + step_size * E_q + gamma(2, dtype) * (p.abs() + step_size * q.abs())
    E["exp_avg"], E["exp_avg_sq"] = E_m, E_v
    return E


def adagrad_bound(p, g, state, E, group, dtype):
    """E: {'param', 'sum'}; state before the step."""
    step = float(state["step"]) + 1
    clr = group["lr"] / (1 + (step - 1) * group["lr_decay"])
    d, E_d = _decayed_grad(p, g, E["param"], group["weight_decay"], dtype)
    s = state["sum"] + d * d
    E_s = E["sum"] + 2 * d.abs() * E_d + gamma(2, dtype) * s
    std = s.sqrt() + group["eps"]
    E_std = _sqrt_error(s, E_s, dtype) + gamma(1, dtype) * std
    q, E_q = _quotient(d, E_d, std, E_std, dtype)
    E["param"] = E["param"] + clr * E_q + gamma(2, dtype) * (p.abs() + clr * q.abs())
    E["sum"] = E_s
    return E


BOUNDS = {torch.optim.SGD: sgd_bound, torch.optim.Adam: adam_bound, torch.optim.AdamW: adam_bound,
          torch.optim.Adagrad: adagrad_bound}
STATE_KEYS = {torch.optim.SGD: ("momentum_buffer",), torch.optim.Adam: ("exp_avg", "exp_avg_sq"),
              torch.optim.AdamW: ("exp_avg", "exp_avg_sq"), torch.optim.Adagrad: ("sum",)}


def zero_bounds(optimizer, param):
    return {key: torch.zeros_like(param, dtype=torch.float64) for key in ("param", *STATE_KEYS[type(optimizer)])}


def step_bound(optimizer, param, E):
    """Bounds after optimizer.step() for `param` (call before the step; its grad must be set)."""
    group = next(g for g in optimizer.param_groups if any(p is param for p in g["params"]))
    state = {k: (v.double() if isinstance(v, torch.Tensor) and v.dim() else v)
             for k, v in optimizer.state.get(param, {}).items()}
    return BOUNDS[type(optimizer)](param.detach().double(), param.grad.double(), state, dict(E), group, param.dtype)
