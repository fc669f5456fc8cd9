"""The article's setup (brief §1), written once: the default of every config, control and flag.

Four tanh MLPs (3 and 4 hidden layers of width 4, without BatchNorm and with BN "pre") trained
with plain SGD at four learning rates for 40 epochs, mini-batches of 50, on 1000 samples of
y = (X ** 2) @ w + 0.01 · N(0, 1), split 70/30, seed 929. ``bnlr.config`` takes its defaults
from here, and so do the app's controls (``ui.controls``) and the command line (``bnlr.cli``).
"""

DEPTHS = (3, 4)  # hidden layers of the article's four networks
WIDTH = 4  # units per hidden layer
ACTIVATION = "tanh"
BNS = ("none", "pre")  # without BatchNorm, and Linear → BatchNorm1d → activation
BN_MOMENTUM = 0.1  # nn.BatchNorm1d's default
LRS = (0.1, 0.03, 0.01, 0.005)  # one panel of the article's 2×2 each
SEED = 929  # the article's seed: initial weights and batch order (and the data's)
EPOCHS = 40
BATCH_SIZE = 50
OPTIMIZER = "sgd"  # plain SGD: no momentum, no weight decay
N = 1000  # samples before the split
W = (2.0, -1.0, 3.0, 1.0, 2.0)  # the true weights: five features
DEGREE = 2  # y = (X ** 2) @ w
NOISE = 0.01
TRAIN_FRACTION = 0.7
