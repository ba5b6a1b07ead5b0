"""The LR schedule matches the official vid2vid (train.py + BaseModel.update_learning_rate), epoch by epoch."""

from __future__ import annotations

import pytest
import torch

from v2vcli.model import linear_decay


def official_lr_factors(niter: int, niter_decay: int) -> list[float]:
    """What the official loop runs each (1-based) epoch at: lr until the end of an epoch > niter sets
    lr·(1 − (epoch − niter)/niter_decay) for the next one."""
    factor, out = 1.0, []
    for epoch in range(1, niter + niter_decay + 1):
        out.append(factor)
        if epoch > niter:
            factor = 1.0 - (epoch - niter) / niter_decay
    return out


@pytest.mark.parametrize(("niter", "niter_decay"), [(10, 10), (5, 5), (3, 0), (0, 4), (8, 5)])
def test_linear_decay_matches_the_official_schedule(niter: int, niter_decay: int) -> None:
    decay = linear_decay(niter, niter_decay)
    ours = [decay(e) for e in range(niter + niter_decay)]  # v2v epochs are 0-based
    assert ours == pytest.approx(official_lr_factors(niter, niter_decay))


def test_linear_decay_pinned_values_through_lambdalr() -> None:
    decay = linear_decay(10, 10)
    # 1-based epochs 1..11 at lr, the 12th at 0.9, the 20th (last) at 0.1 (the old v2v: 11th at 0.909)
    assert [decay(e) for e in range(11)] == [1.0] * 11
    assert decay(11) == pytest.approx(0.9) and decay(19) == pytest.approx(0.1)
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, decay)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[10] == pytest.approx(2e-4) and lrs[11] == pytest.approx(1.8e-4) and lrs[19] == pytest.approx(2e-5)
