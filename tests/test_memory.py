import torch

from infopro import LocalLearner, SavedActivationMeter, build_backbone


def test_meter_counts_saved_tensors_by_hand():
    a = torch.randn(1000, requires_grad=True)
    with SavedActivationMeter() as meter:
        b = a.exp()  # saves its result b: 4000 bytes
        c = b.exp()  # saves c: 4000 more
        assert meter.current_bytes == 8000
        c.sum().backward()
    assert meter.peak_bytes == 8000
    assert meter.current_bytes == 0  # freed with the graph


def test_meter_deduplicates_storages_and_excludes_parameters():
    layer = torch.nn.Linear(10, 10, bias=False)
    x = torch.randn(4, 10)
    with SavedActivationMeter(exclude=layer.parameters()) as meter:
        h = layer(x)  # saves x (160 bytes) and the weight (a parameter: not counted)
        out = (h.view(40) * h.view(40)).sum()  # saves two views of one storage: 160 bytes once
        assert meter.current_bytes == 320
        out.backward()
    assert meter.peak_bytes == 320 and meter.current_bytes == 0


def peak_saved_bytes(method, K, cuts):
    torch.manual_seed(0)
    learner = LocalLearner(build_backbone("resnet110"), K, method, cuts=cuts)
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    with SavedActivationMeter(exclude=learner.parameters()) as meter:
        learner.train_step(x, y)
    assert meter.current_bytes == 0
    return meter.peak_bytes


def test_local_learning_keeps_one_piece_of_activations_alive():
    """ResNet-110, batch 64: InfoPro K=4 peak saved activations vs end-to-end."""
    e2e = peak_saved_bytes("e2e", 1, "paper")
    paper = peak_saved_bytes("infopro-contrast", 4, "paper")
    balanced = peak_saved_bytes("infopro-contrast", 4, "paper-balanced")
    assert paper < 0.45 * e2e
    assert balanced < 0.37 * e2e
    assert balanced < paper
