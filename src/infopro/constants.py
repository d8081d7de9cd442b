"""Constants shared by the data pipeline and the learner."""

# Mean and std of the CIFAR training images per channel, as in the paper (pixel values / 255).
CIFAR_MEAN = (125.3 / 255, 123.0 / 255, 113.9 / 255)
CIFAR_STD = (63.0 / 255, 62.1 / 255, 66.7 / 255)
