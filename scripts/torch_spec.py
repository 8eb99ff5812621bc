"""Print the pip arguments that install torch's CPU build: the Makefile's default TORCH_SPEC.

On Linux, PyPI's torch wheel is the CUDA build (several GB), so the CPU build comes from PyTorch's own CPU
index. Where that index cannot be reached (an offline machine whose pip finds a torch wheel locally,
such as this project's CI), plain ``torch==VERSION`` is printed, and pip takes the local wheel.

    python scripts/torch_spec.py [VERSION] [CPU_INDEX]
"""

import sys
import urllib.request

version = sys.argv[1] if len(sys.argv) > 1 else "2.13.0"
index = (sys.argv[2] if len(sys.argv) > 2 else "https://download.pytorch.org/whl/cpu").rstrip("/")
try:
    with urllib.request.urlopen(f"{index}/torch/", timeout=5) as response:
        reachable = response.status == 200
except Exception:  # no network, no DNS, a proxy refusing: the index is not reachable
    reachable = False
print(f"torch=={version} --index-url {index}" if reachable else f"torch=={version}")
