"""Losses against values computed by hand with plain Python floats."""

import math

import pytest
import torch

from seedzoo.training.methods.moco import info_nce
from seedzoo.training.methods.seed import seed_loss
from seedzoo.training.methods.simclr import nt_xent


def log_sum_exp(values):
    return math.log(sum(math.exp(v) for v in values))


def tensor(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_seed_loss_with_sharp_teacher_is_cross_entropy_on_the_own_embedding():
    # s = (1, 0), t = (0.6, 0.8), queue = e1, e2.  Student scores [s.t, s.e1, s.e2] = [0.6, 1, 0];
    # teacher scores [1, 0.6, 0.8]: at tau_t 1e-4 the target is one-hot on the first entry.
    loss = seed_loss(tensor([[1.0, 0.0]]), tensor([[0.6, 0.8]]), tensor([[1.0, 0.0], [0.0, 1.0]]),
                     student_temperature=0.2, teacher_temperature=1e-4)
    expected = log_sum_exp([3.0, 5.0, 0.0]) - 3.0
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_seed_loss_with_soft_teacher_is_soft_cross_entropy_averaged_over_the_batch():
    student = tensor([[1.0, 0.0], [0.0, 1.0]])
    teacher = tensor([[0.6, 0.8], [0.8, -0.6]])
    queue = tensor([[1.0, 0.0], [0.0, 1.0], [-0.6, 0.8]])
    tau_s, tau_t = 0.5, 1.0
    by_hand = []
    for s, t in zip(student.tolist(), teacher.tolist(), strict=True):
        anchors = [t] + queue.tolist()
        s_scores = [(s[0] * a[0] + s[1] * a[1]) / tau_s for a in anchors]
        t_scores = [(t[0] * a[0] + t[1] * a[1]) / tau_t for a in anchors]
        targets = [math.exp(v - log_sum_exp(t_scores)) for v in t_scores]
        log_q = [v - log_sum_exp(s_scores) for v in s_scores]
        by_hand.append(-sum(p * q for p, q in zip(targets, log_q, strict=True)))
    loss = seed_loss(student, teacher, queue, student_temperature=tau_s, teacher_temperature=tau_t)
    assert loss.item() == pytest.approx(sum(by_hand) / 2, rel=1e-6)


def test_info_nce_scores_the_positive_key_against_the_queue():
    # q.k = 0.6, q.(0, 1) = 0, q.(-1, 0) = -1, tau 0.2.
    loss = info_nce(tensor([[1.0, 0.0]]), tensor([[0.6, 0.8]]), tensor([[0.0, 1.0], [-1.0, 0.0]]),
                    temperature=0.2)
    assert loss.item() == pytest.approx(log_sum_exp([3.0, 0.0, -5.0]) - 3.0, rel=1e-6)


def test_nt_xent_over_two_n_views():
    first = tensor([[1.0, 0.0], [0.0, 1.0]])
    second = tensor([[0.6, 0.8], [-0.8, 0.6]])
    tau = 0.5
    z = first.tolist() + second.tolist()
    n = 2
    by_hand = []
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        scores = {j: (z[i][0] * z[j][0] + z[i][1] * z[j][1]) / tau for j in range(2 * n) if j != i}
        by_hand.append(log_sum_exp(scores.values()) - scores[positive])
    loss = nt_xent(first, second, temperature=tau)
    assert loss.item() == pytest.approx(sum(by_hand) / (2 * n), rel=1e-6)


def test_nt_xent_of_identical_views_at_the_extremes():
    # Two orthogonal samples whose views coincide: the positive scores 1/tau, the two negatives 0.
    views = tensor([[1.0, 0.0], [0.0, 1.0]])
    loss = nt_xent(views, views, temperature=0.1)
    assert loss.item() == pytest.approx(log_sum_exp([10.0, 0.0, 0.0]) - 10.0, abs=1e-7)


def test_nt_xent_with_gathered_candidates_equals_the_local_loss_in_one_process():
    first, second = torch.nn.functional.normalize(torch.randn(2, 5, 8), dim=2)
    local = nt_xent(first, second, temperature=0.3)
    gathered = nt_xent(first, second, temperature=0.3, negatives=(first, second))
    assert torch.allclose(local, gathered)


@pytest.mark.parametrize("loss", [
    lambda s, t, q: seed_loss(s, t, q, student_temperature=0.2, teacher_temperature=1e-4),
    lambda s, t, q: info_nce(s, t, q, temperature=0.2),
    lambda s, t, q: nt_xent(s, t, temperature=0.2)])
def test_losses_are_computed_in_float32_under_autocast(loss):
    torch.manual_seed(0)
    student, teacher = torch.nn.functional.normalize(torch.randn(2, 16, 32), dim=2)
    queue = torch.nn.functional.normalize(torch.randn(64, 32), dim=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low_precision = loss(student, teacher, queue)
    assert low_precision.dtype == torch.float32
    assert low_precision.item() == pytest.approx(loss(student, teacher, queue).item(), rel=1e-6)
