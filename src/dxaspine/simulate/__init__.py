"""Physics-based DXA scan simulator: spectra, attenuation, anatomy and image formation."""
