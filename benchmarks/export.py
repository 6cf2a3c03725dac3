"""GGUF export: sblite's writer vs llama.cpp's own ``convert_hf_to_gguf.py`` on the same merged model.

    OMP_NUM_THREADS=1 python benchmarks/export.py --sdist /tmp/lcp/llama_cpp_python-0.3.36.tar.gz \
        [--model /tmp/smol_merged] [--quants f16,q8_0] [--repeats 3]

``--model`` is a merged model directory (``sblite merge`` output; default ``builtin:smollm2-135m``, the
same weights and tokenizer a merged SmolLM2 run has). The converter is the one shipped in the
llama-cpp-python source distribution (``--sdist`` is unpacked to a temporary directory; ``--convert``
points at an unpacked ``convert_hf_to_gguf.py`` instead). Nothing is downloaded.

Each side runs as the command a user would type, in a fresh process (interpreter start and imports
included), ``--repeats`` times, alternating; the figure is the median wall time. sblite's side is
``sblite export MODEL --gguf --quant Q --no-verify`` (it also hashes the file and writes provenance).
Then every tensor of the two files is compared byte for byte (name, type, shape, data), and the metadata
keys that differ are listed. Target: ratio ≤ 1.0 and identical tensors for f16 and q8_0.
JSON → benchmarks/results/export.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_json  # noqa: E402


def find_convert(sdist: str | None, convert: str | None, work: Path) -> Path:
    if convert:
        return Path(convert)
    if not sdist:
        sys.exit(
            "give --sdist llama_cpp_python-X.tar.gz (pip download --no-binary :all: --no-deps "
            "llama-cpp-python) or --convert path/to/convert_hf_to_gguf.py"
        )
    with tarfile.open(sdist) as tar:
        members = [
            m
            for m in tar.getmembers()
            if "/vendor/llama.cpp/" in m.name
            and (
                m.name.endswith("convert_hf_to_gguf.py")
                or "/vendor/llama.cpp/gguf-py/" in m.name
                or "/vendor/llama.cpp/conversion/" in m.name
            )
        ]
        tar.extractall(work, members=members, filter="data")
    (found,) = [p for p in work.rglob("convert_hf_to_gguf.py") if p.parent.name == "llama.cpp"]
    return found


def timed(cmd: list[str], cwd: Path) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t


def compare(a: Path, b: Path) -> dict:
    """Tensor-by-tensor byte comparison, plus the metadata keys whose values differ."""
    import numpy as np
    from gguf import GGUFReader

    ra, rb = GGUFReader(str(a)), GGUFReader(str(b))
    ta = {t.name: t for t in ra.tensors}
    tb = {t.name: t for t in rb.tensors}
    differing = []
    for name in sorted(set(ta) | set(tb)):
        x, y = ta.get(name), tb.get(name)
        if x is None or y is None:
            differing.append({"tensor": name, "why": "missing in " + ("sblite" if x is None else "convert")})
        elif x.tensor_type != y.tensor_type or list(x.shape) != list(y.shape):
            differing.append(
                {
                    "tensor": name,
                    "why": f"{x.tensor_type.name}{list(x.shape)} vs {y.tensor_type.name}{list(y.shape)}",
                }
            )
        elif not np.array_equal(np.asarray(x.data).view(np.uint8), np.asarray(y.data).view(np.uint8)):
            differing.append({"tensor": name, "why": "data differs"})

    def kv(r):
        out = {}
        for k, f in r.fields.items():
            if k.startswith("GGUF."):
                continue
            try:
                out[k] = f.contents()
            except Exception:  # noqa: BLE001 - a field type the reader cannot render
                out[k] = repr(f.parts[-1])
        return out

    ka, kb = kv(ra), kv(rb)
    meta = sorted(k for k in set(ka) | set(kb) if ka.get(k) != kb.get(k))
    return {
        "tensors": len(ta),
        "tensors_identical": not differing,
        "differing_tensors": differing[:20],
        "metadata_keys_differing": meta,
        "metadata_only_in_sblite": sorted(set(ka) - set(kb)),
        "metadata_only_in_convert": sorted(set(kb) - set(ka)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="builtin:smollm2-135m", help="merged model dir or builtin: name")
    ap.add_argument("--sdist", help="llama-cpp-python source distribution (.tar.gz)")
    ap.add_argument("--convert", help="an unpacked convert_hf_to_gguf.py (instead of --sdist)")
    ap.add_argument("--quants", default="f16,q8_0")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS / "export.json"))
    args = ap.parse_args()

    from sblite.models import resolve_model

    model = Path(resolve_model(args.model))
    sblite_bin = shutil.which("sblite") or sys.exit("sblite is not on PATH (activate the venv)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="sblite-bench-export-") as tmp:
        work = Path(tmp)
        convert = find_convert(args.sdist, args.convert, work / "src")
        for quant in args.quants.split(","):
            ours, theirs = [], []
            for r in range(args.repeats):
                out_s = work / f"s-{quant}-{r}"
                out_c = work / f"c-{quant}-{r}.gguf"
                ours.append(
                    timed(
                        [
                            sblite_bin,
                            "export",
                            str(model),
                            "--gguf",
                            "--quant",
                            quant,
                            "--no-verify",
                            "--out",
                            str(out_s),
                        ],
                        work,
                    )
                )
                theirs.append(
                    timed(
                        [
                            sys.executable,
                            str(convert),
                            str(model),
                            "--outtype",
                            quant,
                            "--outfile",
                            str(out_c),
                        ],
                        work,
                    )
                )
            (ours_file,) = (work / f"s-{quant}-0").glob("*.gguf")
            cmp = compare(ours_file, work / f"c-{quant}-0.gguf")
            row = {
                "quant": quant,
                "sblite_seconds": ours,
                "convert_seconds": theirs,
                "sblite_median_s": statistics.median(ours),
                "convert_median_s": statistics.median(theirs),
                "ratio_sblite_over_convert": statistics.median(ours) / statistics.median(theirs),
                "sblite_bytes": ours_file.stat().st_size,
                "convert_bytes": (work / f"c-{quant}-0.gguf").stat().st_size,
                **cmp,
            }
            rows.append(row)
            print(
                f"{quant}: sblite {row['sblite_median_s']:.2f} s, convert_hf_to_gguf {row['convert_median_s']:.2f} s"
                f" (ratio {row['ratio_sblite_over_convert']:.2f}); tensors identical: {row['tensors_identical']}"
                f" ({row['tensors']}); metadata keys differing: {len(row['metadata_keys_differing'])}"
            )
            for r in range(args.repeats):
                shutil.rmtree(work / f"s-{quant}-{r}", ignore_errors=True)
                (work / f"c-{quant}-{r}.gguf").unlink(missing_ok=True)
    from sblite.provenance import package_versions

    result = {
        "benchmark": "export",
        "model": str(args.model),
        "model_dir": str(model),
        "converter": "convert_hf_to_gguf.py from "
        + (Path(args.sdist).name if args.sdist else str(args.convert)),
        "repeats": args.repeats,
        "rows": rows,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        },
        "versions": package_versions(("sblite", "torch", "transformers", "gguf", "numpy")),
        "targets": {"ratio_sblite_over_convert": "<= 1.0", "tensors_identical": True},
    }
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
