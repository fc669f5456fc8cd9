import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

# Tiny tensors gain nothing from intra-op threads; on a shared 2-core machine they only spin.
torch.set_num_threads(1)
