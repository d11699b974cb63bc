"""Video Pixel Networks in JAX/Flax."""
