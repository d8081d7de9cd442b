"""One module per data set; importing this package registers them all in `DATASETS`."""

from . import cifar10, cifar100, fashion_mnist, folder, mnist, stl10, svhn  # noqa: F401
from . import cityscapes, segfolder  # noqa: F401  (image + mask pairs: semantic segmentation)
