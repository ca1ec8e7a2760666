"""Shared test configuration: Hypothesis profiles and the backend fixture.

Profiles: "ci" (derandomized, modest example counts, no deadline) is loaded when the ``CI``
environment variable is set, "dev" otherwise; ``HYPOTHESIS_PROFILE`` overrides the choice.
"""

from __future__ import annotations

import os

# Without a GPU the Triton kernels (crossent.torch._triton) run under Triton's interpreter. The
# variable is read when the kernels are defined, so it is set before anything imports them.
if not os.path.exists("/dev/nvidia0"):
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import crossent._backend as _backend  # noqa: E402

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=30,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "dev",
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# A long bug hunt, never the default: HYPOTHESIS_PROFILE=thorough pytest tests/test_accuracy.py
settings.register_profile(
    "thorough",
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

BACKENDS = ["compiled", "reference"]
# The backend fixture is a context entered once per test function; Hypothesis examples inside
# it all run on that backend, which is why function_scoped_fixture is suppressed above.


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Run the test once on the compiled kernels and once on the NumPy reference."""
    name = request.param
    if name == "compiled" and _backend._compiled is None:
        pytest.skip(f"compiled kernels unavailable: {_backend._IMPORT_ERROR}")
    with _backend.use_backend(name):
        yield name


@pytest.fixture
def emulated_low_precision_products(monkeypatch):
    """bfloat16 operands of the fused heads treated as on a GPU (kept in their dtype), their
    products emulated on the CPU in float32 from the same operands (exact: a bfloat16 product
    fits float32). Returns the list of the products called ("mm", "addmm"), each checked to get
    bfloat16 operands and a float32 output."""
    torch = pytest.importorskip("torch")
    from crossent.torch import distill, linear

    calls = []

    def mm_f32(a, b, out):
        assert a.dtype == b.dtype == torch.bfloat16 and out.dtype == torch.float32
        calls.append("mm")
        return torch.mm(a.float(), b.float(), out=out)

    def addmm_f32_(acc, a, b):
        assert a.dtype == b.dtype == torch.bfloat16 and acc.dtype == torch.float32
        calls.append("addmm")
        return acc.addmm_(a.float(), b.float())

    def low(hidden, weight):
        return hidden.dtype == torch.bfloat16

    monkeypatch.setattr(linear, "_low_precision_on_gpu", low)
    monkeypatch.setattr(distill, "_low_precision_on_gpu", low)
    monkeypatch.setattr(linear, "_mm_f32", mm_f32)
    monkeypatch.setattr(linear, "_addmm_f32_", addmm_f32_)
    return calls


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected
def pytest_collection_modifyitems(config, items):
    """Start the sanitized extension's build (minutes) in the background as soon as the session
    is known to run ``test_sanitizer.py``: the other tests run meanwhile (_sanitized_build)."""
    if os.environ.get("PYTEST_XDIST_WORKER") or config.option.collectonly:
        return
    if any(item.path.name == "test_sanitizer.py" for item in items):
        import _sanitized_build

        _sanitized_build.start()
