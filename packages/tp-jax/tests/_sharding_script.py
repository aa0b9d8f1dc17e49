"""Run in a subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=2."""

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import tp_jax  # noqa: E402
import tp_spec as spec  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402
from tp_spec.errors import DeviceError  # noqa: E402

assert len(jax.devices()) == 2, jax.devices()
mesh = Mesh(np.array(jax.devices()), ("batch",))
rng = np.random.default_rng(0)
cases = [
    (spec.cgtp("2x0e+1x1o", "0e+1o", "2x0e+1x1o+1x1e", mode="uvw"), "fused"),
    (spec.cgtp("0e+1o", "0e+1o", "0e+1o+1e+2e"), "fused"),
    (spec.gtp("2x0e+2x1o", "0e+1o", per_degree_weights=True), "grid"),
    (spec.mtp("0e+1o", "0e+1o"), "sparse"),
    # channelwise regime: on CPU the compiled kernels' FFI calls (XLA gathers their operands)
    (spec.cgtp("16x0e+16x1o", "0e+1o", "16x0e+16x1o", mode="uvu"), "fused"),
]
for d, method in cases:
    x1 = rng.normal(size=(8, d.irreps_in1.dim))
    x2 = rng.normal(size=(8, d.irreps_in2.dim))
    w = rng.normal(size=(8, d.weight_numel)) if d.weight_numel else None
    ref = spec.reference.apply(d, x1, x2, w)
    sh = NamedSharding(mesh, P("batch"))
    a, b = jax.device_put(x1, sh), jax.device_put(x2, sh)
    ww = None if w is None else jax.device_put(w, sh)
    f = tp_jax.tensor_product(d, method)
    out = jax.jit(f)(a, b, ww)
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-12)
    assert len(out.sharding.device_set) == 2
    g = jax.jit(jax.grad(lambda p, q, r, f=f: jnp.sum(f(p, q, r) ** 2)))(a, b, ww)
    assert g.shape == x1.shape
    # shard_map: each device runs the kernel on its half of the batch
    if ww is None:
        sm = jax.shard_map(lambda p, q, f=f: f(p, q), mesh=mesh, in_specs=(P("batch"), P("batch")),
                           out_specs=P("batch"))
        out2 = jax.jit(sm)(a, b)
    else:
        sm = jax.shard_map(f, mesh=mesh, in_specs=(P("batch"),) * 3, out_specs=P("batch"))
        out2 = jax.jit(sm)(a, b, ww)
    np.testing.assert_allclose(np.asarray(out2), ref, atol=1e-12)

# inputs committed to different devices -> DeviceError
d, method = cases[0]
f = tp_jax.tensor_product(d, method)
x1 = jax.device_put(np.ones((2, d.irreps_in1.dim)), jax.devices()[0])
x2 = jax.device_put(np.ones((2, d.irreps_in2.dim)), jax.devices()[1])
try:
    f(x1, x2, np.ones(d.weight_numel))
except DeviceError:
    pass
else:
    raise AssertionError("no DeviceError")
print("SHARDING OK")
