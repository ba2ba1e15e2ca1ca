"""Scoring protocols: the rule (:mod:`robustmri.protocol.rule`: one frozen :class:`Protocol` holds
every choice that changes a reported score) and the named presets (:mod:`robustmri.protocol.presets`).

Owns how a prediction is scored and the ``protocol`` column of a results table. May import the
metrics, the plugins (a preset may come from one) and the errors only (docs/architecture.md).
"""

from robustmri.protocol.presets import PRESETS, get_protocol, list_protocols, register_protocol
from robustmri.protocol.rule import Protocol, check_same_protocol, concat_results, tag_results

__all__ = [
    "PRESETS", "Protocol", "check_same_protocol", "concat_results", "get_protocol", "list_protocols", "register_protocol",
    "tag_results",
]
