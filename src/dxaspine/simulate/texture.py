"""Trabecular texture: fractional-Brownian-like fields of set roughness.

The projected trabecular pattern is modelled as a 2-D field whose power
spectrum falls as |k|^-(2H+2), the spectrum of fractional Brownian motion
with Hurst exponent H: its variogram grows as h^(2H), so H sets the
small-lag variogram slope that TBS measures (higher H: smoother, better
connected texture, higher TBS). Spectral synthesis on a padded grid is
approximate for fBm, which is fine for texture; exact fields for testing
TBS belong to the scores tests.
"""

from __future__ import annotations

import numpy as np


def fbm_field(
    shape: tuple[int, int],
    spacing_mm: tuple[float, float],
    hurst: float,
    rng: np.random.Generator,
    pad: int = 2,
) -> np.ndarray:
    """A zero-mean, unit-variance field of Hurst exponent `hurst`, in physical units.

    Frequencies are in cycles/mm, so anisotropic pixels give an isotropic
    texture. The field is synthesised on a grid `pad` times larger and
    cropped, which removes the periodic wrap-around.
    """
    if not 0.0 < hurst < 1.0:
        raise ValueError(f"hurst must lie in (0, 1), got {hurst}")
    rows, cols = shape[0] * pad, shape[1] * pad
    k_row = np.fft.fftfreq(rows, d=spacing_mm[0])[:, None]
    k_col = np.fft.rfftfreq(cols, d=spacing_mm[1])[None, :]
    k = np.hypot(k_row, k_col)
    k[0, 0] = np.inf
    amplitude = k ** -(hurst + 1.0)
    noise = rng.standard_normal((rows, k_col.shape[1])) + 1j * rng.standard_normal(
        (rows, k_col.shape[1])
    )
    field = np.fft.irfft2(amplitude * noise, s=(rows, cols))[: shape[0], : shape[1]]
    field -= field.mean()
    std = field.std()
    return field / std if std > 0 else field
