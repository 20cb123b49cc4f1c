import pytest
import torch
from torch import nn

from prunelab.data import Dataset, Split

# The tests train tiny models: intra-op threads only add synchronisation and contend with parallel jobs.
torch.set_num_threads(1)


def make_blobs(n_train=240, n_val=60, n_test=120, dim=12, classes=3, seed=0):
    """Gaussian blobs around random class centres: learnable in a few steps, cheap to train on."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 2.0

    def split(n):
        y = torch.randint(0, classes, (n,), generator=g)
        x = centres[y] + torch.randn(n, dim, generator=g)
        return Split(x.float(), y)

    return Dataset("blobs", train=split(n_train), val=split(n_val), test=split(n_test), num_classes=classes,
                   input_shape=(dim,), mean=(0.0,), std=(1.0,), is_image=False)


class TinyMLP(nn.Module):
    def __init__(self, dim=12, hidden=32, classes=3):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x):
        return self.out(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def tiny_mlp(seed):
    torch.manual_seed(seed)
    return TinyMLP()


@pytest.fixture
def blobs():
    return make_blobs()
