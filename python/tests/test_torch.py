"""PyTorch: both exporters round-trip, the chip in the training loop (forward = the program,
backward = the float module), a fine-tuning step on a tiny model."""

import numpy as np
import pytest

import cimc

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def tt():
    import torch

    import cimc.torch as ct

    return torch, ct


def tiny(torch, seed=0):
    torch.manual_seed(seed)
    nn = torch.nn
    m = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 10),
    )
    return m.eval()


@pytest.mark.parametrize("dynamo", [False, True])
def test_float_round_trip(tt, dynamo, digits):
    torch, ct = tt
    m = tiny(torch)
    x = torch.from_numpy(digits[2][:16])
    onnx_bytes = ct.export(m, x, dynamo=dynamo)
    got = cimc.load(onnx_bytes).run(x.numpy())
    want = m(x).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dynamo", [False, True])
def test_compiled_round_trip(tt, dynamo, digits):
    torch, ct = tt
    m = tiny(torch)
    x = torch.from_numpy(digits[2][:32])
    p = ct.compile(m, x, dynamo=dynamo, calib=digits[1], wbits=8, abits=8)
    assert isinstance(p, cimc.Program)
    got = p.run(x)
    want = m(x).detach().numpy()
    assert got.shape == want.shape
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.99


def test_chip_function_is_straight_through(tt):
    torch, ct = tt
    f = torch.randn(4, 3, requires_grad=True)
    chip = torch.randn(4, 3)
    y = ct.ChipFunction.apply(f, chip)
    assert torch.equal(y, chip)
    g = torch.randn(4, 3)
    y.backward(g)
    assert torch.equal(f.grad, g)


def test_chip_module_forward_is_the_program_backward_the_float_module(tt, digits):
    torch, ct = tt
    m = tiny(torch)
    x = torch.from_numpy(digits[2][:32])
    y = torch.from_numpy(digits[3][:32])
    cm = ct.ChipModule(m, x, calib=digits[1], target="edge", wbits=4, abits=4)
    cm.train()
    m.eval()  # BN statistics frozen: the float forward is the exported model's
    out = cm(x)
    assert cm.compiles == 1 and cm.step == 1
    np.testing.assert_array_equal(out.detach().numpy(), cm.program.run(x.numpy()))
    loss = torch.nn.functional.cross_entropy(out, y)
    loss.backward()
    got = [p.grad.clone() for p in m.parameters()]
    # The float module's gradient at the chip's output.
    m.zero_grad()
    fo = m(x)
    chip_out = out.detach().requires_grad_()
    l2 = torch.nn.functional.cross_entropy(chip_out, y)
    (g_out,) = torch.autograd.grad(l2, [chip_out])
    fo.backward(g_out)
    for a, p in zip(got, m.parameters()):
        torch.testing.assert_close(a, p.grad)


def test_noisy_chip_fresh_and_fixed(tt, digits):
    torch, ct = tt
    m = tiny(torch)
    x = torch.from_numpy(digits[2][:16])
    noise = {"sigma_prog": 0.05}
    fixed = ct.ChipModule(m, x, calib=digits[1], target="isaac", noise=noise, seed=3,
                          fresh_chip=False, recompile_every=100)
    fresh = ct.ChipModule(m, x, calib=digits[1], target="isaac", noise=noise, seed=3,
                          fresh_chip=True, recompile_every=100)
    fixed.train(), fresh.train()
    a1, a2 = fixed(x).detach(), fixed(x).detach()
    b1, b2 = fresh(x).detach(), fresh(x).detach()
    assert torch.equal(a1, a2)
    assert not torch.equal(b1, b2)
    assert fixed.compiles == 1
    np.testing.assert_array_equal(a1.numpy(), fixed.program.run(x.numpy(), noise=noise, seed=3))


def test_fine_tuning_step_lowers_the_chips_loss(tt, digits):
    """A few steps through a coarse chip (2-bit weights, 4-bit ADCs) lower the loss the chip
    gives on the batch; the program is recompiled every 2 steps."""
    torch, ct = tt
    m = tiny(torch, seed=1)
    xs = torch.from_numpy(digits[2][:64])
    ys = torch.from_numpy(digits[3][:64])
    cm = ct.ChipModule(m, xs[:32], calib=digits[1], target="edge", wbits=3, abits=4,
                       recompile_every=2)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)

    def chip_loss():
        with torch.no_grad():
            cm.eval()
            return torch.nn.functional.cross_entropy(cm(xs), ys).item()

    before = chip_loss()
    for _ in range(8):
        cm.train()
        m.eval()
        loss = torch.nn.functional.cross_entropy(cm(xs), ys)
        opt.zero_grad()
        loss.backward()
        opt.step()
    cm.recompile()
    after = chip_loss()
    assert cm.compiles == 1 + 4 + 1
    assert after < before
