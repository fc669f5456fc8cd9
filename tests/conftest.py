import torch

# Tiny tensors gain nothing from intra-op threads; on a shared 2-core machine they only spin.
torch.set_num_threads(1)
