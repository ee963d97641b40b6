"""TensorBoard event files from a Tune driver that does not load torch.

Every `Tuner` gets Tune's TensorBoard logger (`TBXLoggerCallback`, added by
`_create_default_callbacks` in ray/tune/utils/callback.py when tensorboardX is installed),
which writes the event files `make tensorboard` serves. Importing it imports tensorboardX,
whose writer imports torch only to accept torch tensors as values (`numpy_compatible` in
tensorboardX/writer.py; x2num.py imports torch again, lazily, when it meets a tensor). A
Tune driver logs floats: the trials train, the driver never needs torch. Loaded anyway, it
cost each driver run ~4 CPU-seconds and ~300 MiB (measured: a one-trial `tune` driver, 10.2
CPU-s with it, 5.5 without, same wall time), on every local run and every RayJob.

`load_tensorboardx()` imports tensorboardX once with torch hidden, so that its writer takes
numpy arrays and floats; the event files are the same. Where torch is already loaded (the
`train` stage's driver imports Ray Train's TorchTrainer) nothing changes.
"""

from __future__ import annotations

import importlib
import sys


def load_tensorboardx() -> bool:
    """Import tensorboardX without torch, unless either is loaded already. True if this call
    imported it torch-free; False where it was loaded, torch was, or it isn't installed (Tune
    then warns and writes no event files, as it would anyway)."""
    if "tensorboardX" in sys.modules or "torch" in sys.modules:
        return False
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` raises ImportError
    try:
        importlib.import_module("tensorboardX")
    except ImportError:
        return False
    finally:
        del sys.modules["torch"]
    return True
