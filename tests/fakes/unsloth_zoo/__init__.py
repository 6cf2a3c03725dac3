"""Stand-in ``unsloth_zoo`` for CPU tests (see ``tests/fakes/unsloth``): only ``vllm_utils.delete_vllm``."""
