"""Generation and inference: every place sblite turns prompts into completions.

``sblite prepare --labels sample`` and ``sblite eval`` generate in batches with transformers, vLLM or
llama.cpp; ``sblite generate`` streams one answer with a live budget bar. Which module is which:

    batch.py      the shared result type ``Generation``, the batch contract ``GenerateFn`` every engine
                  implements, and ``open_batch_engine`` (``--model``/``--gguf`` -> tokenizer + generate)
    hf.py         transformers engine: ``load_for_inference``, ``generate_batch`` (compact KV-cache decoder)
    vllm.py       vLLM engine (CUDA): ``vllm_available``, ``VLLMGenerator``
    llamacpp.py   llama.cpp engine: ``LlamaCppGenerator``, ``stream_gguf``; GGUF checks and ``quantize``
                  (``python -m sblite.generate.llamacpp quantize``)
    loading.py    what ``--model`` (run dir, adapter, model dir, builtin:, hub id) and ``--gguf`` name ->
                  ``ModelSpec``/``GGUFSpec`` -> a loaded model and tokenizer
    stream.py     ``sblite generate``'s live view: ``stream_answer`` (transformers), ``stream_answer_llamacpp``,
                  ``stream_gguf_answer`` (picks one for ``--gguf``), ``track``, ``render_live``

Every module imports torch, transformers, vllm and llama_cpp inside its functions: importing any of them is
free, and this package file imports nothing.
"""
