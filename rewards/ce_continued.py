"""The compute-matched control: cross-entropy trained on from the `ce` checkpoint."""
from __future__ import annotations

from rewards.base import BASELINE, CONTINUED_CONTROL, register_reward
from rewards.ce import CrossEntropy


@register_reward(CONTINUED_CONTROL)
class CrossEntropyContinued(CrossEntropy):
    """CE trained on from the ce checkpoint with the schedule every checkpoint-started strategy gets.

    Objective: CE = −(1/M) Σ_m log p_m(y_m), the baseline's own loss. Estimator: exact (no sampling).
    Baseline: none. Normalisation: mean over the batch's M scored positions.
    Start: the selected checkpoint of the `ce` run of the same task, model and seed (`init_from`),
    then the same TrainSettings (epochs, learning rate, warm-up and decay over a fresh schedule), seed
    and data-order generator as the sampling strategies and `kl_reference`, which also start there.
    A strategy that starts from the ce checkpoint gains over `ce` partly from the extra epochs alone;
    its gain over this control is what its objective adds (`compared_with`). Source: none of its
    own; the compute-matched counterpart of the `constant_reward` control (Choshen et al. 2020, "On
    the Weaknesses of Reinforcement Learning for Neural Machine Translation", trace part of the
    gains of RL fine-tuning to effects other than the reward).
    """

    family = "control"
    init_from = BASELINE
