"""What differs by model kind, one module per kind (`kinds.base` gives the protocol they implement).

Built-in kinds: tagging, classification, pair_classification, seq2seq (encoder-decoder) and
causal_lm (decoder-only, prompt → completion). Imports `tasks.base` only, for types; rewards and
the harness import this package, never the other way round.
"""
from kinds import causal_lm, classification, pair_classification, seq2seq, tagging  # noqa: F401  (register)
from kinds.base import (IGNORE, KINDS, MODEL_INPUTS, ModelKind, Policy, Samples, get_kind, register_kind, resolve,
                        to_device, forward)

__all__ = ["IGNORE", "KINDS", "MODEL_INPUTS", "ModelKind", "Policy", "Samples", "get_kind", "register_kind",
           "resolve", "to_device", "forward"]
