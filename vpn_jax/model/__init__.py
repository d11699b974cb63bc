"""The Video Pixel Network (sect. 3 and 4 of the paper), one module per part of Figure 1.

masked_conv: the PixelCNN-masked convolution every layer uses; multiplicative_unit: the MU and
the RMB; residual_block: the ReLU block; encoder: the resolution-preserving CNN encoder;
conv_lstm: the ConvLSTM over time; decoder: the PixelCNN decoder and the baseline's; vpn: the
assembled network and `build_model`; likelihood: exact log-likelihoods.
"""
