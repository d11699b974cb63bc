"""Video Pixel Networks (Kalchbrenner et al., 2016) in JAX/Flax."""

from vpn_jax.model.vpn import VideoPixelNetwork
from vpn_jax.model.vpn import build_model
from vpn_jax.model.vpn import count_params
from vpn_jax.model.vpn import init_variables
from vpn_jax.model.likelihood import frame_log_likelihoods
from vpn_jax.model.likelihood import log_likelihood
from vpn_jax.model.likelihood import pixel_log_likelihoods
from vpn_jax.training.checkpoint import load_checkpoint
from vpn_jax.pretrained import load_pretrained
from vpn_jax.sampling import sample
from vpn_jax.data.input_pipeline import evaluation_sequences
from vpn_jax import configs
from vpn_jax import video_metrics
from vpn_jax import visualize

__all__ = [
    'VideoPixelNetwork',
    'build_model',
    'configs',
    'count_params',
    'evaluation_sequences',
    'frame_log_likelihoods',
    'init_variables',
    'load_checkpoint',
    'load_pretrained',
    'log_likelihood',
    'pixel_log_likelihoods',
    'sample',
    'video_metrics',
    'visualize',
]
