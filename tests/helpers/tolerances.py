"""How close two runs of the same forward must be.

The same model on the same pixels, but in another batch composition, thread split or process: CPU kernels
(oneDNN / MKL) may then sum in another order. Measured: up to 2.4e-7 on logits of order 1 on an Intel Xeon with
AMX (bit-identical on the AMD EPYCs). A wrong sample, view or teacher input differs by orders of magnitude more.
"""

SAME_FORWARD = {"rtol": 1e-5, "atol": 1e-5}
