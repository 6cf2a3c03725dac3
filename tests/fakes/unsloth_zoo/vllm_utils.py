"""Stand-in ``unsloth_zoo.vllm_utils``: ``delete_vllm`` with the real signature, recording what it was given.

The real one (unsloth_zoo 2026.10.9, ``unsloth_zoo/vllm_utils.py:7314``, ``def delete_vllm(llm = None)``)
destroys vLLM's model-parallel groups and distributed environment, deletes ``llm.llm_engine.model_executor``,
collects garbage and empties the device cache.
"""

from __future__ import annotations

#: the ``label`` of each engine passed (``None`` for a call without one), in order
DELETED: list = []


def delete_vllm(llm = None):
    DELETED.append(getattr(llm, "label", llm))
    return None
